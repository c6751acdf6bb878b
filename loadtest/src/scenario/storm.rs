//! `storm`: every client drops at once and reconnects resuming from its last offset while
//! publishing goes on. How long until all are back, and did anyone lose or repeat anything?

use anyhow::Result;

use super::engine::{Plan, PublishSettings};
use super::{problems, standard_sections, unix_now, Env};
use crate::cli::StormArgs;
use crate::report::{RunReport, Section};

pub async fn run(env: &Env, args: &StormArgs) -> Result<RunReport> {
    let plan = Plan {
        publish: Some(PublishSettings {
            rate: args.publish.rate,
            publishers: args.publish.publishers,
            size: args.publish.size,
        }),
        storm_at: Some(args.storm_at),
        drain_timeout: args.publish.drain_timeout,
        ..Plan::subscribers(
            args.clients.clients,
            args.clients.channels,
            args.clients.transport,
            args.publish.ramp_rate,
            args.publish.duration,
        )
    };
    let started = unix_now();
    let o = env.run(&plan).await?;
    let mut s = Section::new("Storm");
    let mut probs = problems(&o, false);
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
    let mut sections = vec![s];
    sections.extend(standard_sections(&o));
    Ok(RunReport {
        scenario: "storm".into(),
        command: env.command.clone(),
        started_unix_s: started,
        settings: serde_json::to_value(args)?,
        problems: probs,
        result: serde_json::to_value(&o)?,
        sections,
        samples: o.samples,
    })
}
