//! Serving one plain HTTP connection: hyper with upgrades over the bytes the sniffer read, a
//! deadline on every request body, a write timeout on every response, the peer address on
//! every request; and the `503 over_capacity` for a connection past the socket ceiling.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::http;

use super::io::EdgeIo;
use super::sockets;
use super::MAX_HEAD_BYTES;

/// What every HTTP connection is served with.
#[derive(Clone)]
pub(super) struct Edge {
    pub(super) handshake_timeout: Duration,
    pub(super) body_timeout: Duration,
    pub(super) write_timeout: Duration,
    pub(super) shutdown: CancellationToken,
}

impl Edge {
    pub(super) fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The header read timeout also bounds how long a kept-alive connection waits for its
        // next request: hyper starts it when it starts reading a head.
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.handshake_timeout)
            .max_buf_size(MAX_HEAD_BYTES);
        builder
    }
}

/// Serves one HTTP/1.1 connection (with upgrades); `read` is what the sniffer already took off
/// the socket.
pub(super) async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    read: Vec<u8>,
    router: axum::Router,
    edge: Edge,
) -> Result<(), hyper::Error> {
    // Messages are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    let (body_timeout, shutdown) = (edge.body_timeout, edge.shutdown.clone());
    // Whether a handler is running on this connection, for shutdown (below).
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counted = in_flight.clone();
    let service = TowerToHyperService::new(
        router
            .map_request(move |r: hyper::Request<Incoming>| {
                // The peer address rides along: the backend API's loopback rule reads it.
                let mut r =
                    r.map(|body| http::deadline::DeadlineBody::wrap(body, body_timeout, &shutdown));
                r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                r
            })
            .map_future(move |response| {
                counted.fetch_add(1, Ordering::Relaxed);
                let counted = counted.clone();
                async move {
                    let response = response.await;
                    counted.fetch_sub(1, Ordering::Relaxed);
                    response
                }
            }),
    );
    let builder = edge.http1();
    let connection = builder
        .serve_connection(
            TokioIo::new(EdgeIo::new(stream, read, edge.write_timeout)),
            service,
        )
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        () = edge.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            if in_flight.load(Ordering::Relaxed) > 0 {
                // Finish the request in flight (a pending poll is being answered; one waiting
                // for its body is refused at once), then close.
                connection.await
            } else {
                // Idle, or a head still arriving, which hyper would wait for up to the
                // header timeout: nobody waits for a client at shutdown. (The tail of a
                // response whose handler has finished, a large static file, is cut too.)
                Ok(())
            }
        }
    }
}

/// Answers a connection past the socket ceiling `503 over_capacity` (JSON body, connection
/// closed) once its request head has arrived, or closes it unanswered after
/// [`sockets::REFUSAL_TIMEOUT`].
pub(super) async fn refuse_over_capacity(stream: TcpStream, edge: Edge) {
    let service = hyper::service::service_fn(|_request| async {
        let mut response = http::error::ApiError::new(
            crate::protocol::ErrorCode::OverCapacity,
            "the hub holds as many connections as it may (--max-sockets); try again later",
        )
        .into_response();
        response.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
        Ok::<_, std::convert::Infallible>(response)
    });
    let mut builder = edge.http1();
    builder
        .header_read_timeout(edge.handshake_timeout.min(sockets::REFUSAL_TIMEOUT))
        .keep_alive(false);
    let io = TokioIo::new(EdgeIo::new(stream, Vec::new(), sockets::REFUSAL_TIMEOUT));
    let connection = builder.serve_connection(io, service);
    let _ = tokio::time::timeout(2 * sockets::REFUSAL_TIMEOUT, connection).await;
}
