//! One client connection from first byte to last: negotiation (TLS, SASL,
//! bind) under a deadline, then the bound session. Stanzas from the client
//! are handled in order, one at a time, so a reply to a later stanza (a
//! ping, say) acknowledges every earlier one; everything sent to the client
//! goes through one queue that a writer task drains in batches.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use tokio::sync::{Notify, oneshot};
use xmpp_core::framing::{Frame, StreamHeader};
use xmpp_core::ns;
use xmpp_core::sasl::{ScramCredentials, ScramHash};
use xmpp_core::sm::Outbox;
use xmpp_core::stanza;
use xmpp_core::stream::{SaslExchange, SaslStep, StreamPolicy, bind_request, bind_result};

use crate::hub::{Server, Session};
use crate::modules;
use crate::resumption::{self, Detached};
use crate::router::{Outbound, PresenceState, Queued, SessionHandle};
use crate::transport::{Event, FrameReader, FrameWriter, Transport};

/// Why negotiation ended without a session.
enum Abort {
    /// Close with this stream error (or none: the peer closed or left).
    Close(Option<&'static str>),
}

/// What negotiation ended in: a new session to bind, or one to resume.
enum Outcome {
    Bind(Negotiated),
    Resume(Box<Detached>),
}

struct Negotiated {
    user: String,
    host: String,
    anonymous: bool,
    resource: Option<String>,
    bind_iq: Element,
}

pub fn run<T: Transport>(server: Arc<Server>, t: T) -> impl Future<Output = ()> + Send {
    // XEP-0198 resumption needs a stream the client can lose and replace;
    // a BOSH session already survives its HTTP requests, and its own
    // inactivity timeout ends it.
    let resumable = t.info().kind != "bosh" && server.config.c2s.sm_resume_timeout_secs > 0;
    // Setup and teardown are boxed and freed once done: what stays
    // resident for an idle session is only the read loop's small state
    // and the one boxed `Attached`. (Not an `async fn`: its arguments, the
    // whole transport, would stay in the future for the session's life.)
    let setup = Box::pin(establish(server.clone(), t, resumable));
    async move {
        let Some(attached) = setup.await else {
            return;
        };
        let handle = attached.session.handle.clone();
        let live = std::panic::AssertUnwindSafe(resumption::live(&server, attached));
        if futures_util::FutureExt::catch_unwind(live).await.is_err() {
            Box::pin(recover(&server, handle)).await;
        }
    }
}

/// A bug that panics in one session's task must cost that session only:
/// the panic unwound its task (the connection's read half and the
/// session's state are gone), so what the server knows of it is undone
/// here, its writer is told to close the stream, and everyone else goes
/// on.
async fn recover(server: &Server, handle: Arc<SessionHandle>) {
    tracing::error!(
        session = handle.id,
        "session failed (a bug: it panicked); closed"
    );
    metrics::counter!("conclave_session_failures_total").increment(1);
    handle.close(Some("internal-server-error"));
    server.router.unbind(&handle);
    server.requests.forget(handle.id);
    let (user, host) = handle
        .bare
        .split_once('@')
        .map(|(u, h)| (u.to_owned(), h.to_owned()))
        .unwrap_or_default();
    let anonymous = server.config.is_guest_host(&host);
    let session = Session {
        handle,
        user,
        host,
        anonymous,
    };
    modules::presence::went_offline(server, &session).await;
    metrics::gauge!("conclave_sessions").decrement(1.0);
}

async fn establish<T: Transport>(
    server: Arc<Server>,
    mut t: T,
    resumable: bool,
) -> Option<Box<Attached<T::Reader>>> {
    let server = &server;
    let limit = Duration::from_secs(server.config.limits.unauthenticated_timeout_secs);
    let mut shutdown = server.shutdown_signal();
    let result = tokio::select! {
        r = tokio::time::timeout(limit, negotiate(server, &mut t)) => r,
        _ = shutdown.changed() => Ok(Err(Abort::Close(Some("system-shutdown")))),
    };
    let n = match result {
        Err(_) => {
            t.close(Some("connection-timeout")).await;
            return None;
        }
        Ok(Err(Abort::Close(cond))) => {
            t.close(cond).await;
            return None;
        }
        Ok(Ok(Outcome::Bind(n))) => n,
        Ok(Ok(Outcome::Resume(d))) => return resume(server, t, *d, resumable).await,
    };
    let bare = format!("{}@{}", n.user, n.host);
    let resource = n
        .resource
        .and_then(|r| jid::BareJid::new(&bare).ok()?.with_resource_str(&r).ok())
        .map(|full| full.resource().as_str().to_owned());
    let resource = match resource {
        Some(r) => r,
        None => random_id(),
    };
    let full = format!("{bare}/{resource}");
    let (tx, rx) = crate::router::queue();
    let handle = Arc::new(SessionHandle {
        id: server.router.next_id(),
        full: full.clone(),
        bare,
        tx,
        state: std::sync::Mutex::new(PresenceState::default()),
        inactive: Default::default(),
        flow: Arc::new(crate::router::Flow::new(server.config.limits.queue())),
    });
    if let Err(e) = t
        .send(&stanza::to_bytes(&bind_result(&n.bind_iq, &full)))
        .await
    {
        tracing::debug!(error = %e, "bind result not sent");
        return None;
    }
    if let Some(old) = server.router.bind(handle.clone()) {
        // RFC 6120 §7.7.2.2: the newest connection wins the resource.
        old.close(Some("conflict"));
    }
    metrics::gauge!("conclave_sessions").increment(1.0);
    tracing::info!(session = handle.id, jid = %handle.full, "session bound");
    let session = Session {
        handle,
        user: n.user,
        host: n.host,
        anonymous: n.anonymous,
    };
    let sm = StreamMgmt::new(resumable);
    let (reader, writer) = t.split();
    let closed = Arc::new(Notify::new());
    let writer = spawn_writer(
        writer,
        rx,
        closed.clone(),
        &session.handle,
        sm.out.clone(),
        Vec::new(),
    );
    Some(Box::new(Attached {
        session,
        sm,
        reader,
        writer,
        closed,
    }))
}

/// Continues a session on a new connection (XEP-0198 §5): `<resumed/>`,
/// then what the client has not acknowledged, then the session as it was.
async fn resume<T: Transport>(
    server: &Server,
    mut t: T,
    d: Detached,
    resumable: bool,
) -> Option<Box<Attached<T::Reader>>> {
    let p = d.parts()?;
    let resend: Vec<Queued> = {
        let mut out = p.sm.out.lock().unwrap_or_else(|e| e.into_inner());
        out.as_mut()
            .map(|o| o.resend().cloned().collect())
            .unwrap_or_default()
    };
    let previd = p.sm.ticket.as_ref().map(|t| t.id.as_str()).unwrap_or("");
    let xml = xmpp_core::sm::resumed(previd, p.sm.handled.unwrap_or(0));
    if t.send(xml.as_bytes()).await.is_err() {
        // Lost again at once: back to waiting for the client.
        Box::pin(resumption::hibernate(server, d, Vec::new())).await;
        return None;
    }
    let mut p = d.take()?;
    p.sm.resumable = resumable;
    tracing::info!(
        session = p.session.handle.id,
        resent = resend.len(),
        "session resumed"
    );
    let (reader, writer) = t.split();
    let closed = Arc::new(Notify::new());
    let writer = spawn_writer(
        writer,
        p.rx,
        closed.clone(),
        &p.session.handle,
        p.sm.out.clone(),
        resend,
    );
    Some(Box::new(Attached {
        session: p.session,
        sm: p.sm,
        reader,
        writer,
        closed,
    }))
}

/// A bound session with its connection. Boxed, and held in one place for
/// the session's life (the read loop borrows it): moved between futures,
/// each would keep its own copy's space.
pub(crate) struct Attached<R> {
    pub session: Session,
    pub sm: StreamMgmt,
    pub reader: R,
    pub writer: Writer,
    pub closed: Arc<Notify>,
}

/// XEP-0198 state of one session, kept across the connections that
/// resume it.
#[derive(Debug)]
pub(crate) struct StreamMgmt {
    /// The client's stanzas handled since `<enable/>` (mod 2^32); `None`
    /// before. Counted only once a stanza's handling (and any write it
    /// causes) is done, so an `<a/>` promises durability.
    pub handled: Option<u32>,
    /// What the writer sent and the client has not acknowledged.
    pub out: SharedOutbox,
    /// Granted resumption: the session may outlive its connection.
    pub ticket: Option<resumption::Ticket>,
    /// This transport and the configuration allow resumption.
    pub resumable: bool,
}

impl StreamMgmt {
    pub(crate) fn new(resumable: bool) -> Self {
        StreamMgmt {
            handled: None,
            out: Default::default(),
            ticket: None,
            resumable,
        }
    }
}

/// XEP-0198's outbound side, shared by the reader (which applies the
/// client's acks) and the writer (which records what it sends). `None`
/// until `<enabled/>` was written.
pub(crate) type SharedOutbox = Arc<std::sync::Mutex<Option<Outbox<Queued>>>>;

/// Why a read loop ended.
pub(crate) enum ReadEnd {
    /// The client closed the stream or broke a rule: the session ends.
    Ended,
    /// The connection went away, or the writer stopped (it says why).
    Lost,
    /// Another connection resumes this session.
    TakeOver(oneshot::Sender<Detached>),
}

/// Who is at the other end of a read loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    Client,
    /// An XEP-0114 component: its stanzas are in its own namespace on the
    /// wire, may come from any address in its domain, and CSI is not its.
    Component,
}

pub(crate) async fn read_loop<R: FrameReader>(
    server: &Server,
    session: &Session,
    reader: &mut R,
    closed: &Notify,
    peer: Peer,
    sm: &mut StreamMgmt,
) -> ReadEnd {
    let handle = &session.handle;
    loop {
        let ev = tokio::select! {
            ev = reader.recv() => ev,
            _ = closed.notified() => return ReadEnd::Lost,
            Some(reply) = resumption::takeover_requested(sm) => return ReadEnd::TakeOver(reply),
        };
        match ev {
            Event::Frame(Frame::Stanza(el)) if peer == Peer::Component => {
                let el = xmpp_core::component::to_client_ns(el);
                if let Err(cond) = Box::pin(server.handle_component_stanza(session, el)).await {
                    handle.close(Some(cond));
                    return ReadEnd::Ended;
                }
            }
            Event::Frame(Frame::Stanza(el))
                if el.ns() == xmpp_core::ns::SM && peer != Peer::Component =>
            {
                if let Err(cond) = stream_management(server, handle, sm, &el) {
                    handle.close(cond);
                    return ReadEnd::Ended;
                }
            }
            Event::Frame(Frame::Stanza(el)) if el.ns() == xmpp_core::ns::CSI => {
                let inactive = el.name() == "inactive";
                handle
                    .inactive
                    .store(inactive, std::sync::atomic::Ordering::Relaxed);
                if !inactive {
                    let _ = handle.tx.try_send(Outbound::Flush);
                }
            }
            Event::Frame(Frame::Stanza(el)) => {
                // Boxed, so that an idle session's task does not carry the
                // largest stanza handler's state inline.
                let handled = crate::router::PRESSURE.scope(Default::default(), async {
                    let r = Box::pin(server.handle_stanza(session, el)).await;
                    let full =
                        crate::router::PRESSURE.with(|p| std::mem::take(&mut *p.borrow_mut()));
                    (r, full)
                });
                let (result, full) = handled.await;
                if let Err(cond) = result {
                    handle.close(Some(cond));
                    return ReadEnd::Ended;
                }
                if !full.is_empty() {
                    Box::pin(wait_for_room(handle, full)).await;
                }
                // Handled and durable: only now may an <a/> count it.
                if let Some(h) = sm.handled.as_mut() {
                    *h = h.wrapping_add(1);
                }
            }
            Event::Frame(Frame::Close) => {
                handle.close(None);
                return ReadEnd::Ended;
            }
            Event::Frame(Frame::Open(_)) => {
                handle.close(Some("invalid-xml"));
                return ReadEnd::Ended;
            }
            Event::Error(e) => {
                handle.close(Some(e.condition()));
                return ReadEnd::Ended;
            }
            Event::Gone => return ReadEnd::Lost,
        }
    }
}

/// Back-pressure: the stanza just handled filled other sessions' queues
/// past `limits.send_queue_bytes`, so its sender is not read again until
/// they drain (TCP then slows the client down) rather than any stanza
/// being dropped. The wait is bounded by `limits.send_stall_secs`, by which
/// time a recipient that takes nothing has been closed by its writer.
async fn wait_for_room(own: &SessionHandle, full: Vec<Arc<crate::router::Flow>>) {
    let deadline = tokio::time::Instant::now() + own.flow.limits.stall;
    for f in full {
        // A client that writes to itself faster than it reads is not made
        // to wait on itself: its own writer closes it if it stalls.
        if Arc::ptr_eq(&f, &own.flow) {
            continue;
        }
        if !f.drained(deadline).await {
            break;
        }
    }
}

/// One XEP-0198 nonza from the client; `Err` closes the stream with it.
fn stream_management(
    server: &Server,
    handle: &SessionHandle,
    sm: &mut StreamMgmt,
    el: &Element,
) -> Result<(), Option<&'static str>> {
    use xmpp_core::sm;
    match (el.name(), sm.handled) {
        ("enable", None) => {
            sm.handled = Some(0);
            let ticket = (sm.resumable && sm::wants_resume(el))
                .then(|| server.resumption.grant(&handle.bare))
                .flatten();
            let timeout = server.config.c2s.sm_resume_timeout_secs;
            let xml = sm::enabled(ticket.as_ref().map(|t| (t.id.as_str(), timeout)));
            sm.ticket = ticket;
            let max = server.config.limits.sm_unacked_max;
            let _ = handle.tx.try_send(Outbound::SmEnabled(Box::new((
                bytes::Bytes::from(xml),
                max,
            ))));
        }
        ("enable", Some(_)) => {
            handle.send_nonza(sm::failed("unexpected-request", None).into());
        }
        ("r", Some(h)) => {
            handle.send_nonza(sm::ack(h).into());
        }
        ("a", Some(_)) => {
            let h = sm::h(el).ok_or(Some("invalid-xml"))?;
            let mut out = sm.out.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(o) = out.as_mut()
                && let Err(e) = o.ack(h)
            {
                tracing::info!(
                    session = handle.id,
                    h = e.h,
                    sent = e.sent,
                    "ack of more than was sent"
                );
                // The error names the counts, so it is written here and
                // the stream closed after it.
                handle.send_nonza(sm::too_high_stream_error(e).into());
                return Err(None);
            }
        }
        _ => return Err(Some("unsupported-stanza-type")),
    }
    Ok(())
}

/// Deferrable stanzas held for an inactive client before they are sent
/// anyway (XEP-0352 allows holding, not dropping).
const CSI_MAX_HELD: usize = 256;

/// A running writer task, as its session holds it.
pub(crate) struct Writer {
    task: tokio::task::JoinHandle<WriterEnd>,
    stop: oneshot::Sender<Option<&'static str>>,
}

impl Writer {
    /// Stops the writer wherever it is (closing the stream with
    /// `condition` if the connection still takes it) and takes back what
    /// it held, so that the session can outlive the connection.
    pub(crate) async fn stop(self, condition: Option<&'static str>) -> Option<WriterEnd> {
        let _ = self.stop.send(condition);
        self.task.await.ok()
    }

    /// Waits for the writer to finish the close it was sent, stopping it
    /// after `limit`.
    pub(crate) async fn join(self, limit: Duration) -> Option<WriterEnd> {
        let mut task = self.task;
        match tokio::time::timeout(limit, &mut task).await {
            Ok(end) => end.ok(),
            Err(_) => {
                let _ = self.stop.send(None);
                task.await.ok()
            }
        }
    }
}

/// Why a writer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriterExit {
    /// It was told to close the stream (`Outbound::Close`): the session ends.
    Closed,
    /// Writing failed: the connection is gone.
    Failed,
    /// Stopped by its session (`Writer::stop`).
    Stopped,
    /// The client took no bytes for `limits.send_stall_secs`.
    Stalled,
}

/// What a writer hands back when it ends.
pub(crate) struct WriterEnd {
    pub rx: crate::router::OutRx,
    /// Deferrable stanzas held for an inactive client, never written.
    pub held: Vec<bytes::Bytes>,
    /// Without XEP-0198: stanzas written after the last flush that went
    /// through, when the connection failed or stalled.
    pub unwritten: Vec<Queued>,
    pub why: WriterExit,
}

/// Starts a session's writer. `resend` (XEP-0198 retransmission after
/// `<resumed/>`) is written first, already counted in `sm`.
pub(crate) fn spawn_writer<W: FrameWriter>(
    w: W,
    rx: crate::router::OutRx,
    closed: Arc<Notify>,
    handle: &SessionHandle,
    sm: SharedOutbox,
    resend: Vec<Queued>,
) -> Writer {
    let (stop_tx, stop) = oneshot::channel();
    let to_attr = format!(" to='{}'", xmpp_core::stanza::escape(&handle.full));
    let task = tokio::spawn(write_loop(
        w,
        rx,
        closed,
        to_attr,
        handle.inactive.clone(),
        handle.flow.clone(),
        sm,
        resend,
        stop,
    ));
    Writer {
        task,
        stop: stop_tx,
    }
}

/// Not an `async fn`: its arguments would be stored twice in the task for
/// its whole life (as arguments and as the locals they are moved into).
#[allow(clippy::too_many_arguments, clippy::manual_async_fn)]
fn write_loop<W: FrameWriter>(
    mut w: W,
    mut rx: crate::router::OutRx,
    closed: Arc<Notify>,
    to_attr: String,
    inactive: Arc<std::sync::atomic::AtomicBool>,
    flow: Arc<crate::router::Flow>,
    sm: SharedOutbox,
    resend: Vec<Queued>,
    stop: oneshot::Receiver<Option<&'static str>>,
) -> impl Future<Output = WriterEnd> + Send {
    async move {
        let mut held: Vec<bytes::Bytes> = Vec::new();
        let mut unflushed: Vec<Queued> = Vec::new();
        let stop = async move {
            match stop.await {
                Ok(c) => c,
                // The session is gone without a word: nothing to stop for.
                Err(_) => std::future::pending().await,
            }
        };
        let (why, close) = {
            let mut out = Out {
                w: &mut w,
                to_attr: &to_attr,
                sm: &sm,
                stall: flow.limits.stall,
                unflushed: &mut unflushed,
                since_flush: 0,
            };
            tokio::select! {
                r = pump(&mut out, &mut rx, &mut held, &inactive, &flow, resend) => r,
                c = stop => (WriterExit::Stopped, c),
                // The queue overflowed: close now, not after what is queued.
                _ = flow.kill.notified() => (WriterExit::Closed, Some("policy-violation")),
            }
        };
        // Boxed: closing (with its timers) is larger than the idle loop, and
        // the task would otherwise carry its space while idle.
        let flushed = Box::pin(close_writer(w, why, close, flow.limits.stall)).await;
        closed.notify_one();
        // A close that flushed delivered them; after a failure they were
        // not delivered as far as anyone knows.
        if flushed {
            unflushed.clear();
        }
        WriterEnd {
            rx,
            held,
            unwritten: unflushed,
            why,
        }
    }
}

/// Closes the stream; true if what was written before reached the
/// connection (a final flush that went through).
async fn close_writer<W: FrameWriter>(
    mut w: W,
    why: WriterExit,
    close: Option<&'static str>,
    stall: Duration,
) -> bool {
    let limit = Duration::from_secs(2);
    match why {
        WriterExit::Closed => {
            let flushed = matches!(tokio::time::timeout(stall, w.flush()).await, Ok(Ok(())));
            let _ = tokio::time::timeout(limit, w.close(close)).await;
            flushed
        }
        // The peer may be gone without the socket knowing: do not wait on it.
        WriterExit::Failed | WriterExit::Stopped | WriterExit::Stalled => {
            let _ = tokio::time::timeout(limit, w.close(close)).await;
            false
        }
    }
}

/// Where a writer writes stanzas: the connection, counting for XEP-0198.
struct Out<'a, W> {
    w: &'a mut W,
    to_attr: &'a str,
    sm: &'a SharedOutbox,
    /// How long one write may wait for the client to take bytes.
    stall: Duration,
    /// Without XEP-0198: the stanzas written since the last flush went
    /// through, given back if the connection fails or stalls before the
    /// next one does, so that they are not taken as delivered.
    unflushed: &'a mut Vec<Queued>,
    /// Bytes written since the last flush: a burst is flushed past
    /// `FLUSH_BYTES`, so that a stall finds at most that much in flight.
    since_flush: usize,
}

/// The most a writer buffers before it flushes.
const FLUSH_BYTES: usize = 64 * 1024;

/// What a write that did not finish in time ends the writer with: the
/// client stopped reading. What it had not acknowledged (XEP-0198) and
/// what is still queued go to offline storage as the session ends.
const STALLED: Exit = (WriterExit::Stalled, Some("resource-constraint"));

type Exit = (WriterExit, Option<&'static str>);

impl<W: FrameWriter> Out<'_, W> {
    /// Writes stanzas, each kept for XEP-0198 first (so a stop in the
    /// middle loses none of them).
    async fn stanzas(&mut self, items: Vec<Queued>) -> Result<(), Exit> {
        match self.sm.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(o) => {
                for q in &items {
                    if o.sent(q.clone()).is_err() {
                        tracing::warn!("client does not acknowledge stanzas; disconnecting");
                        return Err((WriterExit::Closed, Some("policy-violation")));
                    }
                }
            }
            None => self.unflushed.extend(items.iter().cloned()),
        }
        self.write(&items).await
    }

    async fn write(&mut self, items: &[Queued]) -> Result<(), Exit> {
        for q in items {
            let r = match q {
                Queued::Raw(b) => {
                    self.since_flush += b.len();
                    timed(self.stall, self.w.send(b)).await
                }
                Queued::ToSelf(b) => {
                    self.since_flush += b.len() + self.to_attr.len();
                    let at = xmpp_core::stanza::name_end(b);
                    let parts = [&b[..at], self.to_attr.as_bytes(), &b[at..]];
                    timed(self.stall, self.w.send_parts(&parts)).await
                }
            };
            r?;
        }
        Ok(())
    }

    async fn nonza(&mut self, b: &[u8]) -> Result<(), Exit> {
        timed(self.stall, self.w.send(b)).await
    }

    async fn flush(&mut self) -> Result<(), Exit> {
        timed(self.stall, self.w.flush()).await?;
        self.since_flush = 0;
        self.unflushed.clear();
        if self.unflushed.capacity() > 256 {
            *self.unflushed = Vec::new();
        }
        // Ask for an ack once something sent awaits one, so that the
        // queue drains.
        let ask = self
            .sm
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .is_some_and(|o| o.should_request());
        if ask {
            self.nonza(xmpp_core::sm::REQUEST.as_bytes()).await?;
            timed(self.stall, self.w.flush()).await?;
        }
        Ok(())
    }
}

/// A write that must finish within `stall`: one the client does not read
/// for that long ends the writer (`STALLED`). The timer is armed only if
/// the write does not complete at once.
async fn timed(
    stall: Duration,
    write: impl Future<Output = std::io::Result<()>>,
) -> Result<(), Exit> {
    match tokio::time::timeout(stall, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err((WriterExit::Failed, None)),
        Err(_) => Err(STALLED),
    }
}

async fn pump<W: FrameWriter>(
    out: &mut Out<'_, W>,
    rx: &mut crate::router::OutRx,
    held: &mut Vec<bytes::Bytes>,
    inactive: &std::sync::atomic::AtomicBool,
    flow: &crate::router::Flow,
    resend: Vec<Queued>,
) -> Exit {
    match pump_inner(out, rx, held, inactive, flow, resend).await {
        Ok(()) => (WriterExit::Closed, None),
        Err(e) => e,
    }
}

async fn pump_inner<W: FrameWriter>(
    out: &mut Out<'_, W>,
    rx: &mut crate::router::OutRx,
    held: &mut Vec<bytes::Bytes>,
    inactive: &std::sync::atomic::AtomicBool,
    flow: &crate::router::Flow,
    resend: Vec<Queued>,
) -> Result<(), Exit> {
    if !resend.is_empty() {
        out.write(&resend).await?;
        out.flush().await?;
    }
    while let Ok(mut item) = rx.recv_async().await {
        loop {
            flow.taken(item.weight());
            // Anything that matters goes out after what was held, in order.
            if !held.is_empty() && matches!(item, Outbound::Stanza(_) | Outbound::ToSelf(_)) {
                let batch = std::mem::take(held).into_iter().map(Queued::Raw).collect();
                out.stanzas(batch).await?;
            }
            match item {
                Outbound::Stanza(b) => out.stanzas(vec![Queued::Raw(b)]).await?,
                Outbound::ToSelf(b) => out.stanzas(vec![Queued::ToSelf(b)]).await?,
                Outbound::Deferrable(b) => {
                    if inactive.load(std::sync::atomic::Ordering::Relaxed)
                        && held.len() < CSI_MAX_HELD
                    {
                        held.push(b);
                    } else {
                        let mut batch: Vec<Queued> =
                            std::mem::take(held).into_iter().map(Queued::Raw).collect();
                        batch.push(Queued::Raw(b));
                        out.stanzas(batch).await?;
                    }
                }
                Outbound::Flush => {
                    if !held.is_empty() {
                        let batch = std::mem::take(held).into_iter().map(Queued::Raw).collect();
                        out.stanzas(batch).await?;
                    }
                }
                Outbound::Nonza(b) => out.nonza(&b).await?,
                Outbound::SmEnabled(e) => {
                    let (b, max) = *e;
                    out.nonza(&b).await?;
                    // Counting starts after <enabled/>, as the client's does.
                    *out.sm.lock().unwrap_or_else(|e| e.into_inner()) = Some(Outbox::new(max));
                }
                Outbound::Close(c) => {
                    if !held.is_empty() {
                        let batch = std::mem::take(held).into_iter().map(Queued::Raw).collect();
                        out.stanzas(batch).await?;
                    }
                    return Err((WriterExit::Closed, c));
                }
            }
            if out.since_flush >= FLUSH_BYTES {
                break;
            }
            match rx.try_recv() {
                Ok(next) => item = next,
                Err(_) => break,
            }
        }
        out.flush().await?;
    }
    Ok(())
}

pub fn random_id() -> String {
    let b: [u8; 8] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn negotiate<T: Transport>(server: &Server, t: &mut T) -> Result<Outcome, Abort> {
    let info = t.info();
    let mut secure = info.secure;
    let mut host: Option<String> = None;
    let mut authed: Option<(String, bool)> = None;
    loop {
        // Every (re)start begins with a stream header.
        let header = match t.recv().await {
            Event::Frame(Frame::Open(h)) => h,
            Event::Frame(Frame::Close) | Event::Gone => return Err(Abort::Close(None)),
            Event::Frame(Frame::Stanza(_)) => return Err(Abort::Close(Some("not-authorized"))),
            Event::Error(e) => return Err(Abort::Close(Some(e.condition()))),
        };
        let h = check_header(server, &header, host.as_deref())?;
        host = Some(h.clone());
        t.send_header(&h, &random_id())
            .await
            .map_err(|_| Abort::Close(None))?;
        let policy = StreamPolicy {
            starttls_available: info.starttls_available && !secure,
            secure,
            require_encryption: server.config.c2s.require_encryption,
            allow_plain: server.config.auth.allow_plain,
            allow_unencrypted_plain: server.config.auth.allow_unencrypted_plain,
            anonymous_host: server.config.is_guest_host(&h),
            channel_binding: !matches!(t.channel_binding(), xmpp_core::sasl::ChannelBinding::None),
            registration: server.config.registration.allow,
            invites: true,
            caps: Some(server.caps_element(&h)),
        };
        if let Some((user, anonymous)) = &authed {
            send(t, policy.features_after_auth().as_bytes()).await?;
            return bind_phase(server, t, user.clone(), h, *anonymous).await;
        }
        send(t, policy.features_before_auth().as_bytes()).await?;
        match pre_auth(server, t, &policy, &h, info.peer).await? {
            PreAuth::StartTls => {
                t.starttls().await.map_err(|_| Abort::Close(None))?;
                t.restart();
                secure = true;
            }
            PreAuth::Authenticated { user, anonymous } => {
                t.restart();
                authed = Some((user, anonymous));
            }
        }
    }
}

fn check_header(
    server: &Server,
    h: &StreamHeader,
    previous: Option<&str>,
) -> Result<String, Abort> {
    if h.ns != ns::STREAM && h.ns != ns::FRAMING {
        return Err(Abort::Close(Some("invalid-namespace")));
    }
    if h.ns == ns::STREAM && h.default_ns.as_deref() != Some(ns::CLIENT) {
        return Err(Abort::Close(Some("invalid-namespace")));
    }
    match h.version.as_deref() {
        Some(v) if v.split('.').next().and_then(|m| m.parse::<u32>().ok()) >= Some(1) => {}
        _ => return Err(Abort::Close(Some("unsupported-version"))),
    }
    let to =
        h.to.as_deref()
            .and_then(|t| jid::BareJid::new(t).ok())
            .filter(|j| j.node().is_none())
            .map(|j| j.as_str().to_owned());
    match to {
        Some(to) if server.config.is_local_host(&to) => {
            if previous.is_some_and(|p| p != to) {
                return Err(Abort::Close(Some("host-unknown")));
            }
            Ok(to)
        }
        _ => Err(Abort::Close(Some("host-unknown"))),
    }
}

async fn send<T: Transport>(t: &mut T, xml: &[u8]) -> Result<(), Abort> {
    t.send(xml).await.map_err(|_| Abort::Close(None))
}

async fn next_element<T: Transport>(t: &mut T) -> Result<Element, Abort> {
    match t.recv().await {
        Event::Frame(Frame::Stanza(el)) => Ok(el),
        Event::Frame(Frame::Close) | Event::Gone => Err(Abort::Close(None)),
        Event::Frame(Frame::Open(_)) => Err(Abort::Close(Some("invalid-xml"))),
        Event::Error(e) => Err(Abort::Close(Some(e.condition()))),
    }
}

enum PreAuth {
    StartTls,
    Authenticated { user: String, anonymous: bool },
}

async fn pre_auth<T: Transport>(
    server: &Server,
    t: &mut T,
    policy: &StreamPolicy,
    host: &str,
    peer: std::net::IpAddr,
) -> Result<PreAuth, Abort> {
    // An invitation this stream presented (XEP-0445): it allows the
    // registration that follows.
    let mut invite: Option<modules::invites::Accepted> = None;
    loop {
        let el = next_element(t).await?;
        if el.is("starttls", ns::TLS) {
            if !policy.starttls_available {
                send(t, b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await?;
                return Err(Abort::Close(None));
            }
            send(t, b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await?;
            return Ok(PreAuth::StartTls);
        }
        if el.is("auth", ns::SASL) {
            if policy.starttls_available && !policy.may_authenticate() {
                return Err(Abort::Close(Some("policy-violation")));
            }
            if server.auth_limiter.blocked(peer) {
                metrics::counter!("conclave_logins_total", "result" => "throttled").increment(1);
                send(t, b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><temporary-auth-failure/><text>Too many failed logins from this address; try again later.</text></failure>").await?;
                continue;
            }
            if let Some(user) = sasl(server, t, policy, host, peer, &el).await? {
                return Ok(PreAuth::Authenticated {
                    anonymous: user.is_none(),
                    user: user.unwrap_or_else(random_id),
                });
            }
            continue;
        }
        let payload = stanza::iq_payload(&el).filter(|_| el.is("iq", ns::CLIENT));
        if policy.may_authenticate()
            && !policy.anonymous_host
            && payload.is_some_and(|p| p.is("preauth", xmpp_core::invite::NS_PARS))
        {
            let (reply, accepted) = modules::invites::preauth(server, host, peer, &el).await;
            if accepted.is_some() {
                invite = accepted;
            }
            send(t, &stanza::to_bytes(&reply)).await?;
            continue;
        }
        if policy.may_authenticate()
            && !policy.anonymous_host
            && payload.is_some_and(|p| p.is("query", ns::REGISTER))
        {
            let reply = modules::register::before_auth(
                server,
                host,
                &el,
                policy.registration,
                invite.as_ref(),
            )
            .await;
            send(t, &stanza::to_bytes(&reply)).await?;
            continue;
        }
        // RFC 6120 §6.4.1: nothing but negotiation before authentication.
        return Err(Abort::Close(Some("not-authorized")));
    }
}

/// Runs one SASL exchange. `Ok(Some(Some(user)))` authenticated a user,
/// `Ok(Some(None))` an anonymous guest, `Ok(None)` failed (retry allowed).
async fn sasl<T: Transport>(
    server: &Server,
    t: &mut T,
    policy: &StreamPolicy,
    host: &str,
    peer: std::net::IpAddr,
    auth: &Element,
) -> Result<Option<Option<String>>, Abort> {
    let (mut ex, mut step) = SaslExchange::begin(auth, policy, t.channel_binding());
    loop {
        match step {
            SaslStep::Send(xml) => {
                send(t, xml.as_bytes()).await?;
                let el = next_element(t).await?;
                step = match ex.as_mut() {
                    Some(ex) => ex.step(&el),
                    None => return Err(Abort::Close(Some("not-authorized"))),
                };
            }
            SaslStep::LookupScram { username, hash } => {
                let creds = load_keys(server, host, &username, hash).await;
                step = match ex.as_mut() {
                    Some(ex) => ex.credentials(creds),
                    None => return Err(Abort::Close(Some("not-authorized"))),
                };
            }
            SaslStep::CheckPlain { username, password } => {
                let creds = load_keys(server, host, &username, ScramHash::Sha256).await;
                let ok = match creds {
                    // PBKDF2 takes milliseconds: keep it off the reactor.
                    Some(c) => tokio::task::spawn_blocking(move || c.verify_password(&password))
                        .await
                        .unwrap_or(false),
                    None => false,
                };
                step = match ex.as_mut() {
                    Some(ex) => ex.plain_checked(ok),
                    None => return Err(Abort::Close(Some("not-authorized"))),
                };
            }
            SaslStep::Success { username, xml } => {
                let user = match username {
                    Some(u) => match nodeprep(&u, host) {
                        Some(u) => Some(u),
                        None => return Err(Abort::Close(Some("not-authorized"))),
                    },
                    None => None,
                };
                send(t, xml.as_bytes()).await?;
                metrics::counter!("conclave_logins_total", "result" => "ok").increment(1);
                return Ok(Some(user));
            }
            SaslStep::Failure { error, xml } => {
                if error == xmpp_core::sasl::SaslError::NotAuthorized {
                    server.auth_limiter.failed(peer);
                }
                metrics::counter!("conclave_logins_total", "result" => "failed").increment(1);
                tracing::info!(%peer, condition = error.condition(), "authentication failed");
                send(t, xml.as_bytes()).await?;
                return Ok(None);
            }
        }
    }
}

/// The canonical localpart, or `None` if the name cannot be one.
pub fn nodeprep(user: &str, host: &str) -> Option<String> {
    let j = jid::BareJid::new(&format!("{user}@{host}")).ok()?;
    Some(j.node()?.as_str().to_owned())
}

async fn load_keys(
    server: &Server,
    host: &str,
    username: &str,
    hash: ScramHash,
) -> Option<ScramCredentials> {
    let user = nodeprep(username, host)?;
    let rec = server
        .store
        .scram_keys(host, &user, hash.name())
        .await
        .ok()??;
    Some(ScramCredentials {
        hash,
        salt: rec.salt,
        iterations: rec.iterations,
        stored_key: rec.stored_key,
        server_key: rec.server_key,
    })
}

async fn bind_phase<T: Transport>(
    server: &Server,
    t: &mut T,
    user: String,
    host: String,
    anonymous: bool,
) -> Result<Outcome, Abort> {
    loop {
        let el = next_element(t).await?;
        if el.is("resume", xmpp_core::ns::SM) {
            let bare = format!("{user}@{host}");
            let who = if anonymous {
                resumption::Claimant::GuestOn(&host)
            } else {
                resumption::Claimant::Account(&bare)
            };
            match Box::pin(resumption::claim(server, who, &el)).await {
                Ok(d) => return Ok(Outcome::Resume(Box::new(d))),
                // XEP-0198 §5: the client may still bind a new session.
                Err(failed) => send(t, failed.as_bytes()).await?,
            }
            continue;
        }
        if !el.is("iq", ns::CLIENT) {
            return Err(Abort::Close(Some("not-authorized")));
        }
        let payload = stanza::iq_payload(&el);
        if payload.is_some_and(|p| p.is("bind", ns::BIND)) {
            match bind_request(&el) {
                Ok(resource) => {
                    return Ok(Outcome::Bind(Negotiated {
                        user,
                        host,
                        anonymous,
                        resource,
                        bind_iq: el,
                    }));
                }
                Err(cond) => {
                    send(t, &stanza::to_bytes(&stanza::error_reply(&el, cond, None))).await?;
                }
            }
            continue;
        }
        if payload.is_some_and(|p| p.is("session", ns::SESSION)) {
            send(t, &stanza::to_bytes(&stanza::iq_result(&el))).await?;
            continue;
        }
        // A stanza before bind: RFC 6120 §7.1.
        return Err(Abort::Close(Some("not-authorized")));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nodeprep_folds_case_and_refuses_junk() {
        assert_eq!(
            super::nodeprep("Alice", "localhost").as_deref(),
            Some("alice")
        );
        assert_eq!(super::nodeprep("a@b", "localhost"), None);
        assert_eq!(super::nodeprep("", "localhost"), None);
    }
}
