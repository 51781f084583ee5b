//! XEP-0198 resumption: a session whose connection drops without a
//! closing tag is kept (hibernated) for `c2s.sm_resume_timeout_secs`,
//! still bound, gathering what is sent to it, until a new stream of the
//! same account resumes it or the time runs out. A session's task owns
//! it throughout; resuming hands it, whole, to the new connection's task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minidom::Element;
use tokio::sync::oneshot;
use xmpp_core::sm;

use crate::hub::{Server, Session};
use crate::modules;
use crate::router::{Outbound, Queued};
use crate::session::{Attached, Peer, ReadEnd, StreamMgmt, WriterEnd, WriterExit, read_loop};
use crate::transport::FrameReader;

/// How long a resuming stream waits for the session's task to let go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(10);

/// A session between connections, on its way to the one resuming it. If
/// it is dropped on the way (the resuming stream died), it is ended
/// properly rather than left bound with no one to serve it.
pub(crate) struct Detached {
    server: Arc<Server>,
    parts: Option<Parts>,
}

pub(crate) struct Parts {
    pub session: Session,
    pub sm: StreamMgmt,
    pub rx: crate::router::OutRx,
}

impl Detached {
    pub(crate) fn parts(&self) -> Option<&Parts> {
        self.parts.as_ref()
    }

    pub(crate) fn take(mut self) -> Option<Parts> {
        self.parts.take()
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        // Outside a runtime the process is going away with the session.
        if let Some(p) = self.parts.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let server = self.server.clone();
            rt.spawn(async move {
                finish(&server, p.session, p.sm, Some(p.rx), Vec::new()).await;
            });
        }
    }
}

/// Resumption granted to a session: its id, and where resuming streams
/// ask for it.
#[derive(Debug)]
pub(crate) struct Ticket {
    pub id: String,
    takeover: flume::Receiver<oneshot::Sender<Detached>>,
}

struct Entry {
    bare: String,
    takeover: flume::Sender<oneshot::Sender<Detached>>,
}

/// A session that ended, remembered for the resumption timeout so that a
/// late `<resume/>` learns how many of its stanzas were handled (§5).
struct Ended {
    bare: String,
    h: u32,
    until: Instant,
}

/// Resumable sessions by id.
#[derive(Default)]
pub struct Registry {
    live: Mutex<HashMap<String, Entry>>,
    ended: Mutex<HashMap<String, Ended>>,
}

enum Lookup {
    Live(flume::Sender<oneshot::Sender<Detached>>),
    Ended(u32),
    Unknown,
}

/// Who may resume a session.
#[derive(Clone, Copy)]
pub(crate) enum Claimant<'a> {
    /// A stream authenticated as this account: its own sessions only.
    Account(&'a str),
    /// A guest (SASL ANONYMOUS) on this host. Each login is a new random
    /// account, so a guest whose connection dropped comes back as someone
    /// else: the resumption id, a 144-bit secret only the session's client
    /// was told, is what proves it is the same guest (as Jitsi's
    /// mod_auth_jitsi-anonymous lets a guest resume, so that a meeting
    /// survives a dropped WebSocket).
    GuestOn(&'a str),
}

impl Claimant<'_> {
    fn owns(self, bare: &str) -> bool {
        match self {
            Claimant::Account(b) => b == bare,
            Claimant::GuestOn(host) => bare.rsplit_once('@').is_some_and(|(_, h)| h == host),
        }
    }
}

impl Registry {
    /// Grants resumption to a session of `bare`. The id is the only thing
    /// that lets a stream of the same account take the session over, so it
    /// is secret: none if the system RNG fails.
    pub(crate) fn grant(&self, bare: &str) -> Option<Ticket> {
        let mut b = [0u8; 18];
        aws_lc_rs::rand::fill(&mut b).ok()?;
        let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
        // flume: tokio's channel would allocate a 32-slot block per session
        // for a request that almost never comes.
        let (tx, rx) = flume::bounded(1);
        self.live.lock().unwrap_or_else(|e| e.into_inner()).insert(
            id.clone(),
            Entry {
                bare: bare.to_owned(),
                takeover: tx,
            },
        );
        Some(Ticket { id, takeover: rx })
    }

    fn lookup(&self, id: &str, who: Claimant<'_>) -> Lookup {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = live.get(id).filter(|e| who.owns(&e.bare)) {
            return Lookup::Live(e.takeover.clone());
        }
        drop(live);
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        match ended.get(id) {
            Some(e) if who.owns(&e.bare) && e.until > Instant::now() => Lookup::Ended(e.h),
            _ => Lookup::Unknown,
        }
    }

    fn ended(&self, id: &str, bare: &str, h: u32, keep: Duration) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        let now = Instant::now();
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        ended.retain(|_, e| e.until > now);
        ended.insert(
            id.to_owned(),
            Ended {
                bare: bare.to_owned(),
                h,
                until: now + keep,
            },
        );
    }
}

/// Resolves when a resuming stream asks for this session (never, if it
/// has no resumption).
pub(crate) async fn takeover_requested(sm: &mut StreamMgmt) -> Option<oneshot::Sender<Detached>> {
    match sm.ticket.as_mut() {
        Some(t) => t.takeover.recv_async().await.ok(),
        None => std::future::pending().await,
    }
}

/// Serves a bound session on its connection, then hibernates it, hands it
/// over or ends it.
pub(crate) async fn live<R: FrameReader>(server: &Arc<Server>, mut a: Box<Attached<R>>) {
    let end = read_loop(
        server,
        &a.session,
        &mut a.reader,
        &a.closed,
        Peer::Client,
        &mut a.sm,
    )
    .await;
    // Boxed: the session's end (writer handover, hibernation, presence,
    // offline storage) is far larger than the read loop, and an idle
    // session's task would otherwise reserve its space.
    Box::pin(after_read(server, unbox(a), end)).await
}

/// Frees the box now, not when `live` returns (after hibernation).
#[allow(clippy::boxed_local)]
fn unbox<R>(a: Box<Attached<R>>) -> Attached<R> {
    *a
}

async fn after_read<R: FrameReader>(server: &Arc<Server>, a: Attached<R>, end: ReadEnd) {
    let Attached {
        session,
        sm,
        reader,
        writer,
        closed,
    } = a;
    drop((reader, closed));
    match end {
        ReadEnd::Ended => {
            // The read loop queued the close; the writer sends what is
            // before it, then closes.
            let left = writer.join(Duration::from_secs(5)).await;
            end_with(server, session, sm, left).await;
        }
        ReadEnd::Lost => {
            let left = writer.stop(None).await;
            match left {
                // A client that stopped reading is not kept waiting for: its
                // session ends, its unacknowledged stanzas go offline.
                Some(l)
                    if !matches!(l.why, WriterExit::Closed | WriterExit::Stalled)
                        && can_hibernate(&sm) =>
                {
                    let d = detach(server, session, sm, l.rx);
                    Box::pin(hibernate(server, d, l.held)).await;
                }
                left => end_with(server, session, sm, left).await,
            }
        }
        ReadEnd::TakeOver(reply) => {
            // Prosody drops the old connection; a conflict stream error
            // tells a client that still listens why.
            let left = writer.stop(Some("conflict")).await;
            match left {
                Some(l) if l.why != WriterExit::Closed => {
                    hold(&sm, l.held);
                    let d = detach(server, session, sm, l.rx);
                    if let Err(d) = reply.send(d) {
                        Box::pin(hibernate(server, d, Vec::new())).await;
                    }
                }
                left => end_with(server, session, sm, left).await,
            }
        }
    }
}

fn can_hibernate(sm: &StreamMgmt) -> bool {
    sm.ticket.is_some() && sm.out.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

fn detach(
    server: &Arc<Server>,
    session: Session,
    sm: StreamMgmt,
    rx: crate::router::OutRx,
) -> Detached {
    Detached {
        server: server.clone(),
        parts: Some(Parts { session, sm, rx }),
    }
}

/// Keeps stanzas that were never written (held for an inactive client, or
/// sent while no connection was attached) to go out on resumption. False
/// if that overflows the queue.
fn hold(sm: &StreamMgmt, items: impl IntoIterator<Item = bytes::Bytes>) -> bool {
    hold_queued(sm, items.into_iter().map(Queued::Raw))
}

fn hold_queued(sm: &StreamMgmt, items: impl IntoIterator<Item = Queued>) -> bool {
    let mut out = sm.out.lock().unwrap_or_else(|e| e.into_inner());
    let Some(o) = out.as_mut() else {
        return true;
    };
    items.into_iter().all(|q| o.hold(q).is_ok())
}

async fn end_with(server: &Server, session: Session, sm: StreamMgmt, left: Option<WriterEnd>) {
    match left {
        Some(l) => {
            let mut first = l.unwritten;
            first.extend(l.held.into_iter().map(Queued::Raw));
            finish(server, session, sm, Some(l.rx), first).await
        }
        None => finish(server, session, sm, None, Vec::new()).await,
    }
}

/// Waits, without a connection, for the session to be resumed; ends it
/// when the time runs out, the queue overflows or the server closes it.
pub(crate) async fn hibernate(server: &Server, mut d: Detached, held: Vec<bytes::Bytes>) {
    let Some(mut p) = d.parts.take() else {
        return;
    };
    let limit = Duration::from_secs(server.config.c2s.sm_resume_timeout_secs);
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    let mut ok = hold(&p.sm, held);
    tracing::info!(
        session = p.session.handle.id,
        "connection lost; session awaits resumption"
    );
    enum Ev {
        Expired,
        Wanted(Option<oneshot::Sender<Detached>>),
        Item(Option<Outbound>),
    }
    while ok {
        let ev = tokio::select! {
            _ = &mut deadline => Ev::Expired,
            r = takeover_requested(&mut p.sm) => Ev::Wanted(r),
            i = p.rx.recv_async() => {
                let i = i.ok();
                if let Some(it) = &i {
                    p.session.handle.flow.taken(it.weight());
                }
                Ev::Item(i)
            }
        };
        match ev {
            Ev::Expired => {
                tracing::info!(session = p.session.handle.id, "not resumed in time");
                break;
            }
            Ev::Wanted(Some(reply)) => {
                d.parts = Some(p);
                match reply.send(d) {
                    Ok(()) => return,
                    Err(mut back) => match back.parts.take() {
                        Some(again) => {
                            p = again;
                            d = back;
                        }
                        None => return,
                    },
                }
            }
            Ev::Wanted(None) => break,
            Ev::Item(Some(Outbound::Stanza(b) | Outbound::Deferrable(b))) => {
                ok = hold_queued(&p.sm, [Queued::Raw(b)]);
            }
            Ev::Item(Some(Outbound::ToSelf(b))) => ok = hold_queued(&p.sm, [Queued::ToSelf(b)]),
            // Shutdown, or a new session took the resource.
            Ev::Item(Some(Outbound::Close(_)) | None) => break,
            Ev::Item(Some(_)) => {}
        }
    }
    finish(server, p.session, p.sm, Some(p.rx), Vec::new()).await;
}

/// A `<resume/>` from a stream authenticated as `who`: the session, taken
/// from its task and with the client's `h` applied, or the `<failed/>` to
/// send.
pub(crate) async fn claim(
    server: &Server,
    who: Claimant<'_>,
    el: &Element,
) -> Result<Detached, String> {
    let previd = el.attr("previd").unwrap_or("");
    let Some(h) = sm::h(el) else {
        return Err(sm::failed("bad-request", None));
    };
    let takeover = match server.resumption.lookup(previd, who) {
        Lookup::Live(tx) => tx,
        Lookup::Ended(handled) => return Err(sm::failed("item-not-found", Some(handled))),
        Lookup::Unknown => return Err(sm::failed("item-not-found", None)),
    };
    let (tx, rx) = oneshot::channel();
    let got = tokio::time::timeout(TAKEOVER_WAIT, async move {
        takeover.send_async(tx).await.ok()?;
        rx.await.ok()
    })
    .await;
    let Some(mut d) = got.ok().flatten() else {
        return Err(sm::failed("item-not-found", None));
    };
    let Some(p) = d.parts.as_ref() else {
        return Err(sm::failed("item-not-found", None));
    };
    let handled = p.sm.handled.unwrap_or(0);
    let acked =
        p.sm.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .map(|o| o.ack(h));
    match acked {
        Some(Ok(_)) => Ok(d),
        Some(Err(too_high)) => {
            // The client's view of the stream cannot be reconciled with
            // ours: end the session (its unacked messages go offline) and
            // let the client bind anew.
            tracing::info!(
                h,
                sent = too_high.sent,
                "resume acknowledges more than was sent"
            );
            if let Some(p) = d.parts.take() {
                finish(server, p.session, p.sm, Some(p.rx), Vec::new()).await;
            }
            Err(sm::failed_too_high(too_high, handled))
        }
        None => Err(sm::failed("item-not-found", None)),
    }
}

/// Ends a session: unbound, unavailable broadcast, and what the client
/// never acknowledged dealt with as undeliverable (messages kept offline).
pub(crate) async fn finish(
    server: &Server,
    session: Session,
    sm: StreamMgmt,
    rx: Option<crate::router::OutRx>,
    unwritten: Vec<Queued>,
) {
    let handle = session.handle.clone();
    server.router.unbind(&handle);
    server.requests.forget(handle.id);
    if let Some(t) = &sm.ticket {
        let keep = Duration::from_secs(server.config.c2s.sm_resume_timeout_secs);
        server
            .resumption
            .ended(&t.id, &handle.bare, sm.handled.unwrap_or(0), keep);
    }
    modules::presence::went_offline(server, &session).await;
    server
        .rosters
        .evict_if_offline(&server.router, session.bare());
    handle.flow.end();
    // What the client never acknowledged (XEP-0198), what was held for it,
    // and what is still queued and was never written: each goes where an
    // undeliverable stanza goes (a message to offline storage, an IQ back
    // to its sender as an error), once. Without XEP-0198 what was written
    // is taken as delivered, as RFC 6120 does.
    let outbox = sm.out.lock().unwrap_or_else(|e| e.into_inner()).take();
    let mut items: Vec<Queued> = outbox.map(|o| o.into_unacked().into()).unwrap_or_default();
    items.extend(unwritten);
    if let Some(rx) = rx {
        while let Ok(item) = rx.try_recv() {
            match item {
                Outbound::Stanza(b) | Outbound::Deferrable(b) => items.push(Queued::Raw(b)),
                Outbound::ToSelf(b) => items.push(Queued::ToSelf(b)),
                _ => {}
            }
        }
    }
    if !items.is_empty() {
        tracing::info!(
            session = handle.id,
            undelivered = items.len(),
            "session ended with stanzas it did not take"
        );
    }
    for q in items {
        let Ok(el) = xmpp_core::framing::parse_element(&q.to_vec(&handle.full), usize::MAX) else {
            continue;
        };
        modules::message::undelivered(server, &session, el).await;
    }
    metrics::gauge!("conclave_sessions").decrement(1.0);
    tracing::info!(session = handle.id, "session ended");
}

#[cfg(test)]
mod tests {
    use super::Claimant;

    #[test]
    fn accounts_resume_their_own_sessions_and_guests_any_guest_session_of_their_host() {
        assert!(Claimant::Account("alice@localhost").owns("alice@localhost"));
        assert!(!Claimant::Account("alice@localhost").owns("bob@localhost"));
        assert!(Claimant::GuestOn("guest.localhost").owns("a1b2@guest.localhost"));
        assert!(!Claimant::GuestOn("guest.localhost").owns("alice@localhost"));
        assert!(!Claimant::GuestOn("guest.localhost").owns("x@evil.guest.localhost"));
    }
}
