//! The accept loop of `serve`: every connection is served as HTTP/1.1 by hyper directly, the
//! protocol of OpenAI clients, browsers and the CLI. `axum::serve` first reads each connection's
//! opening bytes to tell HTTP/2 from HTTP/1 (an extra read per connection, and a wrapper around
//! every later one) and rebuilds the router's tables for each connection; under a burst of
//! streamed requests that was a good part of what the proxy added to the time to first token.
//! Here the router is shared as it is and each connection is read as HTTP/1.1 from its first
//! byte. A client that opens a connection and does not finish its request head within
//! [`HEADER_TIMEOUT`] is disconnected, so idle sockets cannot pile up.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// How long a client may take to send a request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `stop` resolves, then waits for the requests in flight
/// to finish (a streamed answer ends when its client or the upstream does). A client gets
/// `header_timeout` to send each request's head.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: impl Future<Output = ()>,
    header_timeout: Duration,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connections = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if dropped_by_peer(&e) => continue,
            Err(e) => {
                // Out of file descriptors, most likely: some will be closed soon.
                tracing::error!(source = "server", "cannot accept connections: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Streamed tokens are small writes; without TCP_NODELAY each waits for the client's
        // delayed acknowledgement of the previous one (about 40 ms).
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let watched = connections.watch(connection);
        tokio::spawn(async move {
            // A connection that fails (reset, a malformed head) concerns only its client.
            let _ = watched.await;
        });
    }
    drop(listener);
    connections.shutdown().await;
}

/// An accept error that only means one client gave up before it was accepted.
fn dropped_by_peer(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn started(
        timeout: Duration,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            router,
            async move {
                let _ = stopped.await;
            },
            timeout,
        ));
        (addr, stop, server)
    }

    async fn read_all(socket: &mut TcpStream) -> String {
        let mut text = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut text)).await;
        String::from_utf8_lossy(&text).into_owned()
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_head_is_disconnected() {
        let (addr, _stop, _server) = started(Duration::from_millis(200)).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let began = std::time::Instant::now();
        let answer = read_all(&mut idle).await;
        assert!(
            began.elapsed() < Duration::from_secs(4),
            "closed after the head timeout"
        );
        assert!(!answer.contains("done"), "{answer}");
        // A whole request on another connection is answered, over HTTP/1.1 from its first byte.
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_all(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
    }

    #[tokio::test]
    async fn stopping_lets_the_request_in_flight_finish_and_accepts_no_more() {
        let (addr, stop, server) = started(HEADER_TIMEOUT).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(()).unwrap();
        let mut answer = vec![0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returns once the request is answered")
            .unwrap();
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the port is closed"
        );
    }
}
