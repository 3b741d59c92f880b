//! The data plane: listens on a rule's ports and forwards TCP and UDP traffic to its targets.
//!
//! `portunus-client` (and the standalone mode) hand a [`Forwarder`] the complete set of rules
//! to run with [`Forwarder::apply`]; the forwarder reconciles to exactly that set without
//! disturbing what did not change, which is what lets a client keep forwarding while the
//! control plane is away ("fail-static") and reconnect without listener churn. A rule that is
//! removed closes its listeners and its established connections, which is how quota
//! cut-offs and revocations take effect. Traffic is counted per rule ([`Forwarder::stats`])
//! and per owner ([`Forwarder::take_usage`], for quota accounting).
//!
//! Inside: `listen` opens the sockets, `tcp` and `udp` run one task per listening
//! socket, `relay` moves TCP bytes (zero-copy `splice(2)` on Linux when no bandwidth cap
//! applies), `target` picks targets, `limit` enforces caps and `proxy` writes PROXY
//! protocol headers.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::rule::{Protocol, check_targets};
use crate::wire::{RuleSpec, RuleState, RuleStatus};

mod limit;
mod listen;
mod proxy;
mod relay;
mod target;
mod tcp;
mod udp;

#[cfg(test)]
mod tests;

use limit::{Admission, Limiter, Limits};
use target::{Resolver, TargetSet};

/// How long a stopping rule's tasks may take to wind down before they are aborted.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Tunables of a [`Forwarder`]; [`ForwarderConfig::default`] suits most uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwarderConfig {
    /// How long connecting to one target may take before the next is tried (default 5 s).
    pub connect_timeout: Duration,
    /// A UDP flow with no traffic either way for this long is closed (default 60 s).
    pub udp_idle_timeout: Duration,
    /// The most UDP flows (distinct peers) one rule tracks at once (default 4,096).
    pub udp_max_flows: usize,
    /// How long resolved target names are cached (default 30 s).
    pub dns_ttl: Duration,
    /// How long a target that failed is tried only after the healthy ones (default 10 s).
    pub unhealthy_for: Duration,
}

impl Default for ForwarderConfig {
    fn default() -> ForwarderConfig {
        ForwarderConfig {
            connect_timeout: Duration::from_secs(5),
            udp_idle_timeout: Duration::from_secs(60),
            udp_max_flows: 4096,
            dns_ttl: Duration::from_secs(30),
            unhealthy_for: Duration::from_secs(10),
        }
    }
}

/// Bytes one owner's rules forwarded since the last [`Forwarder::take_usage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerUsage {
    /// The rules' owner.
    pub owner_id: String,
    /// From peers to targets.
    pub bytes_in: u64,
    /// From targets back to peers.
    pub bytes_out: u64,
}

/// Live figures of one running rule (since it was started).
#[derive(Debug, Clone, Serialize)]
pub struct RuleStats {
    /// The rule.
    pub rule_id: String,
    /// Its owner.
    pub owner_id: String,
    /// TCP connections open now.
    pub active_connections: u64,
    /// UDP flows (peers) tracked now.
    pub udp_flows: u64,
    /// TCP connections and UDP flows admitted so far.
    pub total_connections: u64,
    /// Bytes from peers to targets (UDP: payload bytes, without PROXY headers).
    pub bytes_in: u64,
    /// Bytes from targets back to peers.
    pub bytes_out: u64,
    /// Connections and flows refused by a cap (`max_connections`, `new_conn_per_sec`, the
    /// UDP flow limit).
    pub refused: u64,
    /// TCP connections that moved bytes with zero-copy `splice(2)` (the rest used a
    /// userspace copy: a bandwidth cap applied, or splice is unavailable).
    pub spliced_connections: u64,
}

/// Runs forwarding rules. Cheap to clone (all clones drive the same forwarder); create it
/// inside a tokio runtime. Dropping the last clone stops everything, but
/// [`Forwarder::shutdown`] also waits until it has stopped.
#[derive(Clone, Debug)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

struct Inner {
    config: ForwarderConfig,
    resolver: Arc<Resolver>,
    /// Serialises `apply` and `shutdown` (held across awaits, unlike `state`).
    reconcile: tokio::sync::Mutex<()>,
    state: Mutex<State>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("Forwarder")
            .field("config", &self.config)
            .field("rules", &state.rules.len())
            .field("owners", &state.owners.len())
            .field("closed", &state.closed)
            .finish()
    }
}

#[derive(Default)]
struct State {
    rules: HashMap<String, Running>,
    owners: HashMap<String, Arc<Owner>>,
    closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What is shared by all rules of one owner.
#[derive(Debug)]
pub(crate) struct Owner {
    limiter: Arc<Limiter>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// Per-rule counters behind [`RuleStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    active: AtomicU64,
    flows: AtomicU64,
    total: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    refused: AtomicU64,
    spliced: AtomicU64,
}

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Peer to target.
    In,
    /// Target to peer.
    Out,
}

/// Everything the tasks of one running rule share.
#[derive(Debug)]
pub(crate) struct RuleCtx {
    counters: Counters,
    owner: Arc<Owner>,
    limits: Limits,
    targets: TargetSet,
    resolver: Arc<Resolver>,
    config: ForwarderConfig,
    /// Time zero for the millisecond clocks of UDP flows.
    epoch: Instant,
}

impl RuleCtx {
    /// Counts forwarded bytes for the rule and its owner.
    fn count(&self, dir: Direction, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        let (rule, owner) = match dir {
            Direction::In => (&self.counters.bytes_in, &self.owner.bytes_in),
            Direction::Out => (&self.counters.bytes_out, &self.owner.bytes_out),
        };
        rule.fetch_add(n, Ordering::Relaxed);
        owner.fetch_add(n, Ordering::Relaxed);
    }

    fn refuse(&self) {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Admits a new TCP connection, or counts a refusal.
    fn admit_connection(self: &Arc<Self>) -> Option<Admitted> {
        let Some(admission) = self.limits.admit() else {
            self.refuse();
            return None;
        };
        self.counters.active.fetch_add(1, Ordering::Relaxed);
        self.counters.total.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            _admission: admission,
            ctx: Arc::clone(self),
            flow: false,
        })
    }

    /// Admits a new UDP flow (within `udp_max_flows` and the caps), or counts a refusal.
    fn admit_flow(self: &Arc<Self>) -> Option<Admitted> {
        let max = u64::try_from(self.config.udp_max_flows).unwrap_or(u64::MAX);
        let room = self
            .counters
            .flows
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !room {
            self.refuse();
            return None;
        }
        let Some(admission) = self.limits.admit() else {
            self.counters.flows.fetch_sub(1, Ordering::AcqRel);
            self.refuse();
            return None;
        };
        self.counters.total.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            _admission: admission,
            ctx: Arc::clone(self),
            flow: true,
        })
    }

    /// Milliseconds since the rule started (the clock of UDP idle tracking).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A connection or flow counted in the rule's gauges and its limiters; released on drop.
#[derive(Debug)]
pub(crate) struct Admitted {
    _admission: Admission,
    ctx: Arc<RuleCtx>,
    flow: bool,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let gauge = if self.flow {
            &self.ctx.counters.flows
        } else {
            &self.ctx.counters.active
        };
        gauge.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Tells a rule's tasks to stop; also fires when the rule's handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Resolves once the rule is stopping.
    pub(crate) async fn stopped(&mut self) {
        // An error means the sender is gone, which also means stop.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// A rule that is running: its spec, shared state and tasks (one per listening socket).
struct Running {
    spec: RuleSpec,
    ctx: Arc<RuleCtx>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    /// Stops the listeners and every connection and flow, and waits until they are gone.
    async fn stop(mut self) {
        self.stop.send_replace(true);
        let drained = tokio::time::timeout(STOP_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.shutdown().await;
        }
    }

    fn stats(&self) -> RuleStats {
        let c = &self.ctx.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RuleStats {
            rule_id: self.spec.id.clone(),
            owner_id: self.spec.owner_id.clone(),
            active_connections: get(&c.active),
            udp_flows: get(&c.flows),
            total_connections: get(&c.total),
            bytes_in: get(&c.bytes_in),
            bytes_out: get(&c.bytes_out),
            refused: get(&c.refused),
            spliced_connections: get(&c.spliced),
        }
    }
}

/// Whether two specs need the same sockets and targets, i.e. differ at most in their caps
/// (which are retuned in place, keeping listeners and connections).
fn same_plumbing(running: &RuleSpec, wanted: &RuleSpec) -> bool {
    let mut comparable = running.clone();
    comparable.caps = wanted.caps;
    comparable.owner_caps = wanted.owner_caps;
    comparable == *wanted
}

fn failed(rule_id: &str, reason: impl Into<String>) -> RuleStatus {
    RuleStatus {
        rule_id: rule_id.to_string(),
        state: RuleState::Failed,
        reason: Some(reason.into()),
    }
}

fn active(rule_id: &str) -> RuleStatus {
    RuleStatus {
        rule_id: rule_id.to_string(),
        state: RuleState::Active,
        reason: None,
    }
}

impl Forwarder {
    /// A forwarder running no rules.
    pub fn new(config: ForwarderConfig) -> Forwarder {
        Forwarder {
            inner: Arc::new(Inner {
                config,
                resolver: Arc::new(Resolver::new(config.dns_ttl)),
                reconcile: tokio::sync::Mutex::new(()),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Reconciles to exactly `rules` and reports one status per entry, in order.
    ///
    /// A rule already running with the same spec is left alone (listeners, connections and
    /// flows untouched); one whose spec differs only in `caps`/`owner_caps` keeps running
    /// with the new caps in force at once. A rule with other changes is stopped and started
    /// again; a rule that is no longer listed is stopped, closing its listeners and its
    /// established connections and flows. A new rule binds every port of its range or none
    /// (a failure leaves no listener open) and fails on its own, with a reason. A second
    /// entry with the id of an earlier one fails as a duplicate.
    pub async fn apply(&self, rules: &[RuleSpec]) -> Vec<RuleStatus> {
        let _serial = self.inner.reconcile.lock().await;
        let mut desired: HashMap<&str, &RuleSpec> = HashMap::with_capacity(rules.len());
        for spec in rules {
            desired.entry(spec.id.as_str()).or_insert(spec);
        }

        let stopping: Vec<Running> = {
            let mut state = lock(&self.inner.state);
            if state.closed {
                return rules
                    .iter()
                    .map(|r| failed(&r.id, "the forwarder is shut down"))
                    .collect();
            }
            let outdated: Vec<String> = state
                .rules
                .iter()
                .filter(|(id, running)| {
                    !desired
                        .get(id.as_str())
                        .is_some_and(|spec| same_plumbing(&running.spec, spec))
                })
                .map(|(id, _)| id.clone())
                .collect();
            outdated
                .iter()
                .filter_map(|id| state.rules.remove(id))
                .collect()
        };
        // Stop before starting, so a changed rule can bind its own ports again.
        let mut stops = JoinSet::new();
        for running in stopping {
            stops.spawn(running.stop());
        }
        while stops.join_next().await.is_some() {}

        let mut state = lock(&self.inner.state);
        let state = &mut *state;
        // Every rule of an owner should carry the same owner caps; if not, the last wins.
        let firsts = rules.iter().filter(|spec| {
            desired
                .get(spec.id.as_str())
                .is_some_and(|first| std::ptr::eq(*first, *spec))
        });
        for spec in firsts {
            owner_of(&mut state.owners, &spec.owner_id)
                .limiter
                .set_caps(spec.owner_caps);
        }
        let mut statuses = Vec::with_capacity(rules.len());
        for spec in rules {
            if !desired
                .get(spec.id.as_str())
                .is_some_and(|first| std::ptr::eq(*first, spec))
            {
                statuses.push(failed(&spec.id, "duplicate rule id in this rule set"));
                continue;
            }
            if let Some(running) = state.rules.get_mut(&spec.id) {
                if running.spec != *spec {
                    running.ctx.limits.rule.set_caps(spec.caps);
                    running.spec = spec.clone();
                }
                statuses.push(active(&spec.id));
                continue;
            }
            let owner = owner_of(&mut state.owners, &spec.owner_id);
            match start(spec, owner, &self.inner) {
                Ok(running) => {
                    state.rules.insert(spec.id.clone(), running);
                    statuses.push(active(&spec.id));
                }
                Err(reason) => statuses.push(failed(&spec.id, reason)),
            }
        }
        statuses
    }

    /// Bytes forwarded per owner since the last call (owners with no traffic are left out).
    /// Traffic of rules removed in the meantime is included.
    pub fn take_usage(&self) -> Vec<OwnerUsage> {
        // While `apply` or `shutdown` runs, rules being stopped may still count bytes to
        // owners that no running rule references; keep those owners until the next call.
        let reconciling = self.inner.reconcile.try_lock().is_err();
        let mut state = lock(&self.inner.state);
        let state = &mut *state;
        let in_use: HashSet<&str> = state
            .rules
            .values()
            .map(|r| r.spec.owner_id.as_str())
            .collect();
        let mut usage = Vec::new();
        state.owners.retain(|owner_id, owner| {
            let bytes_in = owner.bytes_in.swap(0, Ordering::Relaxed);
            let bytes_out = owner.bytes_out.swap(0, Ordering::Relaxed);
            if bytes_in != 0 || bytes_out != 0 {
                usage.push(OwnerUsage {
                    owner_id: owner_id.clone(),
                    bytes_in,
                    bytes_out,
                });
            }
            // An owner without rules has nothing left to count.
            reconciling || in_use.contains(owner_id.as_str())
        });
        usage.sort_by(|a, b| a.owner_id.cmp(&b.owner_id));
        usage
    }

    /// Live figures of every running rule, by rule id.
    pub fn stats(&self) -> Vec<RuleStats> {
        let state = lock(&self.inner.state);
        let mut stats: Vec<RuleStats> = state.rules.values().map(Running::stats).collect();
        stats.sort_by(|a, b| a.rule_id.cmp(&b.rule_id));
        stats
    }

    /// Stops every rule and waits until all listeners, connections and flows are closed.
    /// Later [`Forwarder::apply`] calls report every rule as failed; usage not yet taken can
    /// still be taken.
    pub async fn shutdown(&self) {
        let _serial = self.inner.reconcile.lock().await;
        let stopping: Vec<Running> = {
            let mut state = lock(&self.inner.state);
            state.closed = true;
            state.rules.drain().map(|(_, running)| running).collect()
        };
        let mut stops = JoinSet::new();
        for running in stopping {
            stops.spawn(running.stop());
        }
        while stops.join_next().await.is_some() {}
    }
}

fn owner_of(owners: &mut HashMap<String, Arc<Owner>>, owner_id: &str) -> Arc<Owner> {
    Arc::clone(owners.entry(owner_id.to_string()).or_insert_with(|| {
        Arc::new(Owner {
            limiter: Arc::new(Limiter::new(crate::wire::Caps::default())),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        })
    }))
}

/// Checks a spec, binds all its sockets (all or none) and starts its tasks.
fn start(spec: &RuleSpec, owner: Arc<Owner>, inner: &Inner) -> Result<Running, String> {
    check_targets(&spec.targets).map_err(|e| e.to_string())?;
    let ip = listen::parse_listen_addr(&spec.listen_addr)?;
    let span = spec.listen.end() - spec.listen.start();
    if let Some(t) = spec
        .targets
        .iter()
        .find(|t| t.port.checked_add(span).is_none())
    {
        return Err(format!(
            "target {}:{} cannot take the {} ports of {}: its ports would pass 65535",
            t.host,
            t.port,
            spec.listen.len(),
            spec.listen
        ));
    }

    let (want_tcp, want_udp) = match spec.protocol {
        Protocol::Tcp => (true, false),
        Protocol::Udp => (false, true),
        Protocol::Both => (true, true),
    };
    let mut tcp_listeners = Vec::new();
    let mut udp_sockets = Vec::new();
    for offset in 0..=span {
        let addr = SocketAddr::new(ip, spec.listen.start() + offset);
        // On error the sockets bound so far are dropped (closed) with the vectors.
        if want_tcp {
            tcp_listeners.push((offset, listen::tcp(addr)?));
        }
        if want_udp {
            udp_sockets.push((offset, listen::udp(addr)?));
        }
    }

    let limits = Limits {
        rule: Arc::new(Limiter::new(spec.caps)),
        owner: Arc::clone(&owner.limiter),
    };
    let ctx = Arc::new(RuleCtx {
        counters: Counters::default(),
        owner,
        limits,
        targets: TargetSet::new(&spec.targets, inner.config.unhealthy_for),
        resolver: Arc::clone(&inner.resolver),
        config: inner.config,
        epoch: Instant::now(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for (offset, listener) in tcp_listeners {
        tasks.spawn(tcp::serve(
            listener,
            offset,
            Arc::clone(&ctx),
            Stop(stop_rx.clone()),
        ));
    }
    for (offset, socket) in udp_sockets {
        tasks.spawn(udp::serve(
            socket,
            offset,
            Arc::clone(&ctx),
            Stop(stop_rx.clone()),
        ));
    }
    Ok(Running {
        spec: spec.clone(),
        ctx,
        stop: stop_tx,
        tasks,
    })
}
