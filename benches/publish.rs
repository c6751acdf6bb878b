//! Micro-benchmark of the publish path: encode a message once, append it to history, and
//! enqueue it to N subscriber queues. Guards the per-delivery cost in user space (the socket
//! writes are measured by the loadtest, not here).
//!
//! `cargo bench --bench publish`; the figure to watch is time per element (= per delivery).

use std::hint::black_box;
use std::time::{Duration, Instant};

use crier::hub::{ChannelName, Epoch, Hub, HubConfig, TransportKind};
use crier::protocol::server;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio_util::sync::CancellationToken;

/// Publishes timed between queue drains; below the default queue capacity.
const PUBLISHES_PER_DRAIN: u64 = 256;

fn publish_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_fanout");
    let data = format!("\"{}\"", "x".repeat(200));
    for subscribers in [1usize, 100, 1_000, 10_000] {
        let hub = Hub::new(
            HubConfig {
                max_connections: subscribers + 1,
                ..HubConfig::default()
            },
            CancellationToken::new(),
        );
        let channel = ChannelName::parse("bench").unwrap();
        let clients: Vec<_> = (0..subscribers)
            .map(|_| {
                let client = hub.register(TransportKind::WebSocket).unwrap();
                hub.subscribe(&client, &channel, None, &|s| server::subscribed(s, None))
                    .unwrap();
                client
            })
            .collect();
        let mut sink = Vec::new();
        let mut drain = || {
            for client in &clients {
                hub.take(client, &mut sink, usize::MAX);
                sink.clear();
            }
        };
        drain();
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| {
                b.iter_custom(|iters| {
                    let mut timed = Duration::ZERO;
                    let mut done = 0;
                    while done < iters {
                        let n = PUBLISHES_PER_DRAIN.min(iters - done);
                        let start = Instant::now();
                        for _ in 0..n {
                            black_box(hub.publish(&channel, &data).unwrap());
                        }
                        timed += start.elapsed();
                        drain();
                        done += n;
                    }
                    timed
                });
            },
        );
    }
    group.finish();
}

fn encode_once(c: &mut Criterion) {
    let channel = ChannelName::parse("bench").unwrap();
    let epoch = Epoch::random();
    let data = format!("\"{}\"", "x".repeat(200));
    c.bench_function("encode_message_256B", |b| {
        b.iter(|| {
            black_box(server::message(
                &channel,
                &epoch,
                black_box(42),
                &server::Payload::data(&data),
            ))
        });
    });
}

criterion_group!(benches, publish_fanout, encode_once);
criterion_main!(benches);
