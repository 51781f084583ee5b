//! Per-address limits: failed logins, concurrent connections, and the
//! bytes per second a stream and an address may send.

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

/// A token bucket of bytes: `rate` per second, up to `burst` at once.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: u64, burst: u64) -> Self {
        let burst = burst.max(rate) as f64;
        Bucket {
            rate: rate as f64,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes `n` bytes at `now`; how long the reader must then pause for
    /// the bucket to be out of debt.
    pub fn take(&mut self, n: usize, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// The byte buckets of addresses with streams open (`ip_rate_*`), shared
/// by those streams and forgotten with the last of them.
#[derive(Default)]
pub struct Rates {
    per_ip: Mutex<HashMap<IpAddr, std::sync::Weak<Mutex<Bucket>>>>,
}

impl Rates {
    fn for_ip(&self, ip: IpAddr, rate: u64, burst: u64) -> Arc<Mutex<Bucket>> {
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = map.get(&ip).and_then(std::sync::Weak::upgrade) {
            return b;
        }
        if map.len() > 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let b = Arc::new(Mutex::new(Bucket::new(rate, burst)));
        map.insert(ip, Arc::downgrade(&b));
        b
    }
}

/// Prosody's mod_limits for one stream: bytes read are charged to the
/// stream's bucket and its address's; past either, the stream is read
/// slower (the client is slowed by TCP, nothing is dropped).
#[derive(Debug)]
pub struct Throttle {
    own: Option<Bucket>,
    ip: Option<Arc<Mutex<Bucket>>>,
}

impl Throttle {
    pub fn new(limits: &crate::config::Limits, rates: &Rates, ip: IpAddr) -> Self {
        Throttle {
            own: (limits.rate_bytes_per_sec > 0)
                .then(|| Bucket::new(limits.rate_bytes_per_sec, limits.rate_burst_bytes)),
            ip: (limits.ip_rate_bytes_per_sec > 0).then(|| {
                rates.for_ip(ip, limits.ip_rate_bytes_per_sec, limits.ip_rate_burst_bytes)
            }),
        }
    }

    /// No limit: for a configured component, which is trusted.
    pub fn none() -> Self {
        Throttle {
            own: None,
            ip: None,
        }
    }

    /// Counts `n` bytes read; how long to wait before reading more.
    pub fn charge(&mut self, n: usize) -> Duration {
        if self.own.is_none() && self.ip.is_none() {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let own = self.own.as_mut().map_or(Duration::ZERO, |b| b.take(n, now));
        let ip = self.ip.as_ref().map_or(Duration::ZERO, |b| {
            b.lock().unwrap_or_else(|e| e.into_inner()).take(n, now)
        });
        own.max(ip)
    }
}

/// A stream's `Throttle` with the moment its reader may read again: the
/// bytes it reads are charged, and past the rate the next read waits
/// (TCP then slows the client; nothing is dropped).
#[derive(Debug)]
pub struct Pace {
    throttle: Throttle,
    resume_at: Option<tokio::time::Instant>,
}

impl Pace {
    pub fn new(throttle: Throttle) -> Self {
        Pace {
            throttle,
            resume_at: None,
        }
    }

    /// Counts `n` bytes read.
    pub fn charge(&mut self, n: usize) {
        let pause = self.throttle.charge(n);
        if !pause.is_zero() {
            self.resume_at = Some(tokio::time::Instant::now() + pause);
        }
    }

    /// Waits until the next read may happen.
    pub async fn wait(&mut self) {
        if let Some(at) = self.resume_at.take() {
            tokio::time::sleep_until(at).await;
        }
    }
}

#[cfg(test)]
mod rate_tests {
    use super::*;

    #[test]
    fn a_bucket_lets_a_burst_through_then_paces_to_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000, 4000);
        assert_eq!(b.take(4000, t0), Duration::ZERO);
        // 500 bytes over: half a second at 1000 B/s
        assert_eq!(b.take(500, t0), Duration::from_millis(500));
        // a second later the debt is paid and 500 more are there
        assert_eq!(b.take(500, t0 + Duration::from_secs(1)), Duration::ZERO);
        // never more than the burst saved up
        assert_eq!(
            b.take(4001, t0 + Duration::from_secs(100)),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn streams_of_one_address_share_its_bucket_while_they_last() {
        let limits = crate::config::Limits {
            rate_bytes_per_sec: 0,
            ip_rate_bytes_per_sec: 1000,
            ip_rate_burst_bytes: 1000,
            ..Default::default()
        };
        let rates = Rates::default();
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut a = Throttle::new(&limits, &rates, ip);
        let mut b = Throttle::new(&limits, &rates, ip);
        assert_eq!(a.charge(1000), Duration::ZERO);
        assert!(b.charge(1000) >= Duration::from_millis(900));
        drop((a, b));
        let mut c = Throttle::new(&limits, &rates, ip);
        assert_eq!(
            c.charge(1000),
            Duration::ZERO,
            "a new bucket once the others are gone"
        );
    }
}
