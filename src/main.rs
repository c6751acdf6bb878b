//! The `crier` binary: parse config, set up logging, bind, serve until SIGINT/SIGTERM.

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crier::config::{raise_open_files_limit, Config};
use crier::hub::HubError;
use crier::server::Server;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
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
    let ceiling = config.connection_ceiling();
    tracing::info!(
        max_connections = ceiling,
        "connection ceiling (each connection holds one file descriptor)"
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
