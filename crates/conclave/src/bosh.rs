//! XEP-0124/0206: XMPP over BOSH. Each BOSH session feeds a normal client
//! session through channels: requests push the stanzas they carry, and a
//! held request returns as soon as the session has something to send (or
//! after `wait` seconds with an empty body).
//!
//! Requests are taken in the order of their `rid` (XEP-0124 §14), within
//! a window of `REQUESTS` ahead of the next expected one; a request from
//! beyond it ends the session with `item-not-found`, and a repeated one
//! gets the answer it had. Each session holds a slot of the per-address
//! limit while it lives.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use conclave_server::Server;
use conclave_server::limits::ConnLimiter;
use conclave_server::limits::Throttle;
use conclave_server::transport::{ConnInfo, Event, FrameReader, FrameWriter, Transport};
use tokio::sync::{Notify, mpsc};
use xmpp_core::framing::{Frame, FramingError, StreamHeader, parse_element_within};
use xmpp_core::sasl::ChannelBinding;
use xmpp_core::{Element, ns, stanza};

#[derive(Default)]
struct Out {
    items: Vec<Bytes>,
    /// The session ended; `Some(condition)` for a stream error.
    terminated: Option<Option<String>>,
    from: String,
    id: String,
}

/// Requests a client may have open at once: the `requests` the session
/// creation response announces, and so the width of the rid window.
const REQUESTS: u64 = 2;

/// XEP-0124 §14.1–14.3: which request a session takes next, and the
/// answers to the latest ones, for a client that repeats a request whose
/// answer it lost.
#[derive(Debug)]
struct Rids {
    /// No answer is kept for this rid or any before it: the session
    /// creation request's, then the answers pushed out of `answers`.
    forgotten: u64,
    /// The rid the next request in order carries.
    next: u64,
    /// Request `next` is being taken: its payloads are being handed on.
    taking: bool,
    /// Answers to the latest requests, oldest first; at most `REQUESTS`.
    answers: VecDeque<(u64, Bytes)>,
}

/// What to do with a request, by its rid.
#[derive(Debug, PartialEq, Eq)]
enum Turn {
    /// Its turn: take it.
    Now,
    /// Within the window, but an earlier request (or another copy of
    /// this one) has not been taken yet.
    Later,
    /// A repeat whose answer is kept: send it again.
    Replay(Bytes),
    /// A repeat of a request still being answered.
    Pending,
    /// Beyond the window, or a repeat whose answer is gone: the session
    /// ends with `item-not-found`.
    Lost,
}

impl Rids {
    /// After the session creation request `rid`.
    fn new(rid: u64) -> Self {
        Rids {
            forgotten: rid,
            next: rid.saturating_add(1),
            taking: false,
            answers: VecDeque::new(),
        }
    }

    fn turn(&self, rid: u64) -> Turn {
        if rid >= self.next {
            return if rid - self.next >= REQUESTS {
                Turn::Lost
            } else if rid == self.next && !self.taking {
                Turn::Now
            } else {
                Turn::Later
            };
        }
        if let Some((_, a)) = self.answers.iter().find(|(r, _)| *r == rid) {
            return Turn::Replay(a.clone());
        }
        // Taken but not answered yet.
        if rid > self.forgotten {
            Turn::Pending
        } else {
            Turn::Lost
        }
    }

    /// Request `rid`'s turn, claimed if it is `Now`: until `taken`, a
    /// copy of it waits.
    fn claim(&mut self, rid: u64) -> Turn {
        let turn = self.turn(rid);
        if turn == Turn::Now {
            self.taking = true;
        }
        turn
    }

    /// Request `rid`, claimed, is given up before it was taken.
    fn unclaim(&mut self, rid: u64) {
        if rid == self.next {
            self.taking = false;
        }
    }

    /// Request `rid`, claimed, was taken (its payloads handed on).
    fn taken(&mut self, rid: u64) {
        if rid == self.next {
            self.next = rid.saturating_add(1);
            self.taking = false;
        }
    }

    /// Request `rid` was answered with `body`.
    fn answered(&mut self, rid: u64, body: Bytes) {
        self.answers.push_back((rid, body));
        self.answers.make_contiguous().sort_by_key(|(r, _)| *r);
        while self.answers.len() as u64 > REQUESTS {
            if let Some((r, _)) = self.answers.pop_front() {
                self.forgotten = self.forgotten.max(r);
            }
        }
    }
}

struct BoshSession {
    inbox: mpsc::Sender<Event>,
    out: Mutex<Out>,
    ready: Notify,
    rids: Mutex<Rids>,
    /// Woken when `rids` changes: a request was taken or answered.
    rid_moved: Notify,
    wait: u64,
    last_seen: Mutex<Instant>,
    peer: IpAddr,
    /// `limits.rate_*`: a request over the rate is taken later.
    throttle: Mutex<Throttle>,
}

pub struct Bosh {
    sessions: Mutex<HashMap<String, Arc<BoshSession>>>,
    /// The per-address limit the client ports share.
    limiter: ConnLimiter,
}

fn body(attrs: &str, inner: &[u8]) -> Vec<u8> {
    let mut v = format!("<body xmlns='{}'{attrs}>", ns::BOSH).into_bytes();
    v.extend_from_slice(inner);
    v.extend_from_slice(b"</body>");
    v
}

/// The `sid` of a body that could not be parsed whole, from its start tag
/// alone.
fn sid_of(data: &[u8]) -> Option<String> {
    let end = data.iter().position(|&b| b == b'>')?;
    let head = &data[..=end];
    let tag = if head.ends_with(b"/>") {
        head.to_vec()
    } else {
        [&head[..end], b"/>".as_slice()].concat()
    };
    let el = parse_element_within(&tag, tag.len(), 1).ok()?;
    el.attr("sid").map(str::to_owned)
}

fn terminate(condition: &str) -> Vec<u8> {
    format!(
        "<body xmlns='{}' type='terminate' condition='{condition}'/>",
        ns::BOSH
    )
    .into_bytes()
}

/// A body's `rid`: required, a positive integer (XEP-0124 §7.1).
fn rid(b: &Element) -> Option<u64> {
    b.attr("rid").and_then(|r| r.parse::<u64>().ok())
}

impl Bosh {
    pub fn new(limiter: ConnLimiter) -> Self {
        Bosh {
            sessions: Mutex::default(),
            limiter,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<BoshSession>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handles one HTTP POST; returns the response body.
    pub async fn request(
        self: &Arc<Self>,
        server: &Arc<Server>,
        peer: IpAddr,
        data: &[u8],
    ) -> Bytes {
        let max = server.config.limits.max_stanza_bytes;
        // A body wraps the stanzas: one level more than a stanza may have.
        let depth = server.config.limits.max_depth + 1;
        let b = match parse_element_within(data, max.saturating_mul(2), depth) {
            Ok(b) => b,
            Err(FramingError::PolicyViolation) => {
                // The session the body belongs to ends as a TCP stream
                // would, with the same condition.
                if let Some(s) = sid_of(data).and_then(|sid| self.lock().remove(&sid)) {
                    let _ = s
                        .inbox
                        .send(Event::Error(FramingError::PolicyViolation))
                        .await;
                }
                return terminate("policy-violation").into();
            }
            Err(_) => return terminate("bad-request").into(),
        };
        if !b.is("body", ns::BOSH) {
            return terminate("bad-request").into();
        }
        match b.attr("sid") {
            None => self.create(server, peer, &b).await.into(),
            Some(sid) => {
                let s = self.lock().get(sid).cloned();
                match s {
                    Some(s) => {
                        let pause = s
                            .throttle
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .charge(data.len());
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                        self.continue_session(sid, &s, &b).await
                    }
                    None => terminate("item-not-found").into(),
                }
            }
        }
    }

    /// Ends a session from outside it: it is forgotten at once, and its
    /// client session is told the connection is gone.
    async fn end(&self, sid: &str, s: &BoshSession) {
        self.lock().remove(sid);
        let _ = s.inbox.send(Event::Gone).await;
    }

    async fn create(self: &Arc<Self>, server: &Arc<Server>, peer: IpAddr, b: &Element) -> Vec<u8> {
        let Some(rid) = rid(b) else {
            return terminate("bad-request");
        };
        // The session's slot in the per-address limit, held until it ends.
        let Some(guard) = self
            .limiter
            .acquire(peer, server.config.limits.max_connections_per_ip)
        else {
            tracing::info!(%peer, "too many sessions from this address (bosh)");
            return terminate("policy-violation");
        };
        let cfg = &server.config.http;
        let wait = b
            .attr("wait")
            .and_then(|w| w.parse::<u64>().ok())
            .unwrap_or(cfg.bosh_max_wait_secs)
            .min(cfg.bosh_max_wait_secs);
        let (tx, rx) = mpsc::channel(256);
        let sid = conclave_server::session::random_id() + &conclave_server::session::random_id();
        let s = Arc::new(BoshSession {
            inbox: tx,
            out: Mutex::new(Out::default()),
            ready: Notify::new(),
            rids: Mutex::new(Rids::new(rid)),
            rid_moved: Notify::new(),
            wait,
            last_seen: Mutex::new(Instant::now()),
            peer,
            throttle: Mutex::new(Throttle::new(&server.config.limits, &server.rates, peer)),
        });
        self.lock().insert(sid.clone(), s.clone());
        let transport = BoshTransport { s: s.clone(), rx };
        let server2 = server.clone();
        let me = self.clone();
        let sid2 = sid.clone();
        tokio::spawn(async move {
            let _guard = guard;
            conclave_server::session::run(server2, transport).await;
            me.lock().remove(&sid2);
        });
        self.spawn_reaper(sid.clone(), s.clone(), cfg.bosh_inactivity_secs);
        let _ = s.inbox.send(open_event(b)).await;
        let inner = s.collect().await;
        let (from, id) = {
            let o = s.out.lock().unwrap_or_else(|e| e.into_inner());
            (o.from.clone(), o.id.clone())
        };
        let attrs = format!(
            " sid='{sid}' wait='{wait}' requests='2' hold='1' inactivity='{}' polling='1' ver='1.11' from='{}' authid='{}' xmlns:xmpp='{}' xmpp:version='1.0' xmpp:restartlogic='true' xmlns:stream='{}'",
            cfg.bosh_inactivity_secs,
            stanza::escape(&from),
            stanza::escape(&id),
            ns::XBOSH,
            ns::STREAM
        );
        match inner {
            Ok(inner) => body(&attrs, &inner),
            Err(t) => t,
        }
    }

    fn spawn_reaper(self: &Arc<Self>, sid: String, s: Arc<BoshSession>, inactivity: u64) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if !me.lock().contains_key(&sid) {
                    return;
                }
                let idle = s.last_seen.lock().map(|t| t.elapsed()).unwrap_or_default();
                if idle > Duration::from_secs(inactivity + s.wait) {
                    let _ = s.inbox.send(Event::Gone).await;
                    me.lock().remove(&sid);
                    return;
                }
            }
        });
    }

    async fn continue_session(&self, sid: &str, s: &Arc<BoshSession>, b: &Element) -> Bytes {
        let Some(rid) = rid(b) else {
            self.end(sid, s).await;
            return terminate("bad-request").into();
        };
        let mut claim = match s.await_turn(rid).await {
            Turn::Now => Claim {
                s,
                rid,
                state: ClaimState::Taking,
            },
            Turn::Replay(answer) => return answer,
            Turn::Later | Turn::Pending | Turn::Lost => {
                tracing::debug!(rid, "bosh request out of the rid window");
                self.end(sid, s).await;
                return terminate("item-not-found").into();
            }
        };
        if let Ok(mut t) = s.last_seen.lock() {
            *t = Instant::now();
        }
        // A new request releases the one being held (hold = 1).
        s.ready.notify_waiters();
        if b.attr("type") == Some("terminate") {
            for c in b.children() {
                let _ = s.inbox.send(Event::Frame(Frame::Stanza(c.clone()))).await;
            }
            let _ = s.inbox.send(Event::Frame(Frame::Close)).await;
            self.lock().remove(sid);
            claim.taken();
            claim.state = ClaimState::Done;
            return format!("<body xmlns='{}' type='terminate'/>", ns::BOSH)
                .into_bytes()
                .into();
        }
        let restart = b
            .attrs()
            .iter()
            .any(|((_, name), v)| name.as_str() == "restart" && v == "true");
        if restart {
            let _ = s.inbox.send(open_event(b)).await;
        }
        for c in b.children() {
            if s.inbox
                .send(Event::Frame(Frame::Stanza(c.clone())))
                .await
                .is_err()
            {
                claim.taken();
                claim.state = ClaimState::Done;
                return terminate("remote-connection-failed").into();
            }
        }
        // Its payloads are handed on: the next request may go.
        claim.taken();
        match s.collect().await {
            Ok(inner) => {
                let answer = Bytes::from(body("", &inner));
                claim.state = ClaimState::Done;
                s.answered(rid, answer.clone());
                answer
            }
            Err(t) => {
                claim.state = ClaimState::Done;
                t.into()
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimState {
    /// Its payloads are being handed on.
    Taking,
    /// Taken; its answer is being waited for.
    Held,
    /// Answered (or the session is over).
    Done,
}

/// A request whose turn it is, through to its answer. Its future is
/// dropped if its HTTP connection closes, and then this keeps the session
/// going: a request dropped before its payloads were all handed on gives
/// its turn back (a repeat is taken afresh); one dropped while held counts
/// as answered with an empty body, since nothing was taken from the
/// session for it, and a repeat gets that.
struct Claim<'a> {
    s: &'a BoshSession,
    rid: u64,
    state: ClaimState,
}

impl Claim<'_> {
    fn taken(&mut self) {
        self.s.taken(self.rid);
        self.state = ClaimState::Held;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        match self.state {
            ClaimState::Taking => {
                self.s.rids().unclaim(self.rid);
                self.s.rid_moved.notify_waiters();
            }
            ClaimState::Held => self.s.answered(self.rid, Bytes::from(body("", b""))),
            ClaimState::Done => {}
        }
    }
}

fn open_event(b: &Element) -> Event {
    Event::Frame(Frame::Open(StreamHeader {
        to: b.attr("to").map(str::to_owned),
        from: None,
        id: None,
        version: Some("1.0".into()),
        lang: None,
        ns: ns::STREAM.into(),
        default_ns: Some(ns::CLIENT.into()),
    }))
}

impl BoshSession {
    fn rids(&self) -> std::sync::MutexGuard<'_, Rids> {
        self.rids.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (up to `wait` seconds) until request `rid` may be taken, and
    /// claims it, or until the answer it repeats is ready. `Later` or
    /// `Pending` after the wait: the request it waited for never came. A
    /// request claimed (`Now`) must be `taken`.
    async fn await_turn(&self, rid: u64) -> Turn {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.wait);
        loop {
            let moved = self.rid_moved.notified();
            let turn = self.rids().claim(rid);
            match turn {
                Turn::Later => {}
                // The client gave up on the request it repeats: answer
                // that one now, so that its answer can be sent again.
                Turn::Pending => self.ready.notify_waiters(),
                _ => return turn,
            }
            if tokio::time::timeout_at(deadline, moved).await.is_err() {
                return self.rids().claim(rid);
            }
        }
    }

    fn taken(&self, rid: u64) {
        self.rids().taken(rid);
        self.rid_moved.notify_waiters();
    }

    fn answered(&self, rid: u64, answer: Bytes) {
        self.rids().answered(rid, answer);
        self.rid_moved.notify_waiters();
    }

    /// Waits up to `wait` seconds for output, then takes all of it.
    async fn collect(&self) -> Result<Vec<u8>, Vec<u8>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.wait);
        loop {
            let notified = self.ready.notified();
            {
                let mut o = self.out.lock().unwrap_or_else(|e| e.into_inner());
                if !o.items.is_empty() {
                    // Give a burst a moment to gather into one response.
                    let mut v = Vec::new();
                    for i in o.items.drain(..) {
                        v.extend_from_slice(&i);
                    }
                    return Ok(v);
                }
                if let Some(t) = &o.terminated {
                    return Err(match t {
                        Some(c) => {
                            let mut v = format!(
                                "<body xmlns='{}' type='terminate' condition='remote-stream-error' xmlns:stream='{}'>",
                                ns::BOSH,
                                ns::STREAM
                            )
                            .into_bytes();
                            v.extend_from_slice(stanza::stream_error(c, None).as_bytes());
                            v.extend_from_slice(b"</body>");
                            v
                        }
                        None => {
                            format!("<body xmlns='{}' type='terminate'/>", ns::BOSH).into_bytes()
                        }
                    });
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
            // Woken by a newer request with nothing to send: answer empty.
            let o = self.out.lock().unwrap_or_else(|e| e.into_inner());
            if o.items.is_empty() && o.terminated.is_none() {
                return Ok(Vec::new());
            }
        }
    }

    fn push(&self, xml: Bytes) {
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .items
            .push(xml);
        self.ready.notify_waiters();
    }

    fn end(&self, condition: Option<&str>) {
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .terminated = Some(condition.map(str::to_owned));
        self.ready.notify_waiters();
    }
}

pub struct BoshTransport {
    s: Arc<BoshSession>,
    rx: mpsc::Receiver<Event>,
}

impl Transport for BoshTransport {
    type Reader = BoshReader;
    type Writer = BoshWriter;

    fn info(&self) -> ConnInfo {
        ConnInfo {
            peer: self.s.peer,
            secure: true,
            starttls_available: false,
            kind: "bosh",
        }
    }

    async fn recv(&mut self) -> Event {
        self.rx.recv().await.unwrap_or(Event::Gone)
    }

    async fn send_header(&mut self, from: &str, id: &str) -> io::Result<()> {
        let mut o = self.s.out.lock().unwrap_or_else(|e| e.into_inner());
        o.from = from.to_owned();
        o.id = id.to_owned();
        Ok(())
    }

    async fn send(&mut self, xml: &[u8]) -> io::Result<()> {
        self.s.push(Bytes::copy_from_slice(xml));
        Ok(())
    }

    async fn starttls(&mut self) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn restart(&mut self) {}

    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::None
    }

    async fn close(self, condition: Option<&str>) {
        self.s.end(condition);
    }

    fn split(self) -> (BoshReader, BoshWriter) {
        (BoshReader { rx: self.rx }, BoshWriter { s: self.s })
    }
}

pub struct BoshReader {
    rx: mpsc::Receiver<Event>,
}

impl FrameReader for BoshReader {
    async fn recv(&mut self) -> Event {
        self.rx.recv().await.unwrap_or(Event::Gone)
    }
}

pub struct BoshWriter {
    s: Arc<BoshSession>,
}

impl FrameWriter for BoshWriter {
    async fn send(&mut self, xml: &[u8]) -> io::Result<()> {
        self.s.push(Bytes::copy_from_slice(xml));
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    async fn close(self, condition: Option<&str>) {
        self.s.end(condition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rids_in_order_within_the_window() {
        let mut r = Rids::new(100);
        assert_eq!(r.turn(101), Turn::Now);
        assert_eq!(r.turn(102), Turn::Later);
        assert_eq!(r.turn(103), Turn::Lost);
        assert_eq!(r.turn(1101), Turn::Lost);
        assert_eq!(r.turn(u64::MAX), Turn::Lost);
        assert_eq!(r.claim(101), Turn::Now);
        // A second copy while the first is being taken waits for it.
        assert_eq!(r.claim(101), Turn::Later);
        assert_eq!(r.claim(102), Turn::Later);
        // Given up before it was taken: a copy takes it afresh.
        r.unclaim(101);
        assert_eq!(r.claim(101), Turn::Now);
        r.taken(101);
        assert_eq!(r.turn(102), Turn::Now);
        assert_eq!(r.turn(103), Turn::Later);
        // Taken but not answered: a repeat waits for the answer.
        assert_eq!(r.turn(101), Turn::Pending);
        // The creation request is not kept.
        assert_eq!(r.turn(100), Turn::Lost);
    }

    #[test]
    fn repeats_get_the_kept_answers() {
        let mut r = Rids::new(1);
        for rid in 2..=5 {
            r.taken(rid);
        }
        // Answered out of order (a held request answers late).
        r.answered(3, Bytes::from_static(b"three"));
        r.answered(2, Bytes::from_static(b"two"));
        assert_eq!(r.turn(2), Turn::Replay(Bytes::from_static(b"two")));
        r.answered(4, Bytes::from_static(b"four"));
        r.answered(5, Bytes::from_static(b"five"));
        // Only the latest REQUESTS answers are kept.
        assert_eq!(r.turn(5), Turn::Replay(Bytes::from_static(b"five")));
        assert_eq!(r.turn(4), Turn::Replay(Bytes::from_static(b"four")));
        assert_eq!(r.turn(3), Turn::Lost);
        assert_eq!(r.turn(2), Turn::Lost);
        assert_eq!(r.turn(6), Turn::Now);
    }

    #[test]
    fn a_held_request_answered_after_a_later_one_is_still_pending() {
        let mut r = Rids::new(1);
        r.taken(2);
        r.taken(3);
        r.answered(3, Bytes::from_static(b"three"));
        assert_eq!(r.turn(2), Turn::Pending);
        r.answered(2, Bytes::from_static(b"two"));
        assert_eq!(r.turn(2), Turn::Replay(Bytes::from_static(b"two")));
    }
}
