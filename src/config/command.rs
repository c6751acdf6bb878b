//! `crier token`: the one subcommand (a signed token for trying token mode).

use std::time::Duration;

use clap::{Args, Subcommand};

use super::values::positive_duration;

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print a connection token signed with --token-secret (HS256), for the demo and for
    /// trying things out; backends sign their own (docs/SECURITY.md).
    Token(TokenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long)]
    pub sub: String,
    /// Channel patterns the token may subscribe to (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub subscribe: Vec<String>,
    /// Channel patterns the token may publish to (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub publish: Vec<String>,
    /// Lifetime: `exp` is now plus this.
    #[arg(long, default_value = "1h", value_parser = positive_duration)]
    pub ttl: Duration,
    /// The `info` object, as JSON (e.g. '{"name":"Ada"}').
    #[arg(long)]
    pub info: Option<String>,
}
