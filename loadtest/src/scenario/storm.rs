//! `storm`: every client drops at once and reconnects resuming from its last offset while
//! publishing goes on. How long until all are back, and did anyone lose or repeat anything?

use anyhow::Result;

use super::plan::Plan;
use super::sections::standard_sections;
use super::{Env, Findings};
use crate::cli::StormArgs;
use crate::report::Section;

pub async fn run(env: &Env, args: &StormArgs) -> Result<Findings> {
    let plan = Plan {
        storm_at: Some(args.storm_at),
        ..Plan::publishing(&args.clients, &args.publish)
    };
    let o = env.run(&plan).await?;
    let mut s = Section::new("Storm");
    let mut probs = Vec::new();
    match &o.storm {
        Some(st) => {
            s.row("dropped at once", st.dropped.to_string())
                .row("back (subscribed again)", st.back.to_string())
                .row(
                    "time until all were back",
                    st.all_back_ms
                        .map(|v| format!("{v:.0} ms"))
                        .unwrap_or_else(|| "not all came back within 60 s".into()),
                );
            if st.all_back_ms.is_none() {
                probs.push(format!("only {} of {} came back", st.back, st.dropped));
            }
        }
        None => {
            s.row("storm", "did not happen (run ended first)");
            probs.push("the storm did not happen: --storm-at is beyond --duration".into());
        }
    }
    let sections = standard_sections(&o, [s]);
    Findings::of(o, sections, probs)
}
