//! `--config FILE`: every flag, by its long name, in TOML, plus the `[[namespace]]` table.
//! A flag given on the command line or by its `CRIER_*` variable wins over the file.
//!
//! ```toml
//! bind = "0.0.0.0:8080"
//! history-size = 100
//! api-key = ["k1", "k2"]          # repeatable flags take arrays
//!
//! [[namespace]]
//! prefix = "news:"
//! subscribe = "anyone"            # or "rights" (the default)
//! publish = "backend"             # or "rights" (the default)
//! history-size = 50
//! history-ttl = "1h"
//! stamp = false                   # client publishes carry `from` (the default: true)
//! presence = true                 # members and join/leave (default: as --presence says)
//! join-leave = false              # no presence_diff frames (default: with presence)
//! ```

use std::ffi::OsString;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};
use serde::Deserialize;

use crate::hub::{HistoryLimits, Namespace, PublishRule, SubscribeRule};

use super::Config;

/// One `[[namespace]]` of the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NamespaceConfig {
    pub prefix: String,
    #[serde(default = "rights_subscribe")]
    pub subscribe: SubscribeRule,
    #[serde(default = "rights_publish")]
    pub publish: PublishRule,
    pub history_size: Option<usize>,
    pub history_max_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde_opt")]
    pub history_ttl: Option<Duration>,
    #[serde(default = "yes")]
    pub stamp: bool,
    /// Presence on or off here (default: as `--presence` says).
    pub presence: Option<bool>,
    /// `presence_diff` frames for members who ask (default: with presence).
    pub join_leave: Option<bool>,
}

fn rights_subscribe() -> SubscribeRule {
    SubscribeRule::Rights
}

fn rights_publish() -> PublishRule {
    PublishRule::Rights
}

fn yes() -> bool {
    true
}

impl NamespaceConfig {
    /// The hub's rules for this namespace; history limits it does not set are the hub's.
    pub fn to_namespace(&self, defaults: HistoryLimits) -> Namespace {
        Namespace {
            prefix: self.prefix.clone(),
            subscribe: self.subscribe,
            publish: self.publish,
            history: HistoryLimits {
                size: self.history_size.unwrap_or(defaults.size),
                max_bytes: self.history_max_bytes.unwrap_or(defaults.max_bytes),
                ttl: self.history_ttl.unwrap_or(defaults.ttl),
            },
            stamp: self.stamp,
            presence: self.presence,
            join_leave: self.join_leave,
        }
    }
}

/// Durations in the file are written like the flags' (`"90s"`, `"5m"`).
mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Parses `args` (the program name first) and, when `--config` names a file, fills every
/// flag the command line and environment left at its default from the file.
pub fn parse(args: Vec<OsString>) -> Result<Config, clap::Error> {
    let mut command = Config::command();
    let matches = command.try_get_matches_from_mut(&args)?;
    let Some(path) = matches.get_one::<std::path::PathBuf>("config").cloned() else {
        return Config::from_arg_matches(&matches);
    };
    let invalid = |message: String| {
        command
            .clone()
            .error(clap::error::ErrorKind::InvalidValue, message)
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| invalid(format!("cannot read --config {}: {e}", path.display())))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| invalid(format!("--config {}: {e}", path.display())))?;
    let namespaces: Vec<NamespaceConfig> = match table.remove("namespace") {
        None => Vec::new(),
        Some(value) => value
            .try_into()
            .map_err(|e| invalid(format!("--config {}: [[namespace]]: {e}", path.display())))?,
    };
    // The file's settings go right after the program name, before any subcommand, for the
    // flags neither the command line nor the environment set.
    let mut from_file = Vec::new();
    for (key, value) in &table {
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
        else {
            return Err(invalid(format!(
                "--config {}: `{key}` is not a setting (settings are the long flag names, e.g. `history-size`)",
                path.display()
            )));
        };
        let id = arg.get_id().as_str();
        if !matches!(
            matches.value_source(id),
            None | Some(ValueSource::DefaultValue)
        ) {
            continue;
        }
        let flag_only = matches!(arg.get_action(), ArgAction::SetTrue);
        let values = match value {
            toml::Value::Array(items) => items.iter().collect::<Vec<_>>(),
            single => vec![single],
        };
        for value in values {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Boolean(true) if flag_only => {
                    from_file.push(OsString::from(format!("--{key}")));
                    continue;
                }
                toml::Value::Boolean(false) if flag_only => continue,
                other => other.to_string(),
            };
            from_file.push(OsString::from(format!("--{key}={text}")));
        }
    }
    let mut all = Vec::with_capacity(args.len() + from_file.len());
    all.extend(args.first().cloned());
    all.extend(from_file);
    all.extend(args.into_iter().skip(1));
    let mut config = Config::from_arg_matches(&Config::command().try_get_matches_from(all)?)?;
    config.namespaces = namespaces;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile_like::File {
        tempfile_like::File::new(text)
    }

    /// A file in the temp directory, removed when dropped (no extra crate for one test).
    mod tempfile_like {
        pub struct File(pub std::path::PathBuf);
        impl File {
            pub fn new(text: &str) -> Self {
                let path = std::env::temp_dir().join(format!(
                    "crier-config-{}-{}.toml",
                    std::process::id(),
                    rand::random::<u64>()
                ));
                std::fs::write(&path, text).unwrap();
                Self(path)
            }
        }
        impl Drop for File {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    fn parse_with(file: &tempfile_like::File, flags: &[&str]) -> Result<Config, clap::Error> {
        let mut args: Vec<OsString> =
            vec!["crier".into(), "--config".into(), file.0.clone().into()];
        args.extend(flags.iter().map(OsString::from));
        parse(args)
    }

    #[test]
    fn the_file_sets_what_flags_leave_at_their_defaults() {
        let f = file(
            r#"
history-size = 7
lp-hold = "3s"
bind = "127.0.0.1:9999"
client-publish = "room:*"

[[namespace]]
prefix = "news:"
subscribe = "anyone"
publish = "backend"
history-size = 2
history-ttl = "1m"
stamp = false
"#,
        );
        let c = parse_with(&f, &["--bind", "127.0.0.1:7000"]).unwrap();
        assert_eq!(c.history_size, 7);
        assert_eq!(c.lp_hold, Duration::from_secs(3));
        assert_eq!(c.bind.port(), 7000, "the command line wins");
        assert_eq!(c.client_publish, "room:*");
        assert_eq!(c.namespaces.len(), 1);
        let ns = c.namespaces[0].to_namespace(c.hub_config().history);
        assert_eq!(ns.subscribe, SubscribeRule::Anyone);
        assert_eq!(ns.publish, PublishRule::Backend);
        assert_eq!(
            (ns.history.size, ns.history.ttl),
            (2, Duration::from_secs(60))
        );
        assert!(!ns.stamp);
    }

    #[test]
    fn unknown_settings_and_bad_values_are_refused_with_the_reason() {
        let f = file("histroy-size = 7\n");
        let e = parse_with(&f, &[]).unwrap_err().to_string();
        assert!(e.contains("`histroy-size` is not a setting"), "{e}");
        let f = file("history-size = \"lots\"\n");
        assert!(parse_with(&f, &[]).is_err());
        let f = file("[[namespace]]\nprefix = \"a:\"\nsubscribe = \"everyone\"\n");
        let e = parse_with(&f, &[]).unwrap_err().to_string();
        assert!(e.contains("namespace"), "{e}");
    }
}
