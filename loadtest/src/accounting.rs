//! Exact delivery accounting: which offsets each subscriber should have received (the
//! publisher's ledger of accepted offsets per channel) against what it did receive (a
//! per-subscriber tracker). Loss, duplicates and reordering are counted exactly, never sampled.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// A set of `u64` kept as disjoint, non-adjacent inclusive ranges: offsets arrive mostly in
/// order, so a whole channel's history is usually one range.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RangeSet {
    /// start → end (inclusive).
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, value: u64) {
        self.insert_range(value, value);
    }

    /// Inserts `[lo, hi]`, merging with neighbours.
    pub fn insert_range(&mut self, mut lo: u64, mut hi: u64) {
        if lo > hi {
            return;
        }
        // A range starting at or before `hi + 1` may touch ours; walk back over all of them.
        let upper = hi.saturating_add(1);
        let touching: Vec<(u64, u64)> = self
            .ranges
            .range(..=upper)
            .rev()
            .take_while(|&(_, &end)| end.saturating_add(1) >= lo)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.ranges.remove(&s);
            lo = lo.min(s);
            hi = hi.max(e);
        }
        self.ranges.insert(lo, hi);
    }

    /// Removes one value; returns whether it was present.
    pub fn remove(&mut self, value: u64) -> bool {
        let present = self.contains(value);
        if present {
            self.remove_range(value, value);
        }
        present
    }

    /// Removes every value in `[lo, hi]`.
    pub fn remove_range(&mut self, lo: u64, hi: u64) {
        if lo > hi {
            return;
        }
        let overlapping: Vec<(u64, u64)> = self
            .ranges
            .range(..=hi)
            .rev()
            .take_while(|&(_, &end)| end >= lo)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in overlapping {
            self.ranges.remove(&s);
            if s < lo {
                self.ranges.insert(s, lo - 1);
            }
            if e > hi {
                self.ranges.insert(hi + 1, e);
            }
        }
    }

    pub fn contains(&self, value: u64) -> bool {
        self.ranges
            .range(..=value)
            .next_back()
            .is_some_and(|(_, &e)| value <= e)
    }

    /// Number of values in the set.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(&s, &e)| e - s + 1).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn max(&self) -> Option<u64> {
        self.ranges.values().next_back().copied()
    }

    /// How many values of this set fall in `[lo, hi]`.
    pub fn count_in(&self, lo: u64, hi: u64) -> u64 {
        if lo > hi {
            return 0;
        }
        let mut n = 0;
        // The range that starts before `lo` may still overlap it.
        let first = self.ranges.range(..lo).next_back().map(|(&s, &e)| (s, e));
        for (s, e) in first
            .into_iter()
            .chain(self.ranges.range(lo..=hi).map(|(&s, &e)| (s, e)))
        {
            let a = s.max(lo);
            let b = e.min(hi);
            if a <= b {
                n += b - a + 1;
            }
        }
        n
    }

    /// How many values of this set are also in `other`.
    pub fn count_common(&self, other: &RangeSet) -> u64 {
        self.ranges
            .iter()
            .map(|(&s, &e)| other.count_in(s, e))
            .sum()
    }

    pub fn iter_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&s, &e)| (s, e))
    }
}

/// What one subscriber saw on one channel, across reconnects.
#[derive(Debug, Default, Clone)]
pub struct Tracker {
    /// The epoch of the first `subscribed` frame.
    pub epoch: Option<String>,
    /// Offsets above this are owed to the subscriber (`subscribed.offset` of the first
    /// subscription).
    pub start: Option<u64>,
    /// Highest offset received.
    pub last: u64,
    /// Offsets in `(start, last]` not received (yet).
    missing: RangeSet,
    /// Offsets the hub explicitly said were skipped (`missed` frames): not owed any more.
    told_missed: RangeSet,
    pub received: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Frames whose epoch differs from the first one without a `missed` notice.
    pub epoch_changes: u64,
    pub missed_notices: u64,
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A `subscribed` frame. The first one fixes where the debt starts; later ones (resumes)
    /// must not move it — the resume must fill any gap itself.
    pub fn subscribed(&mut self, epoch: &str, offset: u64) {
        match &self.epoch {
            None => {
                self.epoch = Some(epoch.to_owned());
                self.start = Some(offset);
                self.last = offset;
            }
            Some(e) if e != epoch => self.epoch_changes += 1,
            Some(_) => {}
        }
    }

    /// The position to resume from: the highest offset received.
    pub fn resume_point(&self) -> Option<(&str, u64)> {
        self.epoch.as_deref().map(|e| (e, self.last))
    }

    /// A `missed` frame: the hub says offsets from `since + 1` up to `first_available - 1` are
    /// gone. They stop being owed (the promise is "delivered or told").
    pub fn missed(&mut self, since: u64, first_available: u64) {
        self.missed_notices += 1;
        if first_available > since + 1 {
            let lo = since + 1;
            let hi = first_available - 1;
            self.told_missed.insert_range(lo, hi);
            if hi > self.last {
                // Nothing below `first_available` is owed any more; do not count it as a gap.
                self.last = hi;
            }
            self.missing.remove_range(lo, hi);
        }
    }

    /// One `message` frame's offset.
    pub fn observe(&mut self, offset: u64) {
        self.received += 1;
        if offset == self.last + 1 {
            self.last = offset;
        } else if offset > self.last {
            self.missing.insert_range(self.last + 1, offset - 1);
            self.last = offset;
        } else if self.missing.remove(offset) {
            self.reordered += 1;
        } else {
            self.duplicates += 1;
        }
    }

    /// Final tally against the ledger's accepted offsets for this channel.
    /// `complete` means the subscriber stayed to the end and is owed every accepted offset
    /// above its start; otherwise only gaps below its last offset count.
    pub fn tally(&self, accepted: &RangeSet, complete: bool) -> Tally {
        let start = self.start.unwrap_or(0);
        let mut lost = if self.missing.is_empty() {
            0
        } else {
            self.missing.count_common(accepted)
        };
        if complete {
            let tail = accepted.count_in(self.last.saturating_add(1), u64::MAX);
            let told = self
                .told_missed
                .count_in(self.last.saturating_add(1), u64::MAX);
            lost += tail.saturating_sub(told);
        }
        // Offsets received that the publisher never saw accepted (a publish whose reply was
        // lost): not an error of the hub, but worth showing.
        let mut received = RangeSet::new();
        received.insert_range(start.saturating_add(1), self.last);
        for (s, e) in self
            .missing
            .iter_ranges()
            .chain(self.told_missed.iter_ranges())
        {
            received.remove_range(s, e);
        }
        let unknown_offsets = received.len() - received.count_common(accepted);
        Tally {
            subscribers: 1,
            received: self.received,
            lost,
            duplicates: self.duplicates,
            reordered: self.reordered,
            unknown_offsets,
            missed_notices: self.missed_notices,
            told_missed: self.told_missed.len(),
            epoch_changes: self.epoch_changes,
        }
    }
}

/// Summed accounting over many subscribers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub subscribers: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Offsets received that no accepted publish reply announced.
    pub unknown_offsets: u64,
    pub missed_notices: u64,
    /// Offsets the hub explicitly said a subscriber missed.
    pub told_missed: u64,
    pub epoch_changes: u64,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.subscribers += other.subscribers;
        self.received += other.received;
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.unknown_offsets += other.unknown_offsets;
        self.missed_notices += other.missed_notices;
        self.told_missed += other.told_missed;
        self.epoch_changes += other.epoch_changes;
    }

    /// Whether anything broke the exactly-once, in-order promise.
    #[cfg(test)]
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.reordered == 0 && self.epoch_changes == 0
    }
}

/// The publishers' record: per channel, every offset the hub acknowledged, and the sum of
/// `enqueued` (deliveries the hub promised).
#[derive(Debug, Default)]
pub struct Ledger {
    inner: Mutex<LedgerInner>,
}

#[derive(Debug, Default)]
struct LedgerInner {
    channels: HashMap<String, ChannelLedger>,
    enqueued: u64,
}

#[derive(Debug, Default, Clone)]
pub struct ChannelLedger {
    pub epoch: Option<String>,
    pub accepted: RangeSet,
    pub epoch_changes: u64,
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn accept(&self, channel: &str, epoch: &str, offset: u64, enqueued: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.enqueued += enqueued;
        let ch = inner.channels.entry(channel.to_owned()).or_default();
        match &ch.epoch {
            None => ch.epoch = Some(epoch.to_owned()),
            Some(e) if e != epoch => {
                ch.epoch_changes += 1;
                ch.epoch = Some(epoch.to_owned());
            }
            Some(_) => {}
        }
        ch.accepted.insert(offset);
    }

    /// The highest accepted offset of one channel so far (0 when none).
    pub fn last_offset(&self, channel: &str) -> u64 {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .channels
            .get(channel)
            .and_then(|c| c.accepted.max())
            .unwrap_or(0)
    }

    pub fn enqueued(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .enqueued
    }

    /// The highest accepted offset per channel: where a draining subscriber can stop.
    pub fn final_offsets(&self) -> HashMap<String, u64> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .channels
            .iter()
            .filter_map(|(c, l)| l.accepted.max().map(|m| (c.clone(), m)))
            .collect()
    }

    pub fn snapshot(&self) -> HashMap<String, ChannelLedger> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .channels
            .clone()
    }

    pub fn accepted_total(&self) -> u64 {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.channels.values().map(|c| c.accepted.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(values: &[u64]) -> RangeSet {
        let mut s = RangeSet::new();
        for &v in values {
            s.insert(v);
        }
        s
    }

    #[test]
    fn range_set_merges_out_of_order_inserts() {
        let s = set(&[5, 1, 3, 2, 4, 10, 9]);
        assert_eq!(s.iter_ranges().collect::<Vec<_>>(), vec![(1, 5), (9, 10)]);
        assert_eq!(s.len(), 7);
        assert_eq!(s.count_in(4, 9), 3);
        assert_eq!(s.count_in(0, u64::MAX), 7);
        assert!(s.contains(10) && !s.contains(8));
    }

    #[test]
    fn range_set_insert_range_spanning_many() {
        let mut s = set(&[1, 3, 5, 7]);
        s.insert_range(2, 6);
        assert_eq!(s.iter_ranges().collect::<Vec<_>>(), vec![(1, 7)]);
    }

    #[test]
    fn range_set_remove_splits() {
        let mut s = RangeSet::new();
        s.insert_range(1, 10);
        assert!(s.remove(5));
        assert!(!s.remove(5));
        assert!(s.remove(1));
        assert!(s.remove(10));
        assert_eq!(s.iter_ranges().collect::<Vec<_>>(), vec![(2, 4), (6, 9)]);
        assert_eq!(s.count_common(&set(&[2, 6, 11])), 2);
    }

    fn accepted(lo: u64, hi: u64) -> RangeSet {
        let mut s = RangeSet::new();
        s.insert_range(lo, hi);
        s
    }

    #[test]
    fn clean_stream_tallies_clean() {
        let mut t = Tracker::new();
        t.subscribed("e1", 10);
        for o in 11..=20 {
            t.observe(o);
        }
        let tally = t.tally(&accepted(1, 20), true);
        assert!(tally.is_clean(), "{tally:?}");
        assert_eq!(tally.received, 10);
        assert_eq!(tally.unknown_offsets, 0);
    }

    #[test]
    fn gap_duplicate_and_reorder_are_counted_exactly() {
        let mut t = Tracker::new();
        t.subscribed("e1", 0);
        for o in [1, 2, 4, 5, 3, 5, 7] {
            t.observe(o);
        }
        // 6 never arrives, 8 was accepted but never arrived (tail loss).
        let tally = t.tally(&accepted(1, 8), true);
        assert_eq!(tally.lost, 2, "{tally:?}");
        assert_eq!(tally.duplicates, 1);
        assert_eq!(tally.reordered, 1);
        assert!(!tally.is_clean());
        // Not owed the tail when the subscriber left early.
        assert_eq!(t.tally(&accepted(1, 8), false).lost, 1);
    }

    #[test]
    fn resume_keeps_original_start() {
        let mut t = Tracker::new();
        t.subscribed("e1", 5);
        t.observe(6);
        t.observe(7);
        assert_eq!(t.resume_point(), Some(("e1", 7)));
        // Reconnect: the hub reports its current position, the catch-up follows.
        t.subscribed("e1", 9);
        t.observe(8);
        t.observe(9);
        t.observe(10);
        let tally = t.tally(&accepted(1, 10), true);
        assert!(tally.is_clean(), "{tally:?}");
        assert_eq!(tally.epoch_changes, 0);
    }

    #[test]
    fn missed_notice_excuses_the_gap() {
        let mut t = Tracker::new();
        t.subscribed("e1", 0);
        t.observe(1);
        t.missed(1, 50);
        for o in 50..=60 {
            t.observe(o);
        }
        let tally = t.tally(&accepted(1, 60), true);
        assert_eq!(tally.lost, 0, "{tally:?}");
        assert_eq!(tally.missed_notices, 1);
        assert_eq!(tally.told_missed, 48);
    }

    #[test]
    fn offsets_without_accepted_reply_are_unknown_not_lost() {
        let mut t = Tracker::new();
        t.subscribed("e1", 0);
        for o in 1..=5 {
            t.observe(o);
        }
        let acc = set(&[1, 2, 4, 5]);
        let tally = t.tally(&acc, true);
        assert!(tally.is_clean());
        assert_eq!(tally.unknown_offsets, 1);
    }

    #[test]
    fn ledger_sums_and_finals() {
        let l = Ledger::new();
        l.accept("a", "e", 2, 3);
        l.accept("a", "e", 1, 3);
        l.accept("b", "e", 1, 1);
        assert_eq!(l.enqueued(), 7);
        assert_eq!(l.accepted_total(), 3);
        assert_eq!(l.final_offsets().get("a"), Some(&2));
    }
}
