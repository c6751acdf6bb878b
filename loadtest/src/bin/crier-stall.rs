//! crier-stall: opens many connections that each send the start of a request head and then
//! stall, and measures the hub's CPU time meanwhile (from /proc/PID/stat). Attack 6 of the
//! abuse issue: connections stalled after a prefix of `GET /ws` were re-peeked every 2 ms.
//!
//! ```sh
//! crier --handshake-timeout 60s &          # the stall must outlast the measurement
//! crier-stall --pid $! --connections 2000 --prefix 'GET /w' --seconds 10
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[allow(dead_code)]
#[path = "../procfs.rs"]
mod procfs;

#[derive(Debug, Parser)]
#[command(about = "Stalled request heads against a crier hub; reports the hub's CPU meanwhile")]
struct Args {
    /// The hub's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The hub's process id (its CPU time is read from /proc/PID/stat).
    #[arg(long)]
    pid: u32,
    /// Connections to open.
    #[arg(long, default_value_t = 2000)]
    connections: usize,
    /// What each connection sends before it stalls.
    #[arg(long, default_value = "GET /w")]
    prefix: String,
    /// How long the hub's CPU is measured while every connection stalls.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    seconds: Duration,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut stalled = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let mut stream = TcpStream::connect(args.addr)
            .await
            .with_context(|| format!("connection {i}"))?;
        stream.write_all(args.prefix.as_bytes()).await?;
        stalled.push(stream);
    }
    // Let the hub take in what was sent before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Some(before) = procfs::cpu_seconds(args.pid) else {
        bail!("cannot read /proc/{}/stat", args.pid);
    };
    let start = Instant::now();
    tokio::time::sleep(args.seconds).await;
    let after = procfs::cpu_seconds(args.pid).context("the hub exited")?;
    let elapsed = start.elapsed().as_secs_f64();
    let open = stalled
        .iter()
        .filter(|s| {
            let mut byte = [0u8; 1];
            // Still open: nothing to read yet (the hub answered nothing, closed nothing).
            matches!(s.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    let cpu = after - before;
    // The tool's one output: the figures it measured.
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{} connections sent {:?} and stalled ({} still open at the end)",
            args.connections, args.prefix, open
        );
        println!(
            "hub CPU: {cpu:.2} s over {elapsed:.1} s = {:.1} % of one core",
            100.0 * cpu / elapsed
        );
    }
    Ok(())
}
