//! `presence` (issue 10's figure): N clients subscribe with `join_leave` to one presence room
//! at once, then all of them drop and resume at once (the storm machinery). What each member
//! got in `presence_diff` frames per phase (bounded by the flush windows the phase spans, not
//! by N), the members listed after each phase against the live clients, hub CPU and RSS, and
//! how long everyone took to be back. Like `smoke`, any problem fails the run (exit 1): wrong
//! counts, and the standard ones (a healthy client the hub closed, failed connects, client
//! errors); timings never do (frames over the window bound, time back, CPU).

use std::time::Duration;

use anyhow::{bail, Result};

use super::figures::{PresenceFigures, PresencePhase, StormFigures};
use super::plan::{Plan, PresencePlan};
use super::sections::hold_sections;
use super::{Env, Findings};
use crate::cli::PresenceArgs;
use crate::presence::{PhaseTally, Spread};
use crate::report::{bytes, Section};

pub async fn run(env: &Env, args: &PresenceArgs) -> Result<Findings> {
    if args.clients.channels != 1 {
        bail!("presence runs in one room: --channels must be 1");
    }
    let plan = Plan {
        presence: Some(PresencePlan {
            batch: args.presence_batch,
        }),
        // The storm as soon as the joins are listed; a short hold after it shows late frames.
        storm_at: Some(Duration::ZERO),
        drain_timeout: Duration::from_secs(5),
        ..Plan::subscribers(&args.clients, args.ramp_rate, Duration::from_secs(1))
    };
    let o = env.run(&plan).await?;
    let (lead, probs) = match &o.presence {
        Some(p) => (
            presence_section(p, o.storm.as_ref()),
            problems(p, o.storm.as_ref()),
        ),
        None => (
            Section::new("Presence"),
            vec!["the run ended before any presence figure".to_owned()],
        ),
    };
    let sections = hold_sections(&o, [lead]);
    Findings::of(o, sections, probs)
}

fn spread(s: &Spread) -> String {
    format!("min {} / mean {:.1} / max {}", s.min, s.mean, s.max)
}

fn received_rows(s: &mut Section, name: &str, p: &PresencePhase) {
    let r: &PhaseTally = &p.received;
    s.row(
        &format!("{name}: presence_diff frames per member"),
        format!("{} (at most {} by the rule)", spread(&r.frames), p.windows),
    )
    .row(&format!("{name}: joins per member"), spread(&r.joins))
    .row(&format!("{name}: leaves per member"), spread(&r.leaves))
    .row(
        &format!("{name}: announced (distinct)"),
        format!(
            "{} joins, {} leaves; the hub closed {} connections",
            p.announced_joins, p.announced_leaves, p.hub_closes
        ),
    )
    .row(
        &format!("{name}: largest presence_diff"),
        if p.largest_frame_bytes > 0 {
            bytes(p.largest_frame_bytes)
        } else {
            "n/a (long-poll members only)".into()
        },
    )
    .row(
        &format!("{name}: last presence_diff read at"),
        format!("{:.2} s", p.settled_seconds),
    )
    .row(
        &format!("{name}: hub CPU until then"),
        p.hub_cpu_seconds
            .map(|c| format!("{c:.2} s"))
            .unwrap_or_else(|| "n/a (no --server-pid)".into()),
    );
    let l = &p.listing;
    let listed = match &l.error {
        Some(e) => format!("could not be read: {e}"),
        None => {
            let mut v = format!(
                "{} members in {} pages, presence_stats {}, live clients {}",
                l.listed,
                l.pages,
                l.stats_clients.unwrap_or(0),
                l.expected
            );
            if l.duplicates + l.unannounced > 0 {
                v += &format!(
                    "; {} listed twice, {} never announced",
                    l.duplicates, l.unannounced
                );
            }
            if let Some(stale) = l.stale {
                v += &format!("; {stale} from before the storm");
            }
            v
        }
    };
    s.row(&format!("{name}: listed"), listed);
    if r.frames.max > p.windows {
        s.row(
            &format!("{name}: note"),
            format!(
                "a member got {} frames in {} windows (a timing: the hub's flush and the \
                 tool's clock are not in step, so this is not counted as a problem)",
                r.frames.max, p.windows
            ),
        );
    }
}

fn presence_section(p: &PresenceFigures, storm: Option<&StormFigures>) -> Section {
    let mut s = Section::new(&format!(
        "Presence (room {}, {} members, {:.0} ms flush window)",
        p.channel, p.members, p.batch_ms
    ));
    s.row(
        "joins: everyone subscribed after",
        format!("{:.2} s", p.join.seconds),
    );
    received_rows(&mut s, "joins", &p.join);
    match (storm, &p.storm) {
        (Some(st), Some(ps)) => {
            s.row(
                "storm: everyone back after",
                match st.all_back_ms {
                    Some(ms) => format!("{ms:.0} ms ({} dropped at once)", st.dropped),
                    None => format!("only {} of {} within 60 s", st.back, st.dropped),
                },
            );
            received_rows(&mut s, "storm", ps);
        }
        _ => {
            s.row("storm", "did not happen");
        }
    }
    s.row(
        "frames while nobody joined or left",
        p.quiet.frames.total.to_string(),
    )
    .row(
        "subscriptions whose own join did not come first",
        p.own_join_missing.to_string(),
    );
    s
}

/// Wrong counts: a listing that is not the live clients, more joins or leaves announced than
/// connections came and went, a member told more joins or leaves than were announced, a
/// subscription that never got its own join, a storm not everyone came back from. Never
/// timings (frames over the window bound).
pub fn problems(p: &PresenceFigures, storm: Option<&StormFigures>) -> Vec<String> {
    let mut probs = p.join.listing.problems("after the joins");
    let phases = [
        ("the joins", Some(&p.join)),
        ("the storm", p.storm.as_ref()),
    ];
    for (name, phase) in phases {
        let Some(ph) = phase else { continue };
        // Each client joins once in a phase (and, in the storm, its old connection leaves
        // once); a connection the hub closed adds one leave and one join on its resume.
        let came = p.members + ph.hub_closes;
        let went = if name == "the joins" { 0 } else { p.members } + ph.hub_closes;
        if ph.announced_joins as u64 > came {
            probs.push(format!(
                "{} members announced as joining during {name}, {came} connections joined",
                ph.announced_joins
            ));
        }
        if ph.announced_leaves as u64 > went {
            probs.push(format!(
                "{} members announced as leaving during {name}, {went} connections left",
                ph.announced_leaves
            ));
        }
        let r = &ph.received;
        if r.joins.max > ph.announced_joins as u64 {
            probs.push(format!(
                "during {name} a member was told of {} joins, but only {} members joined: \
                 joins repeated",
                r.joins.max, ph.announced_joins
            ));
        }
        if r.leaves.max > ph.announced_leaves as u64 {
            probs.push(format!(
                "during {name} a member was told of {} leaves, but only {} members left: \
                 leaves repeated",
                r.leaves.max, ph.announced_leaves
            ));
        }
    }
    match (storm, &p.storm) {
        (Some(st), Some(ps)) => {
            if st.all_back_ms.is_none() {
                probs.push(format!(
                    "only {} of {} came back after the storm",
                    st.back, st.dropped
                ));
            }
            probs.extend(ps.listing.problems("after the storm"));
            if ps.listing.expected as u64 != p.members {
                probs.push(format!(
                    "{} of {} clients were live at the end",
                    ps.listing.expected, p.members
                ));
            }
        }
        _ => probs.push("the storm did not happen".into()),
    }
    if p.own_join_missing > 0 {
        probs.push(format!(
            "{} subscriptions did not get their own join in their first presence_diff",
            p.own_join_missing
        ));
    }
    probs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::{Listing, ListingCheck};
    use std::collections::HashSet;

    fn spread(min: u64, max: u64) -> Spread {
        Spread {
            min,
            mean: (min + max) as f64 / 2.0,
            max,
            total: 0,
        }
    }

    /// A clean run of `n` members: ids 1..=n joined, then n+1..=2n replaced them.
    fn clean(n: u64) -> (PresenceFigures, StormFigures) {
        let phase = |first: u64, before: Option<&HashSet<u64>>| {
            let ids: HashSet<u64> = (first..first + n).collect();
            let listing = Listing {
                stats_clients: n,
                members: (first..first + n).collect(),
                pages: (n as usize).div_ceil(200),
            };
            PresencePhase {
                seconds: 0.4,
                windows: 3,
                settled_seconds: 0.7,
                hub_cpu_seconds: Some(0.1),
                hub_closes: 0,
                announced_joins: n as usize,
                announced_leaves: if before.is_some() { n as usize } else { 0 },
                largest_frame_bytes: 20 * n,
                received: PhaseTally {
                    frames: spread(1, 3),
                    joins: spread(1, n),
                    leaves: if before.is_some() {
                        spread(0, n)
                    } else {
                        spread(0, 0)
                    },
                },
                listing: ListingCheck::of(n as usize, &listing, &ids, before),
            }
        };
        let before: HashSet<u64> = (1..=n).collect();
        let p = PresenceFigures {
            channel: "chat:x".into(),
            batch_ms: 250.0,
            members: n,
            join: phase(1, None),
            storm: Some(phase(n + 1, Some(&before))),
            quiet: PhaseTally::default(),
            own_join_missing: 0,
        };
        let st = StormFigures {
            dropped: n as usize,
            back: n as usize,
            all_back_ms: Some(500.0),
        };
        (p, st)
    }

    #[test]
    fn a_clean_run_has_no_problem() {
        let (p, st) = clean(1000);
        assert!(
            problems(&p, Some(&st)).is_empty(),
            "{:?}",
            problems(&p, Some(&st))
        );
        let text = presence_section(&p, Some(&st));
        let rows: Vec<&str> = text.rows.iter().map(|(k, _)| k.as_str()).collect();
        assert!(rows.contains(&"storm: presence_diff frames per member"));
        assert!(!rows.iter().any(|r| r.ends_with("note")));
    }

    #[test]
    fn more_frames_than_windows_is_a_note_not_a_problem() {
        let (mut p, st) = clean(100);
        p.join.received.frames = spread(1, 9);
        assert!(problems(&p, Some(&st)).is_empty());
        let s = presence_section(&p, Some(&st));
        assert!(s
            .rows
            .iter()
            .any(|(k, v)| k == "joins: note" && v.contains("9 frames")));
    }

    #[test]
    fn wrong_counts_are_problems() {
        let (mut p, st) = clean(100);
        p.join.received.joins = spread(1, 101);
        p.storm.as_mut().unwrap().received.leaves = spread(0, 150);
        p.join.announced_leaves = 2;
        p.own_join_missing = 3;
        let probs = problems(&p, Some(&st));
        assert_eq!(probs.len(), 4, "{probs:?}");
        assert!(probs[0].contains("2 members announced as leaving during the joins, 0"));
        assert!(probs[1].contains("told of 101 joins, but only 100"));
        assert!(probs[2].contains("told of 150 leaves, but only 100"));
        assert!(probs[3].contains("3 subscriptions"));
    }

    #[test]
    fn connections_the_hub_closed_account_for_more_joins_and_leaves() {
        let (mut p, st) = clean(100);
        // Two clients evicted during the joins: two leaves, and two joins on their resume.
        p.join.hub_closes = 2;
        p.join.announced_leaves = 2;
        p.join.announced_joins = 102;
        p.join.received.joins = spread(1, 102);
        let storm = p.storm.as_mut().unwrap();
        storm.announced_joins = 101;
        storm.announced_leaves = 101;
        assert_eq!(
            problems(&p, Some(&st)).len(),
            2,
            "{:?}",
            problems(&p, Some(&st))
        );
        p.storm.as_mut().unwrap().hub_closes = 1;
        assert!(problems(&p, Some(&st)).is_empty());
    }

    #[test]
    fn a_storm_that_leaves_ghosts_or_stragglers_fails() {
        let (mut p, mut st) = clean(100);
        // One old member still listed in place of a new one: the count is right, the set
        // is not.
        let before: HashSet<u64> = (1..=100).collect();
        let announced: HashSet<u64> = (101..=200).collect();
        let mut members: Vec<u64> = (101..=199).collect();
        members.push(7);
        let listing = Listing {
            stats_clients: 100,
            members,
            pages: 1,
        };
        p.storm.as_mut().unwrap().listing =
            ListingCheck::of(100, &listing, &announced, Some(&before));
        st.back = 99;
        st.all_back_ms = None;
        let probs = problems(&p, Some(&st));
        assert!(probs.iter().any(|s| s.contains("only 99 of 100 came back")));
        assert!(probs.iter().any(|s| s.contains("never announced")));
        assert!(probs.iter().any(|s| s.contains("from before the storm")));
        assert!(problems(&p, None)
            .iter()
            .any(|s| s == "the storm did not happen"));
    }
}
