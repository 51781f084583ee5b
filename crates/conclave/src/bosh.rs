//! XEP-0124/0206: XMPP over BOSH. Each BOSH session feeds a normal client
//! session through channels: requests push the stanzas they carry, and a
//! held request returns as soon as the session has something to send (or
//! after `wait` seconds with an empty body).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use conclave_server::Server;
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

struct BoshSession {
    inbox: mpsc::Sender<Event>,
    out: Mutex<Out>,
    ready: Notify,
    wait: u64,
    last_seen: Mutex<Instant>,
    peer: IpAddr,
}

#[derive(Default)]
pub struct Bosh {
    sessions: Mutex<HashMap<String, Arc<BoshSession>>>,
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

impl Bosh {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<BoshSession>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handles one HTTP POST; returns the response body.
    pub async fn request(
        self: &Arc<Self>,
        server: &Arc<Server>,
        peer: IpAddr,
        data: &[u8],
    ) -> Vec<u8> {
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
                return terminate("policy-violation");
            }
            Err(_) => return terminate("bad-request"),
        };
        if !b.is("body", ns::BOSH) {
            return terminate("bad-request");
        }
        match b.attr("sid") {
            None => self.create(server, peer, &b).await,
            Some(sid) => {
                let s = self.lock().get(sid).cloned();
                match s {
                    Some(s) => self.continue_session(sid, &s, &b).await,
                    None => terminate("item-not-found"),
                }
            }
        }
    }

    async fn create(self: &Arc<Self>, server: &Arc<Server>, peer: IpAddr, b: &Element) -> Vec<u8> {
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
            wait,
            last_seen: Mutex::new(Instant::now()),
            peer,
        });
        self.lock().insert(sid.clone(), s.clone());
        let transport = BoshTransport { s: s.clone(), rx };
        let server2 = server.clone();
        let me = self.clone();
        let sid2 = sid.clone();
        tokio::spawn(async move {
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

    async fn continue_session(&self, sid: &str, s: &Arc<BoshSession>, b: &Element) -> Vec<u8> {
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
            return format!("<body xmlns='{}' type='terminate'/>", ns::BOSH).into_bytes();
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
                return terminate("remote-connection-failed");
            }
        }
        match s.collect().await {
            Ok(inner) => body("", &inner),
            Err(t) => t,
        }
    }
}

fn open_event(b: &Element) -> Event {
    Event::Frame(Frame::Open(StreamHeader {
        to: b.attr("to").map(str::to_owned),
        from: None,
        version: Some("1.0".into()),
        lang: None,
        ns: ns::STREAM.into(),
        default_ns: Some(ns::CLIENT.into()),
    }))
}

impl BoshSession {
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
