//! Choosing a target: priority order, round-robin among equals, passive health, cached DNS.
//!
//! A rule has 1 to 8 targets. Each new connection (or UDP flow) tries them lowest priority
//! first; targets of equal priority take turns. A target that refused or timed out is marked
//! unhealthy (per target *and* port, since a port range maps to many target ports) for
//! `unhealthy_for` and is tried only after every healthy one, so failover happens within the
//! same connection attempt and the dead target is skipped afterwards. Host names are resolved
//! with the system resolver and cached for `dns_ttl`; a failed lookup falls back to the last
//! good answer.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::rule::{ProxyProtocol, Target};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Cache entries beyond which expired ones are swept.
const CACHE_SWEEP_AT: usize = 256;

/// Resolved addresses by host name, with when they were resolved.
type Cache = HashMap<String, (Instant, Arc<[IpAddr]>)>;

/// A small DNS cache in front of `tokio::net::lookup_host`, shared by all rules.
#[derive(Debug)]
pub(crate) struct Resolver {
    ttl: Duration,
    cache: Mutex<Cache>,
}

impl Resolver {
    pub(crate) fn new(ttl: Duration) -> Resolver {
        Resolver {
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The addresses of `host` (a name, an IP literal, or a bracketed IPv6 literal).
    pub(crate) async fn resolve(&self, host: &str) -> io::Result<Arc<[IpAddr]>> {
        if let Some(ip) = literal(host) {
            return Ok(Arc::from([ip]));
        }
        let now = Instant::now();
        let stale = match lock(&self.cache).get(host) {
            Some((at, addrs)) if now.saturating_duration_since(*at) < self.ttl => {
                return Ok(Arc::clone(addrs));
            }
            Some((_, addrs)) => Some(Arc::clone(addrs)),
            None => None,
        };
        let looked_up = tokio::net::lookup_host((host, 0))
            .await
            .map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<_>>());
        match looked_up {
            Ok(addrs) if !addrs.is_empty() => {
                let addrs: Arc<[IpAddr]> = Arc::from(addrs);
                let mut cache = lock(&self.cache);
                if cache.len() >= CACHE_SWEEP_AT {
                    let ttl = self.ttl;
                    cache.retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
                }
                cache.insert(host.to_string(), (Instant::now(), Arc::clone(&addrs)));
                Ok(addrs)
            }
            // Serve the last good answer while the resolver is failing.
            failed => match (stale, failed) {
                (Some(addrs), _) => Ok(addrs),
                (None, Err(e)) => Err(e),
                (None, Ok(_)) => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} has no addresses"),
                )),
            },
        }
    }
}

/// `host` as an IP address when it is a literal (brackets allowed around IPv6).
pub(crate) fn literal(host: &str) -> Option<IpAddr> {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse().ok()
}

/// A rule's targets with their health and round-robin state.
#[derive(Debug)]
pub(crate) struct TargetSet {
    /// Sorted by priority (stable, so equal priorities keep their configured order).
    targets: Vec<Target>,
    /// Index ranges of equal priority within `targets`.
    groups: Vec<(usize, usize)>,
    turn: AtomicUsize,
    /// (target index, target port) → unhealthy until.
    unhealthy: Mutex<HashMap<(usize, u16), Instant>>,
    unhealthy_for: Duration,
}

/// One target to try for one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Choice {
    pub(crate) index: usize,
    pub(crate) port: u16,
    pub(crate) proxy: ProxyProtocol,
}

impl TargetSet {
    pub(crate) fn new(targets: &[Target], unhealthy_for: Duration) -> TargetSet {
        let mut targets = targets.to_vec();
        targets.sort_by_key(|t| t.priority);
        let mut groups = Vec::new();
        let mut start = 0;
        for i in 1..=targets.len() {
            if targets.get(i).map(|t| t.priority) != targets.get(start).map(|t| t.priority) {
                groups.push((start, i));
                start = i;
            }
        }
        TargetSet {
            targets,
            groups,
            turn: AtomicUsize::new(0),
            unhealthy: Mutex::new(HashMap::new()),
            unhealthy_for,
        }
    }

    /// The order in which to try the targets for listen port number `offset` of the range:
    /// healthy ones by priority (equal priorities rotated), then unhealthy ones in the same
    /// order as a last resort. Targets whose port would pass 65535 are left out.
    pub(crate) fn order(&self, offset: u16) -> Vec<Choice> {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut healthy = Vec::with_capacity(self.targets.len());
        let mut unhealthy = Vec::new();
        let mut marks = lock(&self.unhealthy);
        for &(start, end) in &self.groups {
            let len = end - start;
            for k in 0..len {
                let index = start + (turn + k) % len;
                let Some(target) = self.targets.get(index) else {
                    continue;
                };
                let Some(port) = target.port.checked_add(offset) else {
                    continue;
                };
                let choice = Choice {
                    index,
                    port,
                    proxy: target.proxy_protocol,
                };
                match marks.get(&(index, port)) {
                    Some(until) if *until > now => unhealthy.push(choice),
                    Some(_) => {
                        marks.remove(&(index, port));
                        healthy.push(choice);
                    }
                    None => healthy.push(choice),
                }
            }
        }
        healthy.extend(unhealthy);
        healthy
    }

    /// The host of a chosen target.
    pub(crate) fn host(&self, choice: &Choice) -> &str {
        self.targets
            .get(choice.index)
            .map_or("", |t| t.host.as_str())
    }

    /// Marks a target port as failed for `unhealthy_for`.
    pub(crate) fn mark_failed(&self, choice: &Choice) {
        let now = Instant::now();
        // An absurdly long `unhealthy_for` saturates instead of overflowing.
        let until = now
            .checked_add(self.unhealthy_for)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        lock(&self.unhealthy).insert((choice.index, choice.port), until);
    }

    /// Clears a failure mark after a success.
    pub(crate) fn mark_ok(&self, choice: &Choice) {
        let mut marks = lock(&self.unhealthy);
        if !marks.is_empty() {
            marks.remove(&(choice.index, choice.port));
        }
    }
}

/// Resolves a choice to socket addresses.
pub(crate) async fn addresses(
    resolver: &Resolver,
    targets: &TargetSet,
    choice: &Choice,
) -> io::Result<Vec<SocketAddr>> {
    let ips = resolver.resolve(targets.host(choice)).await?;
    Ok(ips
        .iter()
        .map(|ip| SocketAddr::new(*ip, choice.port))
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn t(host: &str, port: u16, priority: u8) -> Target {
        Target {
            host: host.into(),
            port,
            priority,
            proxy_protocol: ProxyProtocol::None,
        }
    }

    fn hosts(set: &TargetSet, offset: u16) -> Vec<(String, u16)> {
        set.order(offset)
            .iter()
            .map(|c| (set.host(c).to_string(), c.port))
            .collect()
    }

    #[test]
    fn priorities_order_and_equals_rotate() {
        let set = TargetSet::new(
            &[t("c", 1, 5), t("a1", 1, 0), t("b", 1, 1), t("a2", 1, 0)],
            Duration::from_secs(10),
        );
        let first: Vec<_> = hosts(&set, 0).into_iter().map(|h| h.0).collect();
        let second: Vec<_> = hosts(&set, 0).into_iter().map(|h| h.0).collect();
        assert_eq!(first, ["a1", "a2", "b", "c"]);
        assert_eq!(second, ["a2", "a1", "b", "c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_targets_go_last_until_they_recover() {
        let set = TargetSet::new(&[t("a", 100, 0), t("b", 200, 1)], Duration::from_secs(10));
        let order = set.order(3);
        assert_eq!(order[0].port, 103);
        set.mark_failed(&order[0]);
        assert_eq!(hosts(&set, 3), [("b".into(), 203), ("a".into(), 103)]);
        // Other ports of the same target are unaffected.
        assert_eq!(hosts(&set, 4)[0], ("a".into(), 104));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(hosts(&set, 3)[0], ("a".into(), 103));
    }

    #[test]
    fn ports_past_65535_are_left_out() {
        let set = TargetSet::new(&[t("a", 65535, 0), t("b", 10, 1)], Duration::from_secs(1));
        assert_eq!(hosts(&set, 1), [("b".into(), 11)]);
    }

    #[tokio::test]
    async fn literals_skip_resolution() {
        let r = Resolver::new(Duration::from_secs(30));
        assert_eq!(
            &*r.resolve("[::1]").await.unwrap(),
            &["::1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            &*r.resolve("127.0.0.1").await.unwrap(),
            &["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        let local = r.resolve("localhost").await.unwrap();
        assert!(local.iter().all(IpAddr::is_loopback));
        assert!(lock(&r.cache).contains_key("localhost"));
    }
}
