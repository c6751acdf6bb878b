//! What an idle WebSocket holds on the heap, by allocation size: a census for
//! docs/BENCHMARKS.md ("Idle WebSocket: where the bytes go").
//!
//! Runs the hub in-process on its own runtime (jemalloc underneath, as in the binary) and
//! counts every allocation and free made on the hub's threads, by requested size. Connects
//! `N` WebSockets from a separate thread, each subscribed at connect (`?channel=cK`, K = i mod
//! 10, as `crier-loadtest idle` does), reads each one's `subscribed` frame, waits a moment,
//! and prints what the hub holds more than before, per connection, by size and by jemalloc
//! size class. RSS is the loadtest's business; this says which allocations make it up.
//!
//! `cd tools/idle-census && cargo run --release -- 2000`

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tikv_jemallocator::Jemalloc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sizes counted one by one; larger allocations share the last slot.
const SIZES: usize = 8193;

struct Census;

static LIVE: [AtomicI64; SIZES] = [const { AtomicI64::new(0) }; SIZES];
/// Bytes of the allocations too large for a slot of their own (maps' tables, mostly).
static LARGE_BYTES: AtomicI64 = AtomicI64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

/// `CENSUS_TRACE=<size>`: the call stack of one allocation of that size made while the
/// connections are made, to tell which structure a size is.
static TRACE_SIZE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static TRACE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn trace(size: usize) {
    if size == 0 || TRACE_SIZE.load(Ordering::Relaxed) != size {
        return;
    }
    if TRACING.try_with(|t| t.replace(true)).unwrap_or(true) {
        return;
    }
    if let Ok(mut slot) = TRACE.try_lock() {
        if slot.is_none() {
            *slot = Some(std::backtrace::Backtrace::force_capture().to_string());
        }
    }
    let _ = TRACING.try_with(|t| t.set(false));
}

fn note(size: usize, delta: i64) {
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        LIVE[size.min(SIZES - 1)].fetch_add(delta, Ordering::Relaxed);
        if size >= SIZES - 1 {
            LARGE_BYTES.fetch_add(delta * size as i64, Ordering::Relaxed);
        }
        if delta > 0 {
            trace(size);
        }
    }
}

unsafe impl GlobalAlloc for Census {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size(), 1);
        unsafe { Jemalloc.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size(), 1);
        unsafe { Jemalloc.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(layout.size(), -1);
        unsafe { Jemalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(layout.size(), -1);
        note(new_size, 1);
        unsafe { Jemalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Census = Census;

fn snapshot() -> (Vec<i64>, i64) {
    (
        LIVE.iter().map(|n| n.load(Ordering::Relaxed)).collect(),
        LARGE_BYTES.load(Ordering::Relaxed),
    )
}

/// jemalloc's small size classes (and the 4 KiB-spaced large ones above 14 KiB, roughly).
fn size_class(size: usize) -> usize {
    const SMALL: [usize; 36] = [
        8, 16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768,
        896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240,
        12288, 14336,
    ];
    SMALL
        .iter()
        .copied()
        .find(|&class| size <= class)
        .unwrap_or(size.next_multiple_of(4096))
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let hub = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(|| COUNTED.with(|c| c.set(true)))
        .build()
        .unwrap();
    let config = crier::config::Config::from_args(["--bind", "127.0.0.1:0"]).unwrap();
    let listener = hub
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    hub.spawn(crier::server::Server::new(config).run(listener, async move {
        let _ = stopped.await;
    }));

    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Warm up: one connection made and closed, so lazily built hub state is not counted.
    let warm = clients.block_on(connect(addr, 0));
    drop(warm);
    std::thread::sleep(Duration::from_millis(500));
    let before = snapshot();
    if let Some(size) = std::env::var("CENSUS_TRACE")
        .ok()
        .and_then(|size| size.parse().ok())
    {
        TRACE_SIZE.store(size, Ordering::Relaxed);
    }
    let mut held = Vec::with_capacity(n);
    clients.block_on(async {
        for i in 0..n {
            held.push(connect(addr, i).await);
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    let after = snapshot();

    let (before, large_before) = before;
    let (after, large_after) = after;
    // An allocation made once per connection shows as a count near 1 (or 2, 3); maps and
    // tables that grow with the number of connections show as fractions, summed apart.
    let mut by_class: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
    println!("{n} idle WebSockets: live allocations on the hub's threads, per connection");
    println!("{:>9} {:>8} {:>10} {:>11}", "size", "count", "requested", "size class");
    let (mut requested, mut rounded, mut shared) = (0.0, 0.0, 0.0);
    for size in 0..SIZES - 1 {
        let count = (after[size] - before[size]) as f64 / n as f64;
        if count.abs() < 0.5 {
            shared += count * size_class(size) as f64;
            continue;
        }
        let class = size_class(size);
        println!(
            "{size:>9} {count:>8.2} {:>10.0} {class:>11}",
            count * size as f64
        );
        requested += count * size as f64;
        rounded += count * class as f64;
        let entry = by_class.entry(class).or_default();
        entry.0 += count;
        entry.1 += count * class as f64;
    }
    shared += (large_after - large_before) as f64 / n as f64;
    println!("by size class:");
    for (class, (count, bytes)) in by_class {
        println!("{class:>9} {count:>8.2} {bytes:>10.0}");
    }
    println!("per connection: {requested:.0} B requested, {rounded:.0} B in size classes");
    println!("growing maps and tables, amortised: {shared:.0} B per connection");
    TRACE_SIZE.store(0, Ordering::Relaxed);
    if let Some(trace) = TRACE.lock().unwrap().take() {
        println!("one allocation of the traced size, made by:\n{trace}");
    }
    drop(held);
}

/// A WebSocket handshake by hand (no client library on the counted side anyway), subscribed to
/// one of ten channels; returns once the `subscribed` frame has arrived.
async fn connect(addr: std::net::SocketAddr, i: usize) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /ws?channel=c{} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        i % 10
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // The 101 head, then the `subscribed` frame (a text frame whose payload names it).
    while !(got.windows(4).any(|w| w == b"\r\n\r\n")
        && got.windows(10).any(|w| w == b"subscribed"))
    {
        let read = stream.read(&mut buf).await.unwrap();
        assert!(read > 0, "the hub closed connection {i}: {got:?}");
        got.extend_from_slice(&buf[..read]);
    }
    stream
}
