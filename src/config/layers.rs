//! The flags turned into each layer's typed settings (`HubConfig`, `WsConfig`, …), the
//! ceilings derived from the open-files limit, and the start-up warnings and security notes.

use crate::auth::{BackendGuard, OriginPolicy, TokenVerifier};
use crate::cluster::ClusterConfig;
use crate::hub::{HistoryLimits, HubConfig, PublishPolicy};
use crate::transport::admission::AdmissionConfig;
use crate::transport::long_poll::LongPollConfig;
use crate::transport::rate::{Rate, RateConfig};
use crate::transport::ws::WsConfig;
use crate::webhook::{EventKinds, WebhookConfig};

use super::{file, Config, RESERVED_FDS, WEBHOOK_SHUTDOWN_GRACE};

impl Config {
    /// Parses flags as if given on the command line (for tests and embedding), ignoring the
    /// environment's `CRIER_*` variables only where a flag is given.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        file::parse(
            std::iter::once("crier".into())
                .chain(args.into_iter().map(Into::into))
                .collect(),
        )
        .and_then(Self::checked)
    }

    /// Refuses settings that parse one by one but not together.
    fn checked(self) -> Result<Self, clap::Error> {
        match self.webhook_config() {
            Ok(_) => Ok(self),
            Err(message) => {
                use clap::CommandFactory as _;
                Err(Self::command().error(clap::error::ErrorKind::InvalidValue, message))
            }
        }
    }

    /// The webhooks' settings; `None` without `--webhook-url`.
    pub fn webhook_config(&self) -> Result<Option<WebhookConfig>, String> {
        if self.webhook_urls.is_empty() {
            return Ok(None);
        }
        let urls = self
            .webhook_urls
            .iter()
            .map(|u| {
                let url = reqwest::Url::parse(u.trim())
                    .map_err(|e| format!("--webhook-url {u}: {e}"))?;
                if url.scheme() != "http" {
                    return Err(format!(
                        "--webhook-url {u}: only http:// is supported (put a TLS proxy in front of an https receiver; see docs/WEBHOOKS.md)"
                    ));
                }
                Ok(url)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let secret = match &self.webhook_secret {
            Some(secret) => secret.expose().as_bytes().to_vec(),
            None => self
                .api_keys
                .iter()
                .chain(self.api_key_file.iter().flat_map(|f| f.0.iter()))
                .map(|k| k.expose().trim())
                .find(|k| !k.is_empty())
                .ok_or(
                    "--webhook-url needs --webhook-secret or an --api-key to sign webhooks with",
                )?
                .as_bytes()
                .to_vec(),
        };
        let kinds = if self.webhook_events.is_empty() {
            EventKinds::all()
        } else {
            self.webhook_events.iter().copied().collect()
        };
        Ok(Some(WebhookConfig {
            urls,
            kinds,
            secret,
            queue: self.webhook_queue,
            concurrency: self.webhook_concurrency,
            timeout: self.webhook_timeout,
            attempts: self.webhook_attempts,
            backoff: self.webhook_backoff,
            backoff_max: self.webhook_backoff_max.max(self.webhook_backoff),
            offline_grace: self.webhook_offline_grace,
            // Within the server's own grace, so what is dropped is counted before it exits.
            shutdown_grace: (self.shutdown_grace / 2).min(WEBHOOK_SHUTDOWN_GRACE),
        }))
    }

    /// Parses the process's command line (and `--config` file); exits with clap's message on
    /// an error, as `Parser::parse` does.
    pub fn load() -> Self {
        file::parse(std::env::args_os().collect())
            .and_then(Self::checked)
            .unwrap_or_else(|e| e.exit())
    }

    /// The socket ceiling: `--max-sockets`, and never more than the open-files limit less
    /// the reserved descriptors, so that `accept` never fails for lack of one and a refusal
    /// can always be answered.
    pub fn socket_ceiling(&self) -> usize {
        let fd_room = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft.saturating_sub(RESERVED_FDS) as usize)
            .unwrap_or(1024);
        match self.max_sockets {
            0 => fd_room,
            n => n.min(fd_room),
        }
        .max(1)
    }

    /// The client ceiling (WebSocket + long-poll): the configured maximum, or the socket
    /// ceiling. A WebSocket client holds one socket and one client slot; a long-poll session
    /// holds a client slot, and a socket only while a request is open.
    pub fn connection_ceiling(&self) -> usize {
        match self.max_connections {
            0 => self.socket_ceiling(),
            n => n,
        }
    }

    /// Settings that work but probably not as intended, for a warning at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.idle_timeout <= self.ping_interval {
            warnings.push(format!(
                "--idle-timeout {:?} is not above --ping-interval {:?}: healthy but quiet WebSocket clients will be closed as idle",
                self.idle_timeout, self.ping_interval
            ));
        }
        if self.resubscribe_rate > 0 && (self.resubscribe_burst as usize) < self.max_subscriptions {
            warnings.push(format!(
                "--resubscribe-burst {} is below --max-subscriptions {}: a client resuming all its channels after a reconnect will be refused some (rate_limited)",
                self.resubscribe_burst, self.max_subscriptions
            ));
        }
        if self.lp_session_timeout <= self.lp_hold {
            warnings.push(format!(
                "--lp-session-timeout {:?} is not above --lp-hold {:?}: long-poll sessions may end between polls",
                self.lp_session_timeout, self.lp_hold
            ));
        }
        warnings
    }

    /// Who may use the backend API.
    pub fn backend_guard(&self) -> BackendGuard {
        let from_file = self.api_key_file.iter().flat_map(|f| f.0.iter());
        BackendGuard::new(
            self.api_keys
                .iter()
                .chain(from_file)
                .map(|k| k.expose().to_owned()),
            self.treat_as_remote.clone(),
        )
    }

    pub fn origin_policy(&self) -> OriginPolicy {
        OriginPolicy::new(self.allowed_origins.iter().cloned())
    }

    /// The connection-token verifier; `None` is open mode.
    pub fn token_verifier(&self) -> Option<TokenVerifier> {
        if let Some(secret) = &self.token_secret {
            return Some(TokenVerifier::hs256(
                secret.expose().as_bytes(),
                self.token_leeway,
            ));
        }
        let pem = self.token_public_key.as_ref()?;
        // Checked when the flag was parsed.
        TokenVerifier::from_public_key_pem(&pem.0, self.token_leeway).ok()
    }

    /// What the security settings leave open, for warnings at start-up (docs/SECURITY.md).
    pub fn security_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.backend_guard().has_keys() {
            notes.push(
                "no --api-key: /api/* and /metrics answer loopback peers only (set --api-key to publish from other hosts)"
                    .to_owned(),
            );
        }
        if self.token_verifier().is_none() {
            notes.push(
                "open mode (no --token-secret or --token-public-key): any client may connect and subscribe to any channel"
                    .to_owned(),
            );
        }
        if self
            .token_secret
            .as_ref()
            .is_some_and(|s| s.expose().len() < 32)
        {
            notes.push(
                "--token-secret is shorter than 32 bytes: use a long random secret".to_owned(),
            );
        }
        notes
    }

    pub fn hub_config(&self) -> HubConfig {
        let history = HistoryLimits {
            size: self.history_size,
            max_bytes: self.history_max_bytes,
            ttl: self.history_ttl,
        };
        HubConfig {
            queue_capacity: self.queue_capacity,
            queue_max_bytes: self.queue_max_bytes,
            history,
            namespaces: self
                .namespaces
                .iter()
                .map(|ns| ns.to_namespace(history))
                .collect(),
            history_budget: self.history_budget,
            max_connections: self.connection_ceiling(),
            max_subscriptions: self.max_subscriptions,
            max_channels: self.max_channels,
            max_json_depth: self.max_json_depth,
            client_publish: PublishPolicy::parse(&self.client_publish),
            presence: PublishPolicy::parse(&self.presence),
            overload_fraction: self.overload_fraction,
            overload_min_lagging: self.overload_min_lagging,
            stuck_timeout: self.stuck_timeout,
        }
    }

    /// How to reach Redis, when `--redis-url` is set.
    pub fn cluster_config(&self) -> Option<ClusterConfig> {
        Some(ClusterConfig {
            url: self.redis_url.clone()?,
            timeout: self.redis_timeout,
            wait: self.redis_wait,
            history: self.hub_config().history,
        })
    }

    pub fn ws_config(&self) -> WsConfig {
        WsConfig {
            ping_interval: self.ping_interval,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
            handshake_timeout: self.handshake_timeout,
            max_message_size: self.max_message_size,
        }
    }

    pub fn rate_config(&self) -> RateConfig {
        RateConfig {
            frames: Rate {
                per_second: self.max_frames_per_second,
                burst: self.frame_burst,
            },
            resubscribes: Rate {
                per_second: self.resubscribe_rate,
                burst: self.resubscribe_burst,
            },
            publishes: Rate {
                per_second: self.client_publish_rate,
                burst: self.client_publish_burst,
            },
        }
    }

    pub fn admission_config(&self) -> AdmissionConfig {
        AdmissionConfig {
            max_per_source: self.max_connections_per_ip,
            accepts: Rate {
                per_second: self.accepts_per_ip_per_second,
                burst: self.accept_burst_per_ip,
            },
            limit_loopback: self.limit_loopback,
        }
    }

    pub fn long_poll_config(&self) -> LongPollConfig {
        LongPollConfig {
            hold: self.lp_hold,
            session_timeout: self.lp_session_timeout,
        }
    }
}
