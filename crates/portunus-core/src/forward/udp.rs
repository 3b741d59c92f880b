//! UDP forwarding: a flow per peer, each with its own connected socket towards a target.
//!
//! One task per listening port reads datagrams and looks the sender up in a flow table. A
//! new peer is admitted against `udp_max_flows` and the caps (or its datagram is dropped and
//! counted as refused) and gets a flow task, which picks a target, opens a UDP socket
//! connected to it (so the target's replies come back to that socket and are known to be
//! this peer's) and relays replies to the peer from the listening socket. Datagrams arriving
//! while a flow is being set up are queued (a few) and sent once it is ready. A flow with no
//! traffic either way for `udp_idle_timeout` ends; so does one whose target answers with ICMP
//! port unreachable (the target is marked unhealthy, so the peer's next datagram starts a
//! flow to the next target).
//!
//! Memory stays flat with many ports and flows: datagrams are handled without awaiting, in
//! one 64 KiB buffer per worker thread rather than one per socket or flow. A target asking
//! for PROXY protocol v2 gets the header in front of every datagram; v1 has no UDP form, so
//! such a target gets none. Bandwidth caps drop datagrams over the budget instead of
//! delaying them.
//!
//! Known limits: the destination in a v2 header is the listening socket's own address (the
//! wildcard address when listening on one, as a datagram's real destination is not looked
//! up with `IP_PKTINFO`), and on a wildcard listener of a multi-address host the kernel
//! picks the source address of replies by route.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::target::{Choice, addresses};
use super::{Admitted, Direction, RuleCtx, Stop, proxy};
use crate::rule::ProxyProtocol;

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Room in front of a received datagram for a PROXY v2 header.
const HEADROOM: usize = 64;

/// Datagrams queued per flow while it is being set up.
const PENDING_MAX: usize = 16;

/// Datagrams handled per wake-up before yielding to other tasks.
const BATCH: usize = 64;

/// How long the receive loop pauses after an unexpected error, so it cannot spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

thread_local! {
    /// The datagram buffer of this worker thread, shared by all the listening sockets and
    /// flows it serves (datagrams are handled without awaiting, so one buffer suffices).
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

type FlowTable = Mutex<HashMap<SocketAddr, Arc<Flow>>>;

/// One peer's flow.
#[derive(Debug)]
struct Flow {
    peer: SocketAddr,
    /// The socket towards the target and the PROXY header to put before each datagram.
    upstream: OnceLock<(UdpSocket, Vec<u8>)>,
    /// Datagrams that arrived before `upstream` was ready; `None` once it is.
    pending: Mutex<Option<Vec<Vec<u8>>>>,
    /// Milliseconds (on the rule's clock) of the last datagram either way.
    last_active: AtomicU64,
    /// Signalled when sending to the target was refused (ICMP port unreachable).
    refused: Notify,
}

impl Flow {
    fn touch(&self, ctx: &RuleCtx) {
        self.last_active.store(ctx.now_ms(), Ordering::Relaxed);
    }
}

/// Receives on one listening port (number `offset` of the rule's range) until stopped.
pub(crate) async fn serve(socket: UdpSocket, offset: u16, ctx: Arc<RuleCtx>, mut stop: Stop) {
    let socket = Arc::new(socket);
    let table: Arc<FlowTable> = Arc::new(Mutex::new(HashMap::new()));
    let mut flows = JoinSet::new();
    let setup = Setup {
        socket: &socket,
        table: &table,
        offset,
        ctx: &ctx,
    };
    loop {
        tokio::select! {
            () = stop.stopped() => break,
            Some(_) = flows.join_next(), if !flows.is_empty() => {}
            ready = socket.readable() => {
                let received = match ready {
                    Ok(()) => receive(&setup, &mut flows),
                    Err(e) => Err(e),
                };
                if received.is_err() {
                    // Nothing to do about it but go on, without spinning.
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            }
        }
    }
    flows.shutdown().await;
}

/// Handles the datagrams waiting on the listening socket (a batch at most), through this
/// thread's buffer; new flows' tasks go into `flows`.
fn receive(setup: &Setup<'_>, flows: &mut JoinSet<()>) -> io::Result<()> {
    BUF.with_borrow_mut(|buf| {
        if buf.is_empty() {
            buf.resize(HEADROOM + MAX_DATAGRAM, 0);
        }
        for _ in 0..BATCH {
            let Some(room) = buf.get_mut(HEADROOM..) else {
                return Ok(());
            };
            let (n, peer) = match setup.socket.try_recv_from(room) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            if let Some(task) = datagram(buf, n, peer, setup) {
                flows.spawn(task);
            }
        }
        Ok(())
    })
}

/// What a new flow needs from its port task.
struct Setup<'a> {
    socket: &'a Arc<UdpSocket>,
    table: &'a Arc<FlowTable>,
    offset: u16,
    ctx: &'a Arc<RuleCtx>,
}

/// Handles one datagram of `n` bytes (at `buf[HEADROOM..]`) from `peer`; returns the task
/// of a new flow to spawn.
fn datagram(
    buf: &mut [u8],
    n: usize,
    peer: SocketAddr,
    setup: &Setup<'_>,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    let ctx = setup.ctx;
    let existing = lock(setup.table).get(&peer).cloned();
    let Some(flow) = existing else {
        let admitted = ctx.admit_flow()?;
        let payload = buf.get(HEADROOM..HEADROOM + n)?.to_vec();
        if !ctx.limits.police(n) {
            return None;
        }
        let flow = Arc::new(Flow {
            peer,
            upstream: OnceLock::new(),
            pending: Mutex::new(Some(vec![payload])),
            last_active: AtomicU64::new(ctx.now_ms()),
            refused: Notify::new(),
        });
        lock(setup.table).insert(peer, Arc::clone(&flow));
        let guard = FlowGuard {
            table: Arc::clone(setup.table),
            flow: Arc::clone(&flow),
            _admitted: admitted,
        };
        return Some(run_flow(
            guard,
            Arc::clone(setup.socket),
            setup.offset,
            Arc::clone(ctx),
        ));
    };
    if !ctx.limits.police(n) {
        return None;
    }
    flow.touch(ctx);
    let Some((upstream, header)) = flow.upstream.get() else {
        // Still being set up: queue a few.
        let mut pending = lock(&flow.pending);
        if let Some(queue) = pending.as_mut() {
            if queue.len() < PENDING_MAX {
                queue.push(buf.get(HEADROOM..HEADROOM + n)?.to_vec());
            }
            return None;
        }
        drop(pending);
        // Set up in the meantime.
        let (upstream, header) = flow.upstream.get()?;
        send_up(&flow, upstream, header, buf, n, ctx);
        return None;
    };
    send_up(&flow, upstream, header, buf, n, ctx);
    None
}

/// Sends the datagram at `buf[HEADROOM..HEADROOM + n]` to the target, header first.
fn send_up(
    flow: &Flow,
    upstream: &UdpSocket,
    header: &[u8],
    buf: &mut [u8],
    n: usize,
    ctx: &RuleCtx,
) {
    let start = HEADROOM.saturating_sub(header.len());
    if let Some(room) = buf.get_mut(start..HEADROOM) {
        room.copy_from_slice(header);
    }
    let Some(datagram) = buf.get(start..HEADROOM + n) else {
        return;
    };
    match upstream.try_send(datagram) {
        Ok(_) => ctx.count(Direction::In, n),
        // An earlier datagram drew an ICMP port unreachable; the send reports (and clears)
        // it, so tell the flow task, which ends the flow.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => flow.refused.notify_one(),
        // A full send buffer drops the datagram, as a congested network would.
        Err(_) => {}
    }
}

/// Removes a flow from its table and releases its admission when the flow task ends.
struct FlowGuard {
    table: Arc<FlowTable>,
    flow: Arc<Flow>,
    _admitted: Admitted,
}

impl Drop for FlowGuard {
    fn drop(&mut self) {
        let mut table = lock(&self.table);
        if table
            .get(&self.flow.peer)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flow))
        {
            table.remove(&self.flow.peer);
        }
    }
}

/// Opens a socket connected to the first target that takes one.
async fn open_upstream(
    ctx: &RuleCtx,
    offset: u16,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Option<(UdpSocket, Vec<u8>, Choice)> {
    for choice in ctx.targets.order(offset) {
        let Ok(addrs) = addresses(&ctx.resolver, &ctx.targets, &choice).await else {
            ctx.targets.mark_failed(&choice);
            continue;
        };
        for addr in addrs {
            let any = match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            let Ok(socket) = UdpSocket::bind(SocketAddr::new(any, 0)).await else {
                continue;
            };
            if socket.connect(addr).await.is_ok() {
                let header = match (choice.proxy, local) {
                    (ProxyProtocol::V2, Some(local)) => {
                        proxy::v2(peer, local, proxy::Transport::Datagram)
                    }
                    // v1 has no UDP form.
                    _ => Vec::new(),
                };
                return Some((socket, header, choice));
            }
        }
        ctx.targets.mark_failed(&choice);
    }
    None
}

async fn run_flow(guard: FlowGuard, listener: Arc<UdpSocket>, offset: u16, ctx: Arc<RuleCtx>) {
    let flow = &guard.flow;
    let local = listener.local_addr().ok();
    let Some((socket, header, choice)) = open_upstream(&ctx, offset, flow.peer, local).await else {
        return;
    };
    let upstream = flow.upstream.get_or_init(|| (socket, header));
    let queued = lock(&flow.pending).take().unwrap_or_default();
    let (socket, header) = upstream;
    for payload in queued {
        let mut datagram = Vec::with_capacity(header.len() + payload.len());
        datagram.extend_from_slice(header);
        datagram.extend_from_slice(&payload);
        match socket.send(&datagram).await {
            Ok(_) => ctx.count(Direction::In, payload.len()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                ctx.targets.mark_failed(&choice);
                return;
            }
            Err(_) => {}
        }
    }

    let idle = ctx.config.udp_idle_timeout;
    loop {
        let last = flow.last_active.load(Ordering::Relaxed);
        let quiet_for = Duration::from_millis(ctx.now_ms().saturating_sub(last));
        if quiet_for >= idle {
            return;
        }
        tokio::select! {
            ready = socket.ready(Interest::READABLE | Interest::ERROR) => {
                let Ok(ready) = ready else { return };
                let failed = if ready.is_error() {
                    // An ICMP error with no datagram behind it only shows as a socket error.
                    Err(socket
                        .take_error()
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| io::ErrorKind::Other.into()))
                } else {
                    relay_replies(socket, &listener, flow, &ctx)
                };
                if let Err(e) = failed {
                    if e.kind() == io::ErrorKind::ConnectionRefused {
                        // ICMP port unreachable: the peer's next datagram starts a flow to
                        // the next target.
                        ctx.targets.mark_failed(&choice);
                    }
                    return;
                }
            }
            () = flow.refused.notified() => {
                ctx.targets.mark_failed(&choice);
                return;
            }
            // The top of the loop decides whether the flow was idle all along.
            () = tokio::time::sleep(idle - quiet_for) => {}
        }
    }
}

/// Relays waiting replies from the target to the peer, through this thread's buffer.
fn relay_replies(
    upstream: &UdpSocket,
    listener: &UdpSocket,
    flow: &Flow,
    ctx: &RuleCtx,
) -> io::Result<()> {
    BUF.with_borrow_mut(|buf| {
        if buf.is_empty() {
            buf.resize(HEADROOM + MAX_DATAGRAM, 0);
        }
        for _ in 0..BATCH {
            let n = match upstream.try_recv(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            flow.touch(ctx);
            if !ctx.limits.police(n) {
                continue;
            }
            let Some(reply) = buf.get(..n) else {
                continue;
            };
            if listener.try_send_to(reply, flow.peer).is_ok() {
                ctx.count(Direction::Out, n);
            }
        }
        Ok(())
    })
}
