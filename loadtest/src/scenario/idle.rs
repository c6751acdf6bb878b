//! `idle`: ramp to N connections, hold them, and see what each costs the hub and whether the
//! hub dropped anyone it should have kept.

use std::time::Duration;

use anyhow::Result;

use super::plan::Plan;
use super::sections::hold_sections;
use super::{Env, Findings};
use crate::cli::IdleArgs;
use crate::client::OnHubClose;

pub async fn run(env: &Env, args: &IdleArgs) -> Result<Findings> {
    let plan = Plan {
        on_hub_close: OnHubClose::GiveUp,
        drain_timeout: Duration::from_secs(1),
        ..Plan::subscribers(&args.clients, args.ramp_rate, args.hold)
    };
    let o = env.run(&plan).await?;
    let sections = hold_sections(&o, []);
    Findings::of(o, sections, Vec::new())
}
