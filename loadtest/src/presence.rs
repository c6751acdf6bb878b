//! Presence accounting (the `presence` scenario): what each member received in `presence_diff`
//! frames per phase, which joins and leaves the hub announced to anyone, and a `presence`
//! listing checked against the clients the tool holds.
//!
//! The hub never tells a client its own member id, so "the listing equals the live clients"
//! is checked by what must hold for it: as many distinct members as live clients (and as
//! `presence_stats` says), every listed member announced as a join to some member during the
//! phase (a member's own join reaches the member itself, after its `subscribed`), and after
//! a storm none of the members from before it (every dropped connection left).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Which part of a presence run a `presence_diff` arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Everyone subscribes at once, until the last join was flushed and read.
    Join,
    /// Everyone drops and resumes, until the last rejoin was flushed and read.
    Storm,
    /// Nobody came or went (between the phases and after them): frames here are late.
    Quiet,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Join, Phase::Storm, Phase::Quiet];

    fn index(self) -> usize {
        self as usize
    }
}

/// A member id as a number: crier's ids are `c<n>`; anything else is hashed (with the top bit
/// set, so it never equals a numeric id). Only equality matters.
pub fn member_key(id: &str) -> u64 {
    match id.strip_prefix('c').and_then(|n| n.parse::<u64>().ok()) {
        Some(n) if n < 1 << 63 => n,
        _ => {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            id.hash(&mut h);
            h.finish() | 1 << 63
        }
    }
}

/// One member's `presence_diff` frames per phase and the joins and leaves they carried, kept
/// across its reconnects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceCounts {
    pub frames: [u64; 3],
    pub joins: [u64; 3],
    pub leaves: [u64; 3],
    /// Subscriptions whose first `presence_diff` carried no join (its own join must be in
    /// it), or that never got one.
    pub own_join_missing: u64,
    /// The current subscription has not had its first `presence_diff` yet.
    awaiting_own_join: bool,
    /// Subscribed on the current connection: a member of the room.
    in_room: bool,
}

impl PresenceCounts {
    /// A (re)subscription with `join_leave`: its own join is owed. True when the client was
    /// not in the room (it is now).
    pub fn subscribed(&mut self) -> bool {
        self.awaiting_own_join = true;
        !std::mem::replace(&mut self.in_room, true)
    }

    /// The connection is gone (storm, or the hub closed it): whatever it was owed went with
    /// it. True when the client was in the room (it no longer is).
    pub fn disconnected(&mut self) -> bool {
        self.awaiting_own_join = false;
        std::mem::take(&mut self.in_room)
    }

    pub fn diff(&mut self, phase: Phase, joins: usize, leaves: usize) {
        let i = phase.index();
        self.frames[i] += 1;
        self.joins[i] += joins as u64;
        self.leaves[i] += leaves as u64;
        if std::mem::take(&mut self.awaiting_own_join) && joins == 0 {
            self.own_join_missing += 1;
        }
    }

    /// The member stayed to the end: a subscription still waiting for its own join missed it.
    pub fn finish(&mut self) {
        if std::mem::take(&mut self.awaiting_own_join) {
            self.own_join_missing += 1;
        }
    }
}

/// min / mean / max of one count over the members.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Spread {
    pub min: u64,
    pub mean: f64,
    pub max: u64,
    pub total: u64,
}

impl Spread {
    fn add(&mut self, n: u64, count_before: u64) {
        self.min = if count_before == 0 {
            n
        } else {
            self.min.min(n)
        };
        self.max = self.max.max(n);
        self.total += n;
        self.mean = self.total as f64 / (count_before + 1) as f64;
    }
}

/// What the members received in one phase.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PhaseTally {
    pub frames: Spread,
    pub joins: Spread,
    pub leaves: Spread,
}

/// Every member's counts, summed per phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PresenceTally {
    pub members: u64,
    pub join: PhaseTally,
    pub storm: PhaseTally,
    pub quiet: PhaseTally,
    pub own_join_missing: u64,
}

impl PresenceTally {
    pub fn add(&mut self, c: &PresenceCounts) {
        let before = self.members;
        for phase in Phase::ALL {
            let i = phase.index();
            let t = self.phase_mut(phase);
            t.frames.add(c.frames[i], before);
            t.joins.add(c.joins[i], before);
            t.leaves.add(c.leaves[i], before);
        }
        self.own_join_missing += c.own_join_missing;
        self.members += 1;
    }

    pub fn phase(&self, phase: Phase) -> &PhaseTally {
        match phase {
            Phase::Join => &self.join,
            Phase::Storm => &self.storm,
            Phase::Quiet => &self.quiet,
        }
    }

    fn phase_mut(&mut self, phase: Phase) -> &mut PhaseTally {
        match phase {
            Phase::Join => &mut self.join,
            Phase::Storm => &mut self.storm,
            Phase::Quiet => &mut self.quiet,
        }
    }
}

/// The joins and leaves the hub announced to anyone, per phase. Every listener gets the same
/// frame from one flush, and each id joins (and leaves) at most once, so a frame is known by
/// its first join and first leave: its members are recorded once, not once per listener.
#[derive(Debug, Default)]
struct Announced {
    frames: HashSet<(Option<u64>, Option<u64>)>,
    phases: [AnnouncedPhase; 3],
}

/// What the hub announced in one phase.
#[derive(Debug, Clone, Default)]
pub struct AnnouncedPhase {
    pub joins: HashSet<u64>,
    pub leaves: HashSet<u64>,
    /// The largest `presence_diff` read as text (WebSocket), in bytes.
    pub largest_frame_bytes: usize,
}

impl Announced {
    fn record(&mut self, phase: Phase, joins: &[u64], leaves: &[u64], bytes: usize) {
        let p = &mut self.phases[phase.index()];
        p.largest_frame_bytes = p.largest_frame_bytes.max(bytes);
        if !self
            .frames
            .insert((joins.first().copied(), leaves.first().copied()))
        {
            return;
        }
        p.joins.extend(joins);
        p.leaves.extend(leaves);
    }
}

/// A text frame's identity: its length and a fast 64-bit hash of its bytes (not
/// cryptographic; frames are the hub's, not an adversary's).
pub fn text_key(text: &str) -> (usize, u64) {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes = text.as_bytes();
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
    }
    (bytes.len(), h)
}

/// Whether a text frame looks like a `presence_diff` (its type near the start), worth
/// looking up before parsing. Only a shortcut: a frame that does not look like one, or is
/// not known, is parsed as usual.
pub fn looks_like_diff(text: &str) -> bool {
    const TYPE: &[u8] = b"\"type\":\"presence_diff\"";
    let head = text.as_bytes();
    head[..head.len().min(64)]
        .windows(TYPE.len())
        .any(|w| w == TYPE)
}

/// Shared by a run's subscribers: the current phase, frames seen (to tell when the hub has
/// gone quiet), clients in the room, and what was announced. Every listener gets the same
/// bytes from one flush: the first to read a frame parses it, the others find its counts
/// by its text (a 19,000-member room carries gigabytes of `presence_diff` per phase).
#[derive(Debug)]
pub struct PresenceLedger {
    phase: AtomicUsize,
    frames: AtomicU64,
    /// When the last `presence_diff` was read, µs after `created`.
    created: Instant,
    last_frame_us: AtomicU64,
    in_room: AtomicI64,
    announced: Mutex<Announced>,
    counts_by_text: Mutex<HashMap<(usize, u64), (usize, usize)>>,
}

impl Default for PresenceLedger {
    fn default() -> Self {
        Self {
            phase: AtomicUsize::new(Phase::Join.index()),
            frames: AtomicU64::new(0),
            created: Instant::now(),
            last_frame_us: AtomicU64::new(0),
            in_room: AtomicI64::new(0),
            announced: Mutex::default(),
            counts_by_text: Mutex::default(),
        }
    }
}

impl PresenceLedger {
    pub fn phase(&self) -> Phase {
        Phase::ALL[self.phase.load(Ordering::Relaxed).min(2)]
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase.index(), Ordering::Relaxed);
    }

    /// `presence_diff` frames received by anyone so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// When the last `presence_diff` was read (by anyone), if one was.
    pub fn last_frame_at(&self) -> Option<Instant> {
        match self.last_frame_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(self.created + Duration::from_micros(us)),
        }
    }

    fn frame_read(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        let us = self.created.elapsed().as_micros().max(1) as u64;
        self.last_frame_us.fetch_max(us, Ordering::Relaxed);
    }

    /// A client entered (`+1`) or left (`-1`) the room, as the client saw it.
    pub fn room_changed(&self, by: i64) {
        self.in_room.fetch_add(by, Ordering::Relaxed);
    }

    /// Clients subscribed to the room right now, as they see it.
    pub fn in_room(&self) -> usize {
        self.in_room.load(Ordering::Relaxed).max(0) as usize
    }

    /// A `presence_diff` parsed: its members go into what was announced in `phase`, and its
    /// counts are remembered by `text` (when the transport gave the frame's own text).
    pub fn record(&self, phase: Phase, joins: &[u64], leaves: &[u64], text: Option<&str>) {
        self.frame_read();
        if let Some(text) = text {
            self.counts_by_text
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(text_key(text), (joins.len(), leaves.len()));
        }
        self.announced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(phase, joins, leaves, text.map_or(0, str::len));
    }

    /// The joins and leaves of a `presence_diff` another member already parsed (counted as
    /// one more frame); `None` when this text is new.
    pub fn known(&self, text: &str) -> Option<(usize, usize)> {
        let counts = *self
            .counts_by_text
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&text_key(text))?;
        self.frame_read();
        Some(counts)
    }

    /// Distinct ids announced as joining / leaving in `phase`, and its largest frame.
    pub fn announced(&self, phase: Phase) -> AnnouncedPhase {
        let a = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        a.phases[phase.index()].clone()
    }
}

/// What one client read from the hub: `presence_stats` and every page of `presence`.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub stats_clients: u64,
    /// Member ids (`member_key`), in the order the pages listed them.
    pub members: Vec<u64>,
    pub pages: usize,
}

/// A listing held against the clients the tool has live. `stale` is only checked after the
/// storm (members from before it).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListingCheck {
    /// Live clients when the listing was read.
    pub expected: usize,
    pub stats_clients: Option<u64>,
    /// Distinct members listed.
    pub listed: usize,
    /// Members listed more than once (across pages).
    pub duplicates: usize,
    pub pages: usize,
    /// Listed members nobody was told had joined in the phase.
    pub unannounced: usize,
    /// Announced joins of the phase that are no longer listed.
    pub announced_gone: usize,
    /// Listed members from before the storm: a dropped connection still counted.
    pub stale: Option<usize>,
    /// The listing could not be read.
    pub error: Option<String>,
}

impl ListingCheck {
    pub fn failed(expected: usize, error: String) -> Self {
        Self {
            expected,
            error: Some(error),
            ..Self::default()
        }
    }

    pub fn of(
        expected: usize,
        listing: &Listing,
        announced_joins: &HashSet<u64>,
        before: Option<&HashSet<u64>>,
    ) -> Self {
        let distinct: HashSet<u64> = listing.members.iter().copied().collect();
        Self {
            expected,
            stats_clients: Some(listing.stats_clients),
            listed: distinct.len(),
            duplicates: listing.members.len() - distinct.len(),
            pages: listing.pages,
            unannounced: distinct.difference(announced_joins).count(),
            announced_gone: announced_joins.difference(&distinct).count(),
            stale: before.map(|b| distinct.intersection(b).count()),
            error: None,
        }
    }

    /// What is wrong with the listing; empty when it matches the live clients.
    pub fn problems(&self, when: &str) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(e) = &self.error {
            p.push(format!(
                "{when}: the presence listing could not be read: {e}"
            ));
            return p;
        }
        if self.stats_clients != Some(self.expected as u64) {
            p.push(format!(
                "{when}: presence_stats counts {} members, {} clients are live",
                self.stats_clients.unwrap_or(0),
                self.expected
            ));
        }
        if self.listed != self.expected {
            p.push(format!(
                "{when}: the presence listing has {} members, {} clients are live",
                self.listed, self.expected
            ));
        }
        if self.duplicates > 0 {
            p.push(format!(
                "{when}: {} members listed twice across pages",
                self.duplicates
            ));
        }
        if self.unannounced > 0 {
            p.push(format!(
                "{when}: {} listed members were never announced as joining",
                self.unannounced
            ));
        }
        if let Some(n) = self.stale.filter(|&n| n > 0) {
            p.push(format!(
                "{when}: {n} members from before the storm are still listed"
            ));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_keys() {
        assert_eq!(member_key("c12"), 12);
        assert_ne!(member_key("ada"), member_key("bob"));
        assert!(member_key("ada") >= 1 << 63);
        assert!(member_key("c") >= 1 << 63);
    }

    #[test]
    fn counts_frames_joins_and_leaves_per_phase() {
        let mut c = PresenceCounts::default();
        assert!(c.subscribed());
        c.diff(Phase::Join, 3, 0);
        c.diff(Phase::Join, 2, 0);
        // The storm: the old connection goes, the new one gets its own join first.
        assert!(c.disconnected());
        assert!(!c.disconnected());
        assert!(c.subscribed());
        c.diff(Phase::Storm, 4, 5);
        c.diff(Phase::Storm, 0, 1);
        c.finish();
        assert_eq!(c.frames, [2, 2, 0]);
        assert_eq!(c.joins, [5, 4, 0]);
        assert_eq!(c.leaves, [0, 6, 0]);
        assert_eq!(c.own_join_missing, 0);
    }

    #[test]
    fn a_subscription_without_its_own_join_counts() {
        // First frame after subscribing carries only leaves: its own join was not in it.
        let mut c = PresenceCounts::default();
        c.subscribed();
        c.diff(Phase::Join, 0, 2);
        c.diff(Phase::Join, 1, 0);
        assert_eq!(c.own_join_missing, 1);
        // No frame at all after the last subscribe, and the member stayed to the end.
        c.subscribed();
        c.finish();
        assert_eq!(c.own_join_missing, 2);
        // A connection dropped before its first frame owes nothing.
        let mut d = PresenceCounts::default();
        d.subscribed();
        d.disconnected();
        d.subscribed();
        d.diff(Phase::Storm, 1, 0);
        d.finish();
        assert_eq!(d.own_join_missing, 0);
    }

    #[test]
    fn tally_spreads_over_members() {
        let mut t = PresenceTally::default();
        for (frames, joins) in [(1, 10), (3, 4), (2, 1)] {
            let mut c = PresenceCounts::default();
            for _ in 0..frames {
                c.diff(Phase::Join, 0, 0);
            }
            c.joins[0] = joins;
            t.add(&c);
        }
        assert_eq!(t.members, 3);
        let f = t.phase(Phase::Join).frames;
        assert_eq!((f.min, f.max, f.total), (1, 3, 6));
        assert!((f.mean - 2.0).abs() < 1e-9);
        let j = t.join.joins;
        assert_eq!((j.min, j.max, j.total), (1, 10, 15));
        assert_eq!(t.storm.frames.max, 0);
    }

    #[test]
    fn one_flush_is_recorded_once_however_many_listeners_got_it() {
        let ledger = PresenceLedger::default();
        for _ in 0..3 {
            ledger.record(Phase::Join, &[1, 2, 3], &[], None);
        }
        ledger.record(Phase::Join, &[4], &[], None);
        ledger.set_phase(Phase::Storm);
        ledger.record(ledger.phase(), &[7, 8], &[1, 2], None);
        ledger.record(ledger.phase(), &[], &[3, 4], None);
        ledger.record(ledger.phase(), &[], &[3, 4], None);
        assert_eq!(ledger.frames(), 7);
        let join = ledger.announced(Phase::Join);
        assert_eq!((join.joins.len(), join.leaves.len()), (4, 0));
        let storm = ledger.announced(Phase::Storm);
        assert_eq!(storm.joins, HashSet::from([7, 8]));
        assert_eq!(storm.leaves, HashSet::from([1, 2, 3, 4]));
    }

    #[test]
    fn a_frame_parsed_once_is_counted_by_its_text() {
        let ledger = PresenceLedger::default();
        let a = r#"{"type":"presence_diff","channel":"chat:x","joins":[{"client":"c1"},{"client":"c2"}],"leaves":[]}"#;
        let b = r#"{"type":"presence_diff","channel":"chat:x","joins":[{"client":"c3"}],"leaves":[{"client":"c2"}]}"#;
        assert!(looks_like_diff(a) && looks_like_diff(b));
        assert!(!looks_like_diff(
            r#"{"type":"message","channel":"presence_diff"}"#
        ));
        assert!(!looks_like_diff("{}"));
        assert_eq!(ledger.known(a), None);
        ledger.record(Phase::Join, &[1, 2], &[], Some(a));
        assert_eq!(ledger.known(a), Some((2, 0)));
        assert_eq!(ledger.announced(Phase::Join).largest_frame_bytes, a.len());
        assert_eq!(ledger.known(b), None);
        assert_eq!(ledger.frames(), 2);
        assert!(ledger.last_frame_at().is_some_and(|t| t <= Instant::now()));
        assert!(PresenceLedger::default().last_frame_at().is_none());
        assert_ne!(text_key(a), text_key(b));
        // One byte apart, same length: still two frames.
        assert_ne!(text_key("c12345678"), text_key("c12345679"));
        ledger.room_changed(1);
        ledger.room_changed(1);
        ledger.room_changed(-1);
        assert_eq!(ledger.in_room(), 1);
    }

    #[test]
    fn a_listing_that_matches_the_live_clients() {
        let announced: HashSet<u64> = (1..=450).collect();
        let listing = Listing {
            stats_clients: 450,
            members: (1..=450).collect(),
            pages: 3,
        };
        let check = ListingCheck::of(450, &listing, &announced, None);
        assert!(check.problems("after the joins").is_empty(), "{check:?}");
        assert_eq!((check.listed, check.pages, check.stale), (450, 3, None));
    }

    #[test]
    fn a_listing_with_ghosts_duplicates_and_strangers() {
        let before: HashSet<u64> = (1..=10).collect();
        // After the storm: 10 new members 11..=20 were announced; the hub lists one of them
        // twice (a page boundary), one old member (a ghost), and one nobody announced.
        let announced: HashSet<u64> = (11..=20).collect();
        let mut members: Vec<u64> = (11..=19).collect();
        members.extend([19, 5, 99]);
        let listing = Listing {
            stats_clients: 11,
            members,
            pages: 2,
        };
        let check = ListingCheck::of(10, &listing, &announced, Some(&before));
        assert_eq!(check.duplicates, 1);
        assert_eq!(check.listed, 11);
        assert_eq!(check.unannounced, 2);
        assert_eq!(check.announced_gone, 1);
        assert_eq!(check.stale, Some(1));
        let p = check.problems("after the storm");
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p[0].contains("presence_stats counts 11 members, 10 clients"));
        assert!(p
            .iter()
            .any(|s| s.contains("1 members from before the storm")));
        let failed = ListingCheck::failed(10, "timed out".into());
        assert_eq!(failed.problems("x").len(), 1);
    }
}
