//! The `crier` binary: parse config, set up logging, bind, serve until SIGINT/SIGTERM.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crier::auth::token::{sign_hs256, unix_now, TokenClaims};
use crier::config::{raise_open_files_limit, Command, Config, TokenArgs};
use crier::hub::HubError;
use crier::server::Server;

/// jemalloc returns freed memory to the operating system on its own (dirty pages decay back
/// within seconds), where glibc keeps it for reuse; measured side by side it also holds an
/// idle WebSocket in less and costs the same at saturation (docs/BENCHMARKS.md, "Allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load();
    if let Some(Command::Token(args)) = &config.command {
        return print_token(&config, args);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    match raise_open_files_limit() {
        Ok(limit) => tracing::info!(
            open_files_limit = limit,
            "raised the open-files limit to the hard limit"
        ),
        Err(error) => tracing::warn!(%error, "could not raise the open-files limit"),
    }
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    for note in config.security_notes() {
        tracing::warn!("{note}");
    }
    let ceiling = config.connection_ceiling();
    tracing::info!(
        max_connections = ceiling,
        max_sockets = config.socket_ceiling(),
        "connection ceilings: clients, and open sockets (each holds one file descriptor)"
    );

    let shutdown = shutdown_signal().context("cannot install the signal handlers")?;
    let (bind, static_dir) = (config.bind, config.static_dir.clone());
    let (queue_capacity, history_size) = (config.queue_capacity, config.history_size);
    let client_publish = config.client_publish.clone();
    let redis_url = config.redis_url.clone();
    // Reached before binding: a node that cannot reach its broker must not serve (nor look
    // as if it did), since its clients would see positions no other node agrees with.
    let server = match Server::connect(config).await {
        Ok(server) => server,
        Err(HubError::BrokerUnavailable(why)) => anyhow::bail!(
            "cannot start: {why} (--redis-url {}; --redis-wait waits for it)",
            redis_url.as_deref().unwrap_or("")
        ),
        Err(error) => anyhow::bail!("cannot start: {error}"),
    };
    if redis_url.is_some() {
        tracing::info!("connected to Redis: channels are shared with the other nodes");
    }
    let listener = crier::server::bind(bind).with_context(|| format!("cannot listen on {bind}"))?;
    let addr = listener.local_addr()?;
    if !static_dir.is_dir() {
        tracing::warn!(dir = %static_dir.display(), "static dir not found; the demo page will 404");
    }
    tracing::info!(
        queue_capacity,
        history_size,
        client_publish = %client_publish,
        "listening on http://{addr}"
    );
    server.run(listener, shutdown).await?;
    Ok(())
}

/// `crier token …`: prints an HS256 token signed with --token-secret (or its env variable).
fn print_token(config: &Config, args: &TokenArgs) -> anyhow::Result<()> {
    let secret = config
        .token_secret
        .as_ref()
        .context("crier token needs --token-secret (or CRIER_TOKEN_SECRET)")?;
    let info = args
        .info
        .as_deref()
        .map(|text| {
            serde_json::value::RawValue::from_string(text.to_owned())
                .ok()
                .filter(|raw| raw.get().trim_start().starts_with('{'))
                .context("--info must be a JSON object")
        })
        .transpose()?;
    let claims = TokenClaims {
        sub: args.sub.clone(),
        exp: unix_now() + args.ttl.as_secs(),
        subscribe: args.subscribe.clone(),
        publish: args.publish.clone(),
        info,
    };
    let token = sign_hs256(secret.expose().as_bytes(), &claims);
    use std::io::Write as _;
    writeln!(std::io::stdout(), "{token}")?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed here, before the hub announces
/// that it is listening, so a signal sent as soon as it is up is never missed (the default
/// action would kill the process without closing anything).
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutdown signal received");
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received");
    })
}
