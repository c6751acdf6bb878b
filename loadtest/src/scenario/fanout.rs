//! `fanout`: N subscribers over C channels, publishing at a fixed rate or flat out.

use anyhow::Result;

use super::engine::{Plan, PublishSettings};
use super::{problems, standard_sections, unix_now, Env};
use crate::cli::FanoutArgs;
use crate::report::RunReport;

pub fn plan(args: &FanoutArgs) -> Plan {
    Plan {
        publish: Some(PublishSettings {
            rate: args.publish.rate,
            publishers: args.publish.publishers,
            size: args.publish.size,
        }),
        drain_timeout: args.publish.drain_timeout,
        ..Plan::subscribers(
            args.clients.clients,
            args.clients.channels,
            args.clients.transport,
            args.publish.ramp_rate,
            args.publish.duration,
        )
    }
}

pub async fn run(env: &Env, args: &FanoutArgs) -> Result<RunReport> {
    let started = unix_now();
    let o = env.run(&plan(args)).await?;
    Ok(RunReport {
        scenario: "fanout".into(),
        command: env.command.clone(),
        started_unix_s: started,
        settings: serde_json::to_value(args)?,
        problems: problems(&o, false),
        result: serde_json::to_value(&o)?,
        sections: standard_sections(&o),
        samples: o.samples,
    })
}
