//! `fanout`: N subscribers over C channels, publishing at a fixed rate or flat out.

use anyhow::Result;

use super::plan::Plan;
use super::sections::standard_sections;
use super::{Env, Findings};
use crate::cli::FanoutArgs;

pub fn plan(args: &FanoutArgs) -> Plan {
    Plan::publishing(&args.clients, &args.publish)
}

pub async fn run(env: &Env, args: &FanoutArgs) -> Result<Findings> {
    let o = env.run(&plan(args)).await?;
    let sections = standard_sections(&o, []);
    Findings::of(o, sections, Vec::new())
}
