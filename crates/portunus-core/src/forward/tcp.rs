//! TCP forwarding: one task per listening port accepts, admits and spawns connections.
//!
//! A connection is admitted against the caps (or closed at once and counted as refused),
//! then the targets are tried in [`TargetSet::order`](super::target::TargetSet::order),
//! each within `connect_timeout`; a target that fails is marked unhealthy and the next one
//! is tried in the same attempt. The target gets a PROXY protocol header if it asks for
//! one, then [`relay`] moves the bytes. Connections live in the listener task's `JoinSet`,
//! so stopping the rule closes them all.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::relay::{relay, write_all};
use super::target::{Choice, addresses};
use super::{RuleCtx, Stop, proxy};
use crate::rule::ProxyProtocol;

/// How long to pause accepting after an error such as running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Idle time before the first keepalive probe.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Time between keepalive probes.
#[cfg(target_os = "linux")]
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the connection is dropped.
#[cfg(target_os = "linux")]
const KEEPALIVE_RETRIES: u32 = 6;

/// Accepts on one listening port (number `offset` of the rule's range) until stopped.
pub(crate) async fn serve(listener: TcpListener, offset: u16, ctx: Arc<RuleCtx>, mut stop: Stop) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.stopped() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Refused: the stream is dropped, which closes it.
                    let Some(admitted) = ctx.admit_connection() else { continue };
                    let ctx = Arc::clone(&ctx);
                    conns.spawn(async move {
                        let _admitted = admitted;
                        connection(stream, peer, offset, &ctx).await;
                    });
                }
                Err(e) if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) => {}
                Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            },
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// No Nagle delay (the peer's own segments pass on as they come) and keepalive probes, so
/// a peer or target that vanished without a word releases its connection slot eventually.
fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(KEEPALIVE_IDLE);
    #[cfg(target_os = "linux")]
    let keepalive = keepalive
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
}

async fn connection(stream: TcpStream, peer: SocketAddr, offset: u16, ctx: &RuleCtx) {
    tune(&stream);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let Some((upstream, choice)) = connect(ctx, offset).await else {
        return;
    };
    tune(&upstream);
    let header = match choice.proxy {
        ProxyProtocol::None => None,
        ProxyProtocol::V1 => Some(proxy::v1(peer, local)),
        ProxyProtocol::V2 => Some(proxy::v2(peer, local, proxy::Transport::Stream)),
    };
    if let Some(header) = header
        && write_all(&upstream, &header).await.is_err()
    {
        return;
    }
    // Errors (resets and the like) just end the connection.
    let _ = relay(&stream, &upstream, ctx).await;
}

/// Connects to the first target that answers, marking the ones that do not.
async fn connect(ctx: &RuleCtx, offset: u16) -> Option<(TcpStream, Choice)> {
    for choice in ctx.targets.order(offset) {
        let attempt = tokio::time::timeout(ctx.config.connect_timeout, async {
            let mut last = io::Error::from(io::ErrorKind::NotFound);
            for addr in addresses(&ctx.resolver, &ctx.targets, &choice).await? {
                match TcpStream::connect(addr).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
        .await;
        match attempt {
            Ok(Ok(stream)) => {
                ctx.targets.mark_ok(&choice);
                return Some((stream, choice));
            }
            _ => ctx.targets.mark_failed(&choice),
        }
    }
    None
}
