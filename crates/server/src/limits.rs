//! Per-address limits: failed logins and concurrent connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counts failed logins per address in a sliding minute. Past the limit,
/// every login from that address is refused, right or wrong, so that
/// guessing is slow.
pub struct AuthLimiter {
    per_minute: u32,
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

impl AuthLimiter {
    pub fn new(per_minute: u32) -> Self {
        AuthLimiter {
            per_minute,
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn blocked(&self, ip: IpAddr) -> bool {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(v) = map.get_mut(&ip) else {
            return false;
        };
        let cutoff = Instant::now() - Duration::from_secs(60);
        v.retain(|t| *t > cutoff);
        if v.is_empty() {
            map.remove(&ip);
            return false;
        }
        v.len() as u32 >= self.per_minute
    }

    pub fn failed(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Bound the map: forget the oldest entries if an attacker sprays
        // from many addresses.
        if map.len() > 100_000 {
            map.clear();
        }
        map.entry(ip).or_default().push(Instant::now());
    }
}

/// Counts open connections per address; the guard gives the slot back.
#[derive(Clone, Default)]
pub struct ConnLimiter {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

pub struct ConnGuard {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ConnLimiter {
    pub fn acquire(&self, ip: IpAddr, max: usize) -> Option<ConnGuard> {
        let mut map = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnGuard {
            ip,
            open: self.open.clone(),
        })
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut map = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_limiter_blocks_after_limit() {
        let l = AuthLimiter::new(2);
        let ip = IpAddr::from([127, 0, 0, 1]);
        assert!(!l.blocked(ip));
        l.failed(ip);
        assert!(!l.blocked(ip));
        l.failed(ip);
        assert!(l.blocked(ip));
        assert!(!l.blocked(IpAddr::from([127, 0, 0, 2])));
    }

    #[test]
    fn conn_limiter_releases() {
        let l = ConnLimiter::default();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let a = l.acquire(ip, 2).unwrap();
        let _b = l.acquire(ip, 2).unwrap();
        assert!(l.acquire(ip, 2).is_none());
        drop(a);
        assert!(l.acquire(ip, 2).is_some());
    }
}
