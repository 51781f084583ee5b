//! XEP-0114 external components: the configured domains, the one
//! connection each may have, and that connection's life. The handshake
//! itself is `xmpp_core::component`; routing is the hub's.
//!
//! A component's connection is a [`Session`] whose handle is in no router
//! entry: it is reached through its domain's [`Slot`]. Its queue is bounded
//! like a client's, and its writer is the client writer with one change, the
//! root namespace of every stanza (`jabber:client` → the component's).

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use minidom::Element;
use tokio::sync::Notify;
use xmpp_core::component::{self, HANDSHAKE_OK};
use xmpp_core::framing::Frame;

use crate::hub::{Server, Session};
use crate::router::{PresenceState, SessionHandle};
use crate::session::{Peer, StreamMgmt, Writer, random_id, read_loop, spawn_writer};
use crate::transport::{Event, FrameWriter, Transport};

/// A configured component domain and its connection, if one is up.
#[derive(Debug)]
pub struct Slot {
    pub domain: String,
    secret: String,
    conn: RwLock<Option<Arc<SessionHandle>>>,
}

impl Slot {
    pub fn new(domain: String, secret: String) -> Slot {
        Slot {
            domain,
            secret,
            conn: RwLock::new(None),
        }
    }

    pub fn connection(&self) -> Option<Arc<SessionHandle>> {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes `h` the domain's connection; returns the one it replaces.
    fn attach(&self, h: Arc<SessionHandle>) -> Option<Arc<SessionHandle>> {
        self.conn
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .replace(h)
    }

    /// Forgets the connection `id`, unless a newer one has replaced it.
    fn detach(&self, id: u64) {
        let mut c = self.conn.write().unwrap_or_else(|e| e.into_inner());
        if c.as_ref().is_some_and(|h| h.id == id) {
            *c = None;
        }
    }

    /// Sends a stanza to the component as is. Without a connection,
    /// messages and IQ requests bounce with `service-unavailable`.
    pub fn deliver(&self, from: &Session, el: &Element) {
        match self.connection() {
            Some(h) => {
                h.send(xmpp_core::stanza::to_bytes(el));
                metrics::counter!("conclave_stanzas_out_total").increment(1);
            }
            None if el.name() != "presence" => from.bounce(el, "service-unavailable"),
            None => {}
        }
    }
}

/// Why the handshake ended without a component.
type Refusal = Option<&'static str>;

pub fn run<T: Transport>(server: Arc<Server>, t: T) -> impl Future<Output = ()> + Send {
    let setup = Box::pin(establish(server.clone(), t));
    async move {
        let Some((session, slot, mut reader, writer, closed)) = setup.await else {
            return;
        };
        let mut sm = StreamMgmt::new(false);
        read_loop(
            &server,
            &session,
            &mut reader,
            &closed,
            Peer::Component,
            &mut sm,
        )
        .await;
        drop(reader);
        // The rooms it joined as itself see it go.
        crate::modules::presence::went_offline(&server, &session).await;
        slot.detach(session.handle.id);
        session.handle.close(None);
        let _ = writer.join(Duration::from_secs(5)).await;
        metrics::gauge!("conclave_components").decrement(1.0);
        tracing::info!(component = %slot.domain, session = session.handle.id, "component disconnected");
    }
}

type Established<R> = (Session, Arc<Slot>, R, Writer, Arc<Notify>);

async fn establish<T: Transport>(server: Arc<Server>, mut t: T) -> Option<Established<T::Reader>> {
    let limit = Duration::from_secs(server.config.limits.unauthenticated_timeout_secs);
    let mut shutdown = server.shutdown_signal();
    let result = tokio::select! {
        r = tokio::time::timeout(limit, handshake(&server, &mut t)) => r,
        _ = shutdown.changed() => Ok(Err(Some("system-shutdown"))),
    };
    let slot = match result {
        Err(_) => {
            t.close(Some("connection-timeout")).await;
            return None;
        }
        Ok(Err(cond)) => {
            t.close(cond).await;
            return None;
        }
        Ok(Ok(slot)) => slot,
    };
    let (tx, rx) = crate::router::queue();
    let handle = Arc::new(SessionHandle {
        id: server.router.next_id(),
        full: slot.domain.clone(),
        bare: slot.domain.clone(),
        tx,
        state: std::sync::Mutex::new(PresenceState::default()),
        inactive: Default::default(),
        flow: Arc::new(crate::router::Flow::new(server.config.limits.queue())),
    });
    if let Some(old) = slot.attach(handle.clone()) {
        // The newest connection wins, as for a client's resource: a
        // component that restarts need not wait for its old TCP
        // connection to time out.
        old.close(Some("conflict"));
    }
    if server.is_shutting_down() {
        // Shutdown closed every connection before this one was attached.
        handle.close(Some("system-shutdown"));
    }
    metrics::gauge!("conclave_components").increment(1.0);
    tracing::info!(component = %slot.domain, session = handle.id, "component connected");
    let session = Session {
        handle,
        user: String::new(),
        host: slot.domain.clone(),
        anonymous: false,
    };
    let (reader, writer) = t.split();
    let closed = Arc::new(Notify::new());
    let writer = spawn_writer(
        ComponentWriter(writer),
        rx,
        closed.clone(),
        &session.handle,
        Default::default(),
        Vec::new(),
    );
    Some((session, slot, reader, writer, closed))
}

/// XEP-0114 §3: header, ours in reply, then `<handshake/>` either way.
async fn handshake<T: Transport>(server: &Server, t: &mut T) -> Result<Arc<Slot>, Refusal> {
    let peer = t.info().peer;
    let header = match t.recv().await {
        Event::Frame(Frame::Open(h)) => h,
        Event::Frame(Frame::Close) | Event::Gone => return Err(None),
        Event::Frame(Frame::Stanza(_)) => return Err(Some("not-authorized")),
        Event::Error(e) => return Err(Some(e.condition())),
    };
    let id = random_id();
    let asked = component::check_header(&header);
    let from = match &asked {
        Ok(d) => d.clone(),
        Err(_) => server.config.hosts.first().cloned().unwrap_or_default(),
    };
    // Our header goes first, even before a stream error (RFC 6120 §4.9.1.2).
    t.send_header(&from, &id).await.map_err(|_| None)?;
    let domain = asked.map_err(Some)?;
    let Some(slot) = server.component(&domain).cloned() else {
        tracing::info!(%peer, %domain, "component refused: unknown domain");
        return Err(Some("host-unknown"));
    };
    let el = match t.recv().await {
        Event::Frame(Frame::Stanza(el)) => el,
        Event::Frame(Frame::Close) | Event::Gone => return Err(None),
        Event::Frame(Frame::Open(_)) => return Err(Some("invalid-xml")),
        Event::Error(e) => return Err(Some(e.condition())),
    };
    if server.auth_limiter.blocked(peer) {
        metrics::counter!("conclave_component_logins_total", "result" => "throttled").increment(1);
        tracing::info!(%peer, %domain, "component refused: too many failed handshakes");
        return Err(Some("policy-violation"));
    }
    if !component::verify_handshake(&el, &id, &slot.secret) {
        server.auth_limiter.failed(peer);
        metrics::counter!("conclave_component_logins_total", "result" => "failed").increment(1);
        tracing::info!(%peer, %domain, "component refused: wrong handshake");
        return Err(Some("not-authorized"));
    }
    t.send(HANDSHAKE_OK.as_bytes()).await.map_err(|_| None)?;
    metrics::counter!("conclave_component_logins_total", "result" => "ok").increment(1);
    Ok(slot)
}

/// The client writer's output, with each stanza's root namespace turned
/// into the component stream's (what inherits it follows).
struct ComponentWriter<W>(W);

impl<W: FrameWriter> FrameWriter for ComponentWriter<W> {
    async fn send(&mut self, xml: &[u8]) -> std::io::Result<()> {
        match component::client_ns_span(xml) {
            Some((a, b)) => {
                self.0
                    .send_parts(&[&xml[..a], component::NS.as_bytes(), &xml[b..]])
                    .await
            }
            None => self.0.send(xml).await,
        }
    }

    async fn send_parts(&mut self, parts: &[&[u8]]) -> std::io::Result<()> {
        self.send(&parts.concat()).await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().await
    }

    async fn close(self, condition: Option<&str>) {
        self.0.close(condition).await
    }
}
