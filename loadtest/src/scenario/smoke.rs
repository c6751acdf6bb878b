//! `smoke`: a few hundred clients on both transports for a few seconds, with a reconnect storm
//! in the middle. For CI: the verdict is correctness only (loss, duplicates, reordering,
//! errors), never timings.

use std::time::Duration;

use anyhow::Result;

use super::plan::{Plan, PublishSettings};
use super::sections::standard_sections;
use super::{Env, Findings};
use crate::cli::SmokeArgs;
use crate::report::Section;

pub async fn run(env: &Env, args: &SmokeArgs) -> Result<Findings> {
    let plan = Plan {
        publish: Some(PublishSettings {
            rate: args.rate,
            publishers: 4,
            size: 128,
        }),
        storm_at: Some(args.duration / 2),
        drain_timeout: Duration::from_secs(20),
        ..Plan::subscribers(&args.clients, 1000.0, args.duration)
    };
    let o = env.run(&plan).await?;
    let mut probs = Vec::new();
    let mut s = Section::new("Storm (all clients drop and resume)");
    match &o.storm {
        Some(st) => {
            s.row("back", format!("{} of {}", st.back, st.dropped)).row(
                "time until all were back",
                st.all_back_ms
                    .map(|v| format!("{v:.0} ms"))
                    .unwrap_or_else(|| "not all within 60 s".into()),
            );
            if st.all_back_ms.is_none() {
                probs.push(format!(
                    "only {} of {} came back after the storm",
                    st.back, st.dropped
                ));
            }
        }
        None => {
            s.row("storm", "did not happen");
            probs.push("the storm did not happen".into());
        }
    }
    if o.publishes_accepted == 0 {
        probs.push("no publish was accepted".into());
    }
    if o.tally.received == 0 {
        probs.push("no message was received".into());
    }
    let sections = standard_sections(&o, [s]);
    Findings::of(o, sections, probs)
}
