//! crier-loadtest: drives a running crier hub over loopback with real clients.
//!
//! Map of the tool:
//! - `cli`        — clap options: global flags, one subcommand per scenario, shared flag groups.
//! - `target`     — the hub's address (loopback only), 127.0.0.x source spreading, fd budget.
//! - `ctx`        — what one run's tasks share: HTTP clients, clock, histograms, ledger, counters.
//! - `frame`      — the protocol frames the tool reads (borrowed, cheap) and writes.
//! - `client`     — subscribers (WebSocket, long-poll) and slow clients; how a connection ended.
//! - `publisher`  — fixed-rate or saturating HTTP publishers, coordinated-omission safe.
//! - `accounting` — exact loss/duplicate/reorder counting by offset.
//! - `presence`   — `presence_diff` frames per member and phase; presence listings checked.
//! - `latency`    — the shared clock and sharded HDR histograms.
//! - `procfs`     — the hub's memory and CPU, kernel socket memory.
//! - `monitor`    — periodic samples and live progress.
//! - `scenario`   — idle, fanout, slow, storm, soak, smoke, presence on one engine run in
//!   phases.
//! - `report`, `html` — the summary, `--json`, and the self-contained HTML report.

mod accounting;
mod cli;
mod client;
mod ctx;
mod frame;
mod html;
mod latency;
mod monitor;
mod presence;
mod procfs;
mod publisher;
mod report;
mod scenario;
mod target;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use cli::{Cli, Command};
use scenario::Env;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("crier-loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let target = match &cli.publish_template {
        Some(publish) => target::Target::parse_generic(
            cli.ws_template.as_deref(),
            cli.lp_template.as_deref(),
            publish,
            cli.source_addrs,
        )?,
        None => target::Target::parse(&cli.url, cli.source_addrs)?,
    };
    let target = match &cli.publish_node {
        Some(url) => target.with_publish_node(url)?,
        None => target,
    };
    if let Some((ws, lp)) = target.generic_transports() {
        let transport_ok = match cli.command.clients().transport {
            client::Transport::Ws => ws,
            client::Transport::Lp => lp,
            client::Transport::Mix => ws && lp,
        };
        let supported = matches!(
            cli.command,
            Command::Idle(_) | Command::Fanout(_) | Command::Slow(_)
        ) && transport_ok;
        if !supported {
            bail!(
                "generic mode runs idle, fanout and slow, over WebSocket with --ws-template \
                 and long-poll with --lp-template (--transport lp): storm, soak and smoke need \
                 crier's resume protocol, presence crier's presence frames"
            );
        }
    }
    for &pid in &cli.server_pid {
        if !procfs::process_exists(pid) {
            bail!("--server-pid {pid}: no such process");
        }
    }
    let hub_procs = match &cli.server_match {
        Some(name) => {
            let pids = procfs::pids_named(name);
            if pids.is_empty() {
                bail!("--server-match {name}: no process with that name");
            }
            eprintln!("crier-loadtest: hub processes named {name}: {pids:?}");
            procfs::HubProcs::new(pids)
        }
        None => procfs::HubProcs::new(cli.server_pid.clone()),
    };
    let nofile_limit = target::raise_nofile_limit().context("raising the open-file limit")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let interrupted = CancellationToken::new();
    let env = Env {
        target,
        hub_procs,
        progress: if cli.json && cli.progress == monitor::ProgressMode::Auto {
            monitor::ProgressMode::Plain
        } else {
            cli.progress
        },
        sample_interval: cli.sample_interval,
        nofile_limit,
        interrupted: interrupted.clone(),
        command,
    };
    let report = runtime.block_on(async {
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("crier-loadtest: interrupted, finishing up (Ctrl-C again to abort)");
                interrupted.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        check_reachable(&env).await?;
        scenario::run(&env, &cli.command).await
    })?;
    // Client tasks may still be closing sockets; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));

    let mut out = std::io::stdout().lock();
    if cli.json {
        writeln!(out, "{}", report.to_json()?)?;
    } else {
        report.write_summary(&mut out)?;
    }
    if let Some(path) = &cli.save_json {
        std::fs::write(path, report.to_json()?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(dir) = &cli.report {
        let path = html::write(dir, &report)?;
        eprintln!("report: {}", path.display());
    }
    let strict = cli.strict || matches!(cli.command, Command::Smoke(_) | Command::Presence(_));
    Ok(if strict && !report.passed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Fails fast with a clear message when nothing listens at `--url` (or, in generic mode, at
/// the templates' addresses).
async fn check_reachable(env: &Env) -> Result<()> {
    if let Some(t) = &env.target.generic {
        for addr in [env.target.addr, t.publish_addr] {
            let connect = tokio::net::TcpStream::connect(addr);
            match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => bail!("nothing answers at {addr}: {e}"),
                Err(_) => bail!("connecting to {addr} timed out"),
            }
        }
        return Ok(());
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let url = env.target.http_url("/healthz");
    match client.get(&url).send().await {
        Ok(_) => Ok(()),
        Err(e) => bail!("the hub does not answer at {url}: {e} (is `cargo run --release -- --bind {}` running?)", env.target.authority),
    }
}
