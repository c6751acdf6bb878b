//! The command line stays compatible: flags, aliases, defaults and the JSON settings.

use super::*;
use clap::CommandFactory;

#[test]
fn cli_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn defaults_are_sensible() {
    let cli = Cli::try_parse_from(["crier-loadtest", "fanout"]).unwrap();
    assert_eq!(cli.url, "http://127.0.0.1:8080");
    let Command::Fanout(f) = cli.command else {
        panic!("not fanout")
    };
    assert_eq!(f.clients.clients, 1000);
    assert_eq!(f.clients.transport, Transport::Ws);
    assert_eq!(f.publish.duration, Duration::from_secs(10));
}

#[test]
fn global_flags_after_subcommand() {
    let cli = Cli::try_parse_from([
        "crier-loadtest",
        "slow",
        "--slow",
        "7",
        "--rate",
        "0",
        "--publishers",
        "4",
        "--server-pid",
        "42",
        "--json",
        "--duration",
        "1m",
    ])
    .unwrap();
    assert!(cli.json);
    assert_eq!(cli.server_pid, vec![42]);
    let Command::Slow(s) = cli.command else {
        panic!("not slow")
    };
    assert_eq!(s.slow, 7);
    assert_eq!(s.fanout.publish.rate, 0.0);
    assert_eq!(s.fanout.publish.publishers, 4);
    assert_eq!(s.fanout.publish.duration, Duration::from_secs(60));
}

#[test]
fn generic_mode_and_several_pids() {
    let cli = Cli::try_parse_from([
        "crier-loadtest",
        "idle",
        "--ws-template",
        "ws://127.0.0.1:8081/sub/{channel}",
        "--publish-template",
        "http://127.0.0.1:8081/pub/{channel}",
        "--server-pid",
        "1,2",
        "--server-pid",
        "3",
    ])
    .unwrap();
    assert_eq!(cli.server_pid, vec![1, 2, 3]);
    assert!(cli.ws_template.is_some() && cli.publish_template.is_some());
    // A subscriber template without the publish one is refused (the publish template without
    // either is refused at start: `Target::parse_generic`), as is a pid list next to a name.
    for flag in ["--ws-template", "--lp-template"] {
        assert!(
            Cli::try_parse_from(["crier-loadtest", "idle", flag, "ws://x/{channel}"]).is_err(),
            "{flag} alone"
        );
    }
    let lp = Cli::try_parse_from([
        "crier-loadtest",
        "fanout",
        "--transport",
        "lp",
        "--lp-template",
        "http://127.0.0.1:8081/sub/{channel}",
        "--publish-template",
        "http://127.0.0.1:8081/pub/{channel}",
    ])
    .unwrap();
    assert!(lp.lp_template.is_some() && lp.ws_template.is_none());
    assert!(Cli::try_parse_from([
        "crier-loadtest",
        "idle",
        "--server-pid",
        "1",
        "--server-match",
        "nginx"
    ])
    .is_err());
}

#[test]
fn rejects_bad_values() {
    assert!(Cli::try_parse_from(["crier-loadtest", "idle", "--transport", "tcp"]).is_err());
    assert!(Cli::try_parse_from(["crier-loadtest", "idle", "--hold", "soon"]).is_err());
}

fn parse(args: &str) -> Cli {
    let argv = std::iter::once("crier-loadtest").chain(args.split_whitespace());
    Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args}: {e}"))
}

#[test]
fn fanout_flags_parse_as_before() {
    let Command::Fanout(f) =
        parse("fanout -n 100 -c 10 --rate 0 --publishers 8 --duration 10s").command
    else {
        panic!("not fanout")
    };
    assert_eq!((f.clients.clients, f.clients.channels), (100, 10));
    assert_eq!((f.publish.rate, f.publish.publishers), (0.0, 8));
    assert_eq!(f.publish.duration, Duration::from_secs(10));
    // The old long name of fanout's count is an alias of the one name.
    let Command::Fanout(f) = parse("fanout --subscribers 7").command else {
        panic!("not fanout")
    };
    assert_eq!(f.clients.clients, 7);
}

#[test]
fn every_documented_invocation_parses() {
    // bench.sh, nchan/compare.sh, .ci/smoke, README.md, docs/BENCHMARKS.md.
    for args in [
        "idle -n 1000 --hold 10s",
        "idle -n 10000 --ramp-rate 50000 --hold 10s",
        "idle -n 1000 --transport lp --hold 10s",
        "idle -n 5000 --transport lp",
        "idle -n 1000 --channels 10 --transport mix --ramp-rate 1000 --hold 10s",
        "fanout -n 1000 -c 10 --rate 200 --duration 20s",
        "fanout -n 100 -c 10 --rate 0 --publishers 8 --duration 10s",
        "fanout -n 10000 -c 10 --rate 0 --publishers 16 --size 256 --duration 10s",
        "fanout --server-pid 1 --progress plain --report target/bench --save-json x.json",
        "slow -n 500 -c 5 --rate 500 --duration 30s --slow 50",
        "slow -n 1800 -c 10 --rate 100 --size 16384 --duration 60s --slow 200",
        "slow --slow 50 --slow-recv-buffer 4096 --no-baseline",
        "storm -n 2000 -c 20 --transport mix --rate 200 --duration 15s --storm-at 5s",
        "soak --duration 10m -n 1000 -c 20 --rate 200 --churn 10 --slow-every 20s --slow-batch 5",
        "soak --duration 2m -n 1000 -c 20 --rate 200 --churn 10 --slow-batch 0",
        "--url http://127.0.0.1:9 smoke --server-pid 42",
        "smoke -n 300 -c 6 --rate 200 --duration 6s",
        "presence -n 1000",
        "presence -n 1000 --transport mix --presence-batch 100ms",
        "presence -n 19000 --transport ws --server-pid 42",
        "--json idle --strict --threads 2 --source-addrs 8 --sample-interval 1s",
    ] {
        parse(args);
    }
}

/// The `settings` of `--json` keep the keys and defaults they had before the shared
/// groups were flattened (fanout keeps `subscribers`, slow nests `fanout`).
#[test]
fn settings_json_is_unchanged() {
    let expected = [
        (
            "idle",
            r#"{"channels":10,"clients":1000,"hold":"10s","ramp_rate":1000.0,"transport":"ws"}"#,
        ),
        (
            "fanout",
            r#"{"channels":10,"drain_timeout":"15s","duration":"10s","publishers":8,"ramp_rate":2000.0,"rate":1000.0,"size":256,"subscribers":1000,"transport":"ws"}"#,
        ),
        (
            "slow",
            r#"{"fanout":{"channels":10,"drain_timeout":"15s","duration":"10s","publishers":8,"ramp_rate":2000.0,"rate":1000.0,"size":256,"subscribers":1000,"transport":"ws"},"no_baseline":false,"slow":50,"slow_recv_buffer":4096}"#,
        ),
        (
            "storm",
            r#"{"channels":10,"clients":1000,"drain_timeout":"15s","duration":"15s","publishers":4,"ramp_rate":2000.0,"rate":200.0,"size":256,"storm_at":"5s","transport":"ws"}"#,
        ),
        (
            "soak",
            r#"{"channels":20,"churn":5.0,"clients":500,"drain_timeout":"20s","duration":"5m","publishers":4,"ramp_rate":1000.0,"rate":200.0,"size":256,"slow_batch":5,"slow_every":"30s","slow_recv_buffer":4096,"transport":"mix"}"#,
        ),
        (
            "smoke",
            r#"{"channels":6,"clients":300,"duration":"6s","rate":200.0,"transport":"mix"}"#,
        ),
        (
            "presence",
            r#"{"channels":1,"clients":1000,"presence_batch":"250ms","ramp_rate":20000.0,"transport":"ws"}"#,
        ),
    ];
    for (scenario, json) in expected {
        let settings = parse(scenario).command.settings().unwrap();
        let expected: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(settings, expected, "{scenario}");
    }
}
