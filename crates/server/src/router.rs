//! Who is online, and how to reach them. Delivery to an online session is
//! a map lookup and a channel send: it never waits on the database.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio::sync::Notify;

/// A session's queue. flume's channel allocates its buffer as items
/// arrive; tokio's allocates a block of 32 slots up front, which was the
/// largest single allocation of an idle session (1.8 KB of ~9).
///
/// It has no bound of its own: a queue that refused a stanza would lose it
/// (acknowledged to its sender, delivered to no one). What bounds it is
/// `Flow`: senders wait while it is long, and a session that stops taking
/// bytes is closed, what it had queued going to offline storage.
pub type OutTx = flume::Sender<Outbound>;
pub type OutRx = flume::Receiver<Outbound>;

pub fn queue() -> (OutTx, OutRx) {
    flume::unbounded()
}

/// How full a session's queue may get (`[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Queued bytes beyond which senders wait (`send_queue_bytes`).
    pub wait_bytes: usize,
    /// Queued stanzas beyond which the session is closed (`session_queue`).
    pub max_items: usize,
    /// How long a write may wait for the client (`send_stall_secs`), and
    /// a sender for the queue to drain.
    pub stall: std::time::Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            wait_bytes: 1 << 20,
            max_items: 4096,
            stall: std::time::Duration::from_secs(30),
        }
    }
}

/// Back-pressure between one session's queue and whoever fills it: the
/// bytes queued and not yet taken by its writer, a wake-up for senders
/// waiting for it to drain, and the order to close it when it overflows.
#[derive(Debug, Default)]
pub struct Flow {
    pub limits: QueueLimits,
    queued: AtomicUsize,
    drained: Notify,
    /// The session overflowed (or ended): nobody should wait on it.
    dead: AtomicBool,
    /// Tells the writer to close the stream at once (overflow).
    pub kill: Notify,
}

impl Flow {
    pub fn new(limits: QueueLimits) -> Self {
        Flow {
            limits,
            ..Default::default()
        }
    }

    fn add(&self, n: usize) -> usize {
        self.queued.fetch_add(n, Ordering::Relaxed) + n
    }

    /// The writer took `n` bytes off the queue.
    pub fn taken(&self, n: usize) {
        let before = self.queued.fetch_sub(n, Ordering::Relaxed);
        let after = before.saturating_sub(n);
        if before > self.limits.wait_bytes && after <= self.limits.wait_bytes {
            self.drained.notify_waiters();
        }
    }

    pub fn congested(&self) -> bool {
        !self.dead.load(Ordering::Relaxed)
            && self.queued.load(Ordering::Relaxed) > self.limits.wait_bytes
    }

    /// Nobody need wait for this queue any more (its session is ending).
    pub fn end(&self) {
        self.dead.store(true, Ordering::Relaxed);
        self.drained.notify_waiters();
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// Waits until the queue is short again or its session ends, at most
    /// until `deadline`; false if the deadline came first.
    pub async fn drained(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let wake = self.drained.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            if !self.congested() {
                return true;
            }
            if tokio::time::timeout_at(deadline, wake).await.is_err() {
                return !self.congested();
            }
        }
    }
}

tokio::task_local! {
    /// The queues a session's current stanza filled past their limit: its
    /// read loop waits for them before it reads the next stanza.
    pub static PRESSURE: std::cell::RefCell<Vec<Arc<Flow>>>;
}

impl Outbound {
    /// Bytes this item holds, as counted against its queue.
    pub fn weight(&self) -> usize {
        match self {
            Outbound::Stanza(b)
            | Outbound::ToSelf(b)
            | Outbound::Deferrable(b)
            | Outbound::Nonza(b) => b.len(),
            // Not counted: queued past `push`, by the session itself.
            Outbound::SmEnabled(_) | Outbound::Flush | Outbound::Close(_) => 0,
        }
    }
}

/// What a session's writer receives. Kept to one `Bytes` and a tag: the
/// channel allocates its slots in blocks of 32 up front, so every byte
/// here costs every idle session 32 bytes (a rare, larger variant is boxed).
#[derive(Debug)]
pub enum Outbound {
    /// A serialised stanza, shared by every recipient.
    Stanza(Bytes),
    /// A stanza serialised once for many recipients, without `to`; the
    /// session's writer splices ` to='<its full JID>'` in after the element
    /// name, so no per-recipient copy or allocation is made here.
    ToSelf(Bytes),
    /// Presence or a chat state: held while the client says it is inactive
    /// (XEP-0352), and sent with the next stanza that matters.
    Deferrable(Bytes),
    /// The client became active: send what was held.
    Flush,
    /// A stream-level element (XEP-0198's `<a/>`, `<failed/>`): written
    /// at once, never counted or kept as a stanza.
    Nonza(Bytes),
    /// XEP-0198 `<enabled/>`: written, and from the next stanza on the
    /// writer keeps what it sends until acked, at most this many.
    SmEnabled(Box<(Bytes, usize)>),
    /// Close the stream, with a stream error condition if any.
    Close(Option<&'static str>),
}

const _: () = assert!(std::mem::size_of::<Outbound>() <= 40);

/// A stanza as a session's writer sent it, kept until the client
/// acknowledges it (XEP-0198): the shared bytes, never a copy.
#[derive(Debug, Clone)]
pub enum Queued {
    Raw(Bytes),
    /// Written with the session's address spliced in, as `Outbound::ToSelf`.
    ToSelf(Bytes),
}

impl Queued {
    /// The stanza as the client got it, `to` spliced into an addressed one.
    pub fn to_vec(&self, full: &str) -> Vec<u8> {
        match self {
            Queued::Raw(b) => b.to_vec(),
            Queued::ToSelf(b) => {
                let at = xmpp_core::stanza::name_end(b);
                let to = format!(" to='{}'", xmpp_core::stanza::escape(full));
                [&b[..at], to.as_bytes(), &b[at..]].concat()
            }
        }
    }
}

/// Presence facts the router needs for RFC 6121 delivery rules.
#[derive(Debug, Default)]
pub struct PresenceState {
    pub available: bool,
    pub priority: i8,
    /// The last broadcast presence, stamped, ready to answer probes.
    pub last: Option<Bytes>,
    /// The client asked for the roster, so it gets roster pushes.
    pub interested: bool,
    /// Entities that got directed presence and must hear unavailable.
    pub directed: Vec<String>,
    /// XEP-0280: this resource wants copies of its account's chats.
    pub carbons: bool,
    /// XEP-0115: the `node#ver` the client last announced while available.
    pub caps_key: Option<String>,
    /// What that client can do, once known.
    pub caps: Option<Arc<crate::modules::caps::ClientCaps>>,
}

/// One bound resource. Kept small: an idle session is this, a channel,
/// two tasks (reader and writer) and its connection's buffers; see
/// `bench/idle_sessions.py` for what each costs.
#[derive(Debug)]
pub struct SessionHandle {
    pub id: u64,
    pub full: String,
    pub bare: String,
    pub tx: OutTx,
    pub state: Mutex<PresenceState>,
    /// XEP-0352 client state, shared with the session's writer.
    pub inactive: Arc<std::sync::atomic::AtomicBool>,
    /// How full its queue is, shared with the session's writer.
    pub flow: Arc<Flow>,
}

impl SessionHandle {
    /// Queues a stanza. Never refused while the session lives: a sender
    /// that fills the queue is made to wait (see `PRESSURE`), and a client
    /// that lets it overflow is closed, its queue going to offline storage.
    pub fn send(&self, data: Bytes) -> bool {
        self.push(Outbound::Stanza(data))
    }

    /// Queues a stream-level element (not a stanza: XEP-0198 does not
    /// count it).
    pub fn send_nonza(&self, data: Bytes) -> bool {
        self.push(Outbound::Nonza(data))
    }

    /// Queues a stanza that may wait while the client is inactive.
    pub fn send_deferrable(&self, data: Bytes) -> bool {
        self.push(Outbound::Deferrable(data))
    }

    fn push(&self, item: Outbound) -> bool {
        let n = item.weight();
        // Counted before it is queued: the writer may take it at once.
        let queued = self.flow.add(n);
        if self.tx.send(item).is_err() {
            self.flow.queued.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        if self.tx.len() > self.flow.limits.max_items {
            if !self.flow.dead.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    session = self.id,
                    "send queue overflowed; closing the session"
                );
                self.flow.drained.notify_waiters();
                self.flow.kill.notify_one();
            }
        } else if queued > self.flow.limits.wait_bytes {
            let _ = PRESSURE.try_with(|p| {
                let mut p = p.borrow_mut();
                if !p.iter().any(|f| Arc::ptr_eq(f, &self.flow)) {
                    p.push(self.flow.clone());
                }
            });
        }
        true
    }

    /// Queues a shared stanza to be addressed to this session.
    pub fn send_addressed(&self, stanza: Bytes) -> bool {
        self.push(Outbound::ToSelf(stanza))
    }

    pub fn close(&self, condition: Option<&'static str>) {
        let _ = self.tx.send(Outbound::Close(condition));
    }

    pub fn is_available(&self) -> bool {
        self.state.lock().map(|s| s.available).unwrap_or(false)
    }

    pub fn priority(&self) -> i8 {
        self.state.lock().map(|s| s.priority).unwrap_or(0)
    }
}

#[derive(Default)]
pub struct Router {
    users: RwLock<crate::FastMap<String, Vec<Arc<SessionHandle>>>>,
    next_id: AtomicU64,
}

impl Router {
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a bound session; returns the session it displaced (same
    /// full JID), which the caller closes with `conflict`.
    pub fn bind(&self, handle: Arc<SessionHandle>) -> Option<Arc<SessionHandle>> {
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        let list = users.entry(handle.bare.clone()).or_default();
        let old = list
            .iter()
            .position(|h| h.full == handle.full)
            .map(|i| list.swap_remove(i));
        list.push(handle);
        old
    }

    /// Removes a session; true if it was the user's last one.
    pub fn unbind(&self, handle: &SessionHandle) -> bool {
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = users.get_mut(&handle.bare) {
            list.retain(|h| h.id != handle.id);
            if list.is_empty() {
                users.remove(&handle.bare);
                return true;
            }
            return false;
        }
        true
    }

    pub fn sessions(&self, bare: &str) -> Vec<Arc<SessionHandle>> {
        self.users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(bare)
            .cloned()
            .unwrap_or_default()
    }

    /// Runs `f` on the user's sessions under the read lock: no copy of the
    /// list. `f` must not block or call back into the router's writers.
    pub fn with_sessions<R>(&self, bare: &str, f: impl FnOnce(&[Arc<SessionHandle>]) -> R) -> R {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        f(users.get(bare).map(Vec::as_slice).unwrap_or_default())
    }

    pub fn session(&self, bare: &str, full: &str) -> Option<Arc<SessionHandle>> {
        self.users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(bare)
            .and_then(|l| l.iter().find(|h| h.full == full).cloned())
    }

    pub fn resource_taken(&self, bare: &str, full: &str) -> bool {
        self.session(bare, full).is_some()
    }

    pub fn is_online(&self, bare: &str) -> bool {
        self.users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(bare)
    }

    pub fn all(&self) -> Vec<Arc<SessionHandle>> {
        self.users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .flatten()
            .cloned()
            .collect()
    }

    /// The bare JIDs with at least one bound session.
    pub fn online_users(&self) -> Vec<String> {
        self.users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    pub fn count(&self) -> usize {
        self.users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(Vec::len)
            .sum()
    }
}
