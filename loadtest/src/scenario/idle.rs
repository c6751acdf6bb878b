//! `idle`: ramp to N connections, hold them, and see what each costs the hub and whether the
//! hub dropped anyone it should have kept.

use anyhow::Result;

use super::engine::Plan;
use super::{connection_section, errors_section, memory_section, problems, unix_now, Env};
use crate::cli::IdleArgs;
use crate::client::OnHubClose;
use crate::report::RunReport;

pub async fn run(env: &Env, args: &IdleArgs) -> Result<RunReport> {
    let plan = Plan {
        on_hub_close: OnHubClose::GiveUp,
        drain_timeout: std::time::Duration::from_secs(1),
        ..Plan::subscribers(
            args.clients.clients,
            args.clients.channels,
            args.clients.transport,
            args.ramp_rate,
            args.hold,
        )
    };
    let started = unix_now();
    let o = env.run(&plan).await?;
    let mut sections = vec![
        connection_section(&o),
        memory_section(&o),
        super::machine_section(&o),
    ];
    sections.extend(errors_section(&o));
    Ok(RunReport {
        scenario: "idle".into(),
        command: env.command.clone(),
        started_unix_s: started,
        settings: serde_json::to_value(args)?,
        problems: problems(&o, false),
        result: serde_json::to_value(&o)?,
        sections,
        samples: o.samples,
    })
}
