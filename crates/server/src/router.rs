//! Who is online, and how to reach them. Delivery to an online session is
//! a map lookup and a channel send: it never waits on the database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tokio::sync::mpsc;

/// What a session's writer receives.
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
    SmEnabled(Bytes, usize),
    /// Close the stream, with a stream error condition if any.
    Close(Option<&'static str>),
}

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

/// One bound resource. Kept small: an idle session is this, a channel and
/// its connection's buffers.
#[derive(Debug)]
pub struct SessionHandle {
    pub id: u64,
    pub full: String,
    pub bare: String,
    pub tx: mpsc::Sender<Outbound>,
    pub state: Mutex<PresenceState>,
    /// XEP-0352 client state, shared with the session's writer.
    pub inactive: Arc<std::sync::atomic::AtomicBool>,
}

impl SessionHandle {
    /// Queues a stanza. A client that lets its queue fill is too slow to
    /// keep up, and is disconnected rather than allowed to exhaust memory.
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
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(session = self.id, "send queue full; disconnecting");
                let _ = self.tx.try_send(Outbound::Close(Some("policy-violation")));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a shared stanza to be addressed to this session.
    pub fn send_addressed(&self, stanza: Bytes) -> bool {
        self.push(Outbound::ToSelf(stanza))
    }

    pub fn close(&self, condition: Option<&'static str>) {
        let tx = self.tx.clone();
        // A full queue must not keep a close (shutdown, conflict) from
        // being delivered: wait for room off the caller's path.
        if let Err(mpsc::error::TrySendError::Full(msg)) = tx.try_send(Outbound::Close(condition)) {
            tokio::spawn(async move {
                let _ = tx.send(msg).await;
            });
        }
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
