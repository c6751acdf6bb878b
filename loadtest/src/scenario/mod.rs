//! The scenarios. Each turns its flags into an engine `Plan` (or two), runs it and turns the
//! `Outcome` into `Findings`: summary sections, problems, the machine-readable result; `run`
//! makes the one `RunReport` of them.
//!
//! - `plan`     — what a run is to do.
//! - `engine`   — carries a plan out, in phases; `clients` — its client tasks.
//! - `figures`  — what a run measured (`Outcome`, the JSON schema).
//! - `sections` — the summary sections and problems drawn from an `Outcome`.
//! - `idle`, `fanout`, `slow`, `storm`, `soak`, `smoke`, `presence` — one scenario each.

mod clients;
mod engine;
mod fanout;
mod figures;
mod idle;
mod plan;
mod presence;
mod sections;
mod slow;
mod smoke;
mod soak;
mod storm;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use crate::cli::Command;
use crate::ctx::Ctx;
use crate::monitor::{ProgressMode, Sample};
use crate::report::{RunReport, Section};
use crate::target::{check_fd_budget, Target};
use figures::Outcome;
use plan::Plan;

/// What every scenario needs from the global options.
pub struct Env {
    pub target: Target,
    pub hub_procs: Option<crate::procfs::HubProcs>,
    pub progress: ProgressMode,
    pub sample_interval: Duration,
    pub nofile_limit: u64,
    pub interrupted: CancellationToken,
    pub command: String,
}

impl Env {
    /// Runs one plan on a fresh context (counters and histograms start at zero).
    pub async fn run(&self, plan: &Plan) -> Result<Outcome> {
        let sockets = plan.sockets();
        check_fd_budget(sockets.total(), &sockets, self.nofile_limit)?;
        let ctx: Arc<Ctx> = Ctx::new(
            self.target.clone(),
            self.hub_procs.clone(),
            self.interrupted.clone(),
        )?;
        Ok(engine::run(ctx, plan, self.progress, self.sample_interval).await)
    }
}

/// What a scenario found.
pub struct Findings {
    /// The scenario's figures: the JSON `result`.
    pub result: serde_json::Value,
    pub sections: Vec<Section>,
    /// What broke a promise; empty when clean.
    pub problems: Vec<String>,
    pub samples: Vec<Sample>,
}

impl Findings {
    /// The findings of one engine run: its outcome is the result; the problems are the
    /// standard ones, then the scenario's own (`more_problems`).
    pub fn of(o: Outcome, sections: Vec<Section>, more_problems: Vec<String>) -> Result<Self> {
        let mut problems = sections::problems(&o);
        problems.extend(more_problems);
        Ok(Self {
            result: serde_json::to_value(&o)?,
            sections,
            problems,
            samples: o.samples,
        })
    }
}

/// Runs the scenario `command` names and reports on it.
pub async fn run(env: &Env, command: &Command) -> Result<RunReport> {
    let started_unix_s = unix_now();
    let findings = match command {
        Command::Idle(a) => idle::run(env, a).await?,
        Command::Fanout(a) => fanout::run(env, a).await?,
        Command::Slow(a) => slow::run(env, a).await?,
        Command::Storm(a) => storm::run(env, a).await?,
        Command::Soak(a) => soak::run(env, a).await?,
        Command::Smoke(a) => smoke::run(env, a).await?,
        Command::Presence(a) => presence::run(env, a).await?,
    };
    Ok(RunReport {
        scenario: command.name().to_owned(),
        command: env.command.clone(),
        started_unix_s,
        settings: command.settings()?,
        result: findings.result,
        problems: findings.problems,
        sections: findings.sections,
        samples: findings.samples,
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
