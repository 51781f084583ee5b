//! IQs the server itself sends to a client (a XEP-0115 disco#info query,
//! say), and the answers it waits for. An answer is matched by its id and
//! by the session it came from; its callback then runs in that session's
//! task, in order with the session's other stanzas, so nothing is spawned
//! and nothing waits. An unanswered request is forgotten after the
//! timeout, its callback dropped unrun; so is every request of a session
//! that ends.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use minidom::Element;
use xmpp_core::stanza::{self, ElementExt};

use crate::hub::{HandlerFuture, Server};
use crate::router::SessionHandle;

/// A client's answer: the `result` IQ, or the `error` one.
pub type Answer = Result<Element, Element>;

/// What to do with the answer.
pub type Callback = Box<dyn for<'a> FnOnce(&'a Server, Answer) -> HandlerFuture<'a> + Send>;

/// Boxes a closure as a [`Callback`] (the bound lets the compiler infer the
/// closure's higher-ranked signature).
pub fn callback<F>(f: F) -> Callback
where
    F: for<'a> FnOnce(&'a Server, Answer) -> HandlerFuture<'a> + Send + 'static,
{
    Box::new(f)
}

struct Pending {
    id: String,
    deadline: Instant,
    callback: Callback,
}

pub struct Requests {
    /// Session id → its requests awaiting answers.
    pending: Mutex<HashMap<u64, Vec<Pending>>>,
    timeout: Duration,
    per_session: usize,
}

impl Requests {
    pub fn new(timeout: Duration, per_session: usize) -> Self {
        Requests {
            pending: Mutex::default(),
            timeout,
            per_session,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<Pending>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `iq` (a get or set; its id, `from` and `to` are set here) to a
    /// session. False, and nothing sent, if the session already has as many
    /// requests outstanding as allowed.
    pub fn send(&self, to: &SessionHandle, from: &str, mut iq: Element, cb: Callback) -> bool {
        let id = format!("srv-{}", crate::session::random_id());
        iq.set("id", &id);
        iq.set("from", from);
        iq.set("to", &to.full);
        {
            let now = Instant::now();
            let mut map = self.lock();
            let list = map.entry(to.id).or_default();
            list.retain(|p| p.deadline > now);
            if list.len() >= self.per_session {
                return false;
            }
            list.push(Pending {
                id,
                deadline: now + self.timeout,
                callback: cb,
            });
        }
        to.send(stanza::to_bytes(&iq))
    }

    /// If `iq` (a result or error from `session`) answers one of the
    /// server's requests, takes its callback.
    pub fn take(&self, session: u64, iq: &Element) -> Option<(Callback, Answer)> {
        let id = iq.attr("id")?;
        let p = {
            let mut map = self.lock();
            let list = map.get_mut(&session)?;
            let i = list.iter().position(|p| p.id == id)?;
            let p = list.swap_remove(i);
            if list.is_empty() {
                map.remove(&session);
            }
            p
        };
        if p.deadline <= Instant::now() {
            return None;
        }
        let answer = match iq.attr("type") {
            Some("result") => Ok(iq.clone()),
            _ => Err(iq.clone()),
        };
        Some((p.callback, answer))
    }

    /// Drops every request of a session that ended.
    pub fn forget(&self, session: u64) {
        self.lock().remove(&session);
    }

    /// Requests awaiting answers, for tests and metrics.
    pub fn outstanding(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use xmpp_core::ns;

    fn handle(id: u64) -> (SessionHandle, crate::router::OutRx) {
        let (tx, rx) = crate::router::queue();
        let h = SessionHandle {
            id,
            full: format!("u{id}@localhost/r"),
            bare: format!("u{id}@localhost"),
            tx,
            state: Default::default(),
            inactive: Default::default(),
            flow: Default::default(),
        };
        (h, rx)
    }

    fn sent_id(rx: &mut crate::router::OutRx) -> String {
        match rx.try_recv() {
            Ok(crate::router::Outbound::Stanza(b)) => {
                let el: Element = std::str::from_utf8(&b).unwrap().parse().unwrap();
                assert_eq!(el.attr("to"), Some("u1@localhost/r"));
                assert_eq!(el.attr("from"), Some("localhost"));
                el.attr("id").unwrap().to_owned()
            }
            other => panic!("nothing sent: {other:?}"),
        }
    }

    fn answer(id: &str, ty: &str) -> Element {
        Element::bare("iq", ns::CLIENT)
            .with("id", id)
            .with("type", ty)
    }

    fn noop(ran: Arc<AtomicBool>) -> Callback {
        callback(move |_, _| {
            Box::pin(async move {
                ran.store(true, Ordering::SeqCst);
            })
        })
    }

    #[test]
    fn answers_match_by_id_and_session_and_are_taken_once() {
        let r = Requests::new(Duration::from_secs(30), 2);
        let (h, mut rx) = handle(1);
        let ran = Arc::new(AtomicBool::new(false));
        let q = Element::bare("iq", ns::CLIENT).with("type", "get");
        assert!(r.send(&h, "localhost", q.clone(), noop(ran.clone())));
        let id = sent_id(&mut rx);
        // Another session cannot answer it, nor an unknown id.
        assert!(r.take(2, &answer(&id, "result")).is_none());
        assert!(r.take(1, &answer("other", "result")).is_none());
        let (_, a) = r.take(1, &answer(&id, "error")).expect("matched");
        assert!(a.is_err());
        assert!(r.take(1, &answer(&id, "result")).is_none());
        assert_eq!(r.outstanding(), 0);
        // The per-session bound, and forgetting a session.
        assert!(r.send(&h, "localhost", q.clone(), noop(ran.clone())));
        assert!(r.send(&h, "localhost", q.clone(), noop(ran.clone())));
        assert!(!r.send(&h, "localhost", q.clone(), noop(ran.clone())));
        r.forget(1);
        assert_eq!(r.outstanding(), 0);
        assert!(!ran.load(Ordering::SeqCst));
    }

    #[test]
    fn late_answers_are_ignored() {
        let r = Requests::new(Duration::ZERO, 2);
        let (h, mut rx) = handle(1);
        let q = Element::bare("iq", ns::CLIENT).with("type", "get");
        assert!(r.send(&h, "localhost", q, noop(Arc::default())));
        let id = sent_id(&mut rx);
        assert!(r.take(1, &answer(&id, "result")).is_none());
    }
}
