//! Unit tests of the flags: defaults, parsing, warnings.

use super::*;

#[test]
fn defaults_parse_and_durations_are_humane() {
    let c = Config::from_args(["--lp-hold", "3s", "--history-ttl", "1m"]).unwrap();
    assert_eq!(c.lp_hold, Duration::from_secs(3));
    assert_eq!(c.history_ttl, Duration::from_secs(60));
    assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
    assert!(Config::from_args(["--idle-timeout", "0s"]).is_err());
    assert!(Config::from_args(["--queue-capacity", "0"]).is_err());
    assert!(
        Config::default().warnings().is_empty(),
        "defaults are consistent"
    );
    assert_eq!(
        Config::from_args(["--idle-timeout", "10s", "--ping-interval", "20s"])
            .unwrap()
            .warnings()
            .len(),
        1
    );
}

#[test]
fn webhooks_are_signed_with_their_secret_or_the_first_api_key() {
    let hook = ["--webhook-url", "http://127.0.0.1:9/hook"];
    assert!(Config::from_args(hook).is_err(), "nothing to sign with");
    let c = Config::from_args([&hook[..], &["--api-key", "k1,k2"]].concat()).unwrap();
    let w = c.webhook_config().unwrap().unwrap();
    assert_eq!(w.secret, b"k1");
    assert!(w.kinds.has(crate::webhook::EventKind::MemberRemoved));
    let c = Config::from_args(
        [
            &hook[..],
            &["--webhook-secret", "s", "--webhook-events", "user_online"],
        ]
        .concat(),
    )
    .unwrap();
    let w = c.webhook_config().unwrap().unwrap();
    assert_eq!(w.secret, b"s");
    assert!(!w.kinds.has(crate::webhook::EventKind::MemberRemoved));
    let https = ["--webhook-url", "https://x/", "--webhook-secret", "s"];
    let e = Config::from_args(https).unwrap_err().to_string();
    assert!(e.contains("only http://"), "{e}");
    assert!(Config::from_args(["--webhook-events", "user_away"]).is_err());
    assert!(Config::default().webhook_config().unwrap().is_none());
}

#[test]
fn the_token_command_reads_the_global_secret() {
    let c = Config::from_args([
        "--token-secret",
        "s",
        "token",
        "--sub",
        "ada",
        "--subscribe",
        "chat:*,news",
    ])
    .unwrap();
    let Some(Command::Token(args)) = &c.command else {
        panic!("no token command")
    };
    assert_eq!(args.subscribe, ["chat:*", "news"]);
    assert_eq!(args.ttl, Duration::from_secs(3600));
    assert!(c.token_verifier().is_some());
    let c = Config::from_args(["token", "--sub", "ada", "--token-secret", "s"]).unwrap();
    assert!(
        c.token_secret.is_some(),
        "the secret may follow the command"
    );
    assert!(
        format!("{c:?}").contains("<redacted>"),
        "secrets stay out of Debug"
    );
}
