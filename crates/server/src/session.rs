//! One client connection from first byte to last: negotiation (TLS, SASL,
//! bind) under a deadline, then the bound session. Stanzas from the client
//! are handled in order, one at a time, so a reply to a later stanza (a
//! ping, say) acknowledges every earlier one; everything sent to the client
//! goes through one queue that a writer task drains in batches.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use minidom::Element;
use tokio::sync::{Notify, mpsc};
use xmpp_core::framing::{Frame, StreamHeader};
use xmpp_core::ns;
use xmpp_core::sasl::{ScramCredentials, ScramHash};
use xmpp_core::stanza;
use xmpp_core::stream::{SaslExchange, SaslStep, StreamPolicy, bind_request, bind_result};

use crate::hub::{Server, Session};
use crate::modules;
use crate::router::{Outbound, PresenceState, SessionHandle};
use crate::transport::{Event, FrameReader, FrameWriter, Transport};

/// Why negotiation ended without a session.
enum Abort {
    /// Close with this stream error (or none: the peer closed or left).
    Close(Option<&'static str>),
}

struct Negotiated {
    user: String,
    host: String,
    anonymous: bool,
    resource: Option<String>,
    bind_iq: Element,
}

pub fn run<T: Transport>(server: Arc<Server>, t: T) -> impl Future<Output = ()> + Send {
    // Setup and teardown are boxed and freed once done: what stays
    // resident for an idle session is only the read loop's small state.
    // (Not an `async fn`: its arguments, the whole transport, would stay
    // in the future for the session's life.)
    let setup = Box::pin(establish(server.clone(), t));
    async move {
        let Some((session, reader, writer, closed)) = setup.await else {
            return;
        };
        read_loop(&server, &session, reader, &closed, Peer::Client).await;
        Box::pin(finish(&server, session, writer)).await;
    }
}

type Established<R> = (Session, R, tokio::task::JoinHandle<()>, Arc<Notify>);

async fn establish<T: Transport>(server: Arc<Server>, mut t: T) -> Option<Established<T::Reader>> {
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
        Ok(Ok(n)) => n,
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
    let (tx, rx) = mpsc::channel(server.config.limits.session_queue);
    let handle = Arc::new(SessionHandle {
        id: server.router.next_id(),
        full: full.clone(),
        bare,
        tx,
        state: std::sync::Mutex::new(PresenceState::default()),
        inactive: Default::default(),
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
    let (reader, writer) = t.split();
    let closed = Arc::new(Notify::new());
    let writer = tokio::spawn(write_loop(
        writer,
        rx,
        closed.clone(),
        session.handle.full.clone(),
        session.handle.inactive.clone(),
    ));
    Some((session, reader, writer, closed))
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
    mut reader: R,
    closed: &Notify,
    peer: Peer,
) {
    let handle = &session.handle;
    // XEP-0198 acknowledgements: stanzas handled since <enable/>. Handling
    // is in order and its writes are committed first, so <a h='n'/> means
    // the first n are done and durable. (No resumption yet.)
    let mut sm: Option<u32> = None;
    loop {
        let ev = tokio::select! {
            ev = reader.recv() => ev,
            _ = closed.notified() => break,
        };
        match ev {
            Event::Frame(Frame::Stanza(el)) if peer == Peer::Component => {
                let el = xmpp_core::component::to_client_ns(el);
                if let Err(cond) = Box::pin(server.handle_component_stanza(session, el)).await {
                    handle.close(Some(cond));
                    break;
                }
            }
            Event::Frame(Frame::Stanza(el))
                if el.ns() == xmpp_core::ns::SM && peer != Peer::Component =>
            {
                let reply = match (el.name(), sm) {
                    ("enable", None) => {
                        sm = Some(0);
                        "<enabled xmlns='urn:xmpp:sm:3'/>".to_owned()
                    }
                    ("enable", Some(_)) => {
                        "<failed xmlns='urn:xmpp:sm:3'><unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
                            .to_owned()
                    }
                    ("r", Some(h)) => format!("<a xmlns='urn:xmpp:sm:3' h='{h}'/>"),
                    // Acks of what the server sent: it keeps no resend queue.
                    ("a", Some(_)) => continue,
                    _ => {
                        handle.close(Some("unsupported-stanza-type"));
                        break;
                    }
                };
                handle.send(bytes::Bytes::from(reply));
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
                if let Err(cond) = Box::pin(server.handle_stanza(session, el)).await {
                    handle.close(Some(cond));
                    break;
                }
                if let Some(h) = sm.as_mut() {
                    *h = h.wrapping_add(1);
                }
            }
            Event::Frame(Frame::Close) => {
                handle.close(None);
                break;
            }
            Event::Frame(Frame::Open(_)) => {
                handle.close(Some("invalid-xml"));
                break;
            }
            Event::Error(e) => {
                handle.close(Some(e.condition()));
                break;
            }
            Event::Gone => break,
        }
    }
}

async fn finish(server: &Server, session: Session, writer: tokio::task::JoinHandle<()>) {
    let handle = session.handle.clone();
    server.router.unbind(&handle);
    server.requests.forget(handle.id);
    modules::presence::went_offline(server, &session).await;
    server
        .rosters
        .evict_if_offline(&server.router, session.bare());
    handle.close(None);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    metrics::gauge!("conclave_sessions").decrement(1.0);
    tracing::info!(session = handle.id, "session ended");
}

/// Deferrable stanzas held for an inactive client before they are sent
/// anyway (XEP-0352 allows holding, not dropping).
const CSI_MAX_HELD: usize = 256;

pub(crate) async fn write_loop<W: FrameWriter>(
    mut w: W,
    mut rx: mpsc::Receiver<Outbound>,
    closed: Arc<Notify>,
    full: String,
    inactive: Arc<std::sync::atomic::AtomicBool>,
) {
    let to_attr = format!(" to='{}'", xmpp_core::stanza::escape(&full));
    let mut held: Vec<bytes::Bytes> = Vec::new();
    let mut close = None;
    'outer: while let Some(mut item) = rx.recv().await {
        loop {
            // Anything that matters goes out after what was held, in order.
            if !held.is_empty() && !matches!(item, Outbound::Deferrable(_)) {
                for b in held.drain(..) {
                    if w.send(&b).await.is_err() {
                        break 'outer;
                    }
                }
            }
            match item {
                Outbound::Stanza(b) => {
                    if w.send(&b).await.is_err() {
                        break 'outer;
                    }
                }
                Outbound::ToSelf(stanza) => {
                    let at = xmpp_core::stanza::name_end(&stanza);
                    if w.send_parts(&[&stanza[..at], to_attr.as_bytes(), &stanza[at..]])
                        .await
                        .is_err()
                    {
                        break 'outer;
                    }
                }
                Outbound::Deferrable(b) => {
                    if inactive.load(std::sync::atomic::Ordering::Relaxed)
                        && held.len() < CSI_MAX_HELD
                    {
                        held.push(b);
                    } else {
                        for h in held.drain(..) {
                            if w.send(&h).await.is_err() {
                                break 'outer;
                            }
                        }
                        if w.send(&b).await.is_err() {
                            break 'outer;
                        }
                    }
                }
                Outbound::Flush => {}
                Outbound::Close(c) => {
                    close = Some(c);
                    break 'outer;
                }
            }
            match rx.try_recv() {
                Ok(next) => item = next,
                Err(_) => break,
            }
        }
        if w.flush().await.is_err() {
            break;
        }
    }
    let _ = w.flush().await;
    w.close(close.flatten()).await;
    closed.notify_one();
}

pub fn random_id() -> String {
    let mut b = [0u8; 8];
    // Resource and stream ids only need to be unique, not secret; a
    // failing RNG still yields distinct ids from the clock.
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        b = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0))
        .to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn negotiate<T: Transport>(server: &Server, t: &mut T) -> Result<Negotiated, Abort> {
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
            caps: Some(server.caps_element()),
        };
        if let Some((user, anonymous)) = &authed {
            send(t, policy.features_after_auth().as_bytes()).await?;
            return bind_phase(t, user.clone(), h, *anonymous).await;
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
        if el.is("iq", ns::CLIENT)
            && policy.registration
            && policy.may_authenticate()
            && stanza::iq_payload(&el).is_some_and(|p| p.is("query", ns::REGISTER))
        {
            let reply = modules::register::before_auth(server, host, &el).await;
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
    t: &mut T,
    user: String,
    host: String,
    anonymous: bool,
) -> Result<Negotiated, Abort> {
    loop {
        let el = next_element(t).await?;
        if el.is("resume", xmpp_core::ns::SM) {
            // No session is kept after a connection ends: the client binds
            // anew (XEP-0198 §5).
            send(
                t,
                b"<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>",
            )
            .await?;
            continue;
        }
        if !el.is("iq", ns::CLIENT) {
            return Err(Abort::Close(Some("not-authorized")));
        }
        let payload = stanza::iq_payload(&el);
        if payload.is_some_and(|p| p.is("bind", ns::BIND)) {
            match bind_request(&el) {
                Ok(resource) => {
                    return Ok(Negotiated {
                        user,
                        host,
                        anonymous,
                        resource,
                        bind_iq: el,
                    });
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
