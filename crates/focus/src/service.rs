//! The focus as a hub service at `focus.<host>`: answers Jitsi's
//! conference request, joins the room as occupant `focus`, and runs a
//! [`Conference`] per room, moving its stanzas through the hub like any
//! session's. The hub knows nothing of this beyond the `Service` seam.
//!
//! Each conference has a session handle of its own (full JID
//! `focus.<host>/focus`, outside the router) whose queue a task drains:
//! that is how MUC presence and occupants' IQs reach the focus.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use conclave_bridge::Bridge;
use conclave_bridge::api::{
    BridgeEvent, EndpointKey, EndpointSources, Expiry, LocalTransport, MediaKind, RemoteTransport,
};
use conclave_server::Server;
use conclave_server::config::MeetingModerators;
use conclave_server::hub::{HandlerFuture, Service, Session};
use conclave_server::router::{Flow, Outbound, PresenceState, SessionHandle};
use jid::Jid;
use minidom::Element;
use xmpp_core::ns;
use xmpp_core::stanza::{self, ElementExt};

use crate::conference::{Conference, Media, NS_MUTE_AUDIO, NS_MUTE_VIDEO};
use crate::jingle::{NS_FOCUS, NS_JINGLE};

pub static SERVICE: Service = Service {
    name: "focus",
    subdomain: "focus",
    identity: ("component", "generic", "Conference focus"),
    host_identity: None,
    features: &[NS_FOCUS],
    info_form: |_| None,
    handle,
    enabled: |c| c.meetings.enabled,
};

/// The focus's nick in every room, which Jitsi clients look for.
const NICK: &str = "focus";

#[derive(Debug, Clone)]
pub struct FocusSettings {
    /// `[meetings] max_sources_per_participant`.
    pub max_sources: usize,
    /// `[meetings] moderators`.
    pub moderators: MeetingModerators,
    /// The hosts whose users have accounts (`hosts`): "authenticated".
    pub hosts: Vec<String>,
}

/// The focus's state, kept by the server (`Server::extension`).
pub struct Focus {
    server: Weak<Server>,
    bridge: Arc<Bridge>,
    settings: FocusSettings,
    conferences: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Running>>>>,
}

struct Running {
    core: Conference,
    session: Session,
    /// Occupants' roles, from their presence.
    roles: HashMap<String, String>,
    moderator_granted: bool,
    ended: bool,
}

struct BridgeMedia<'a>(&'a Bridge);

impl Media for BridgeMedia<'_> {
    fn allocate(&mut self, key: &EndpointKey) -> LocalTransport {
        self.0.allocate(key)
    }
    fn connect(&mut self, key: &EndpointKey, remote: RemoteTransport) {
        self.0.connect(key, remote)
    }
    fn set_sources(&mut self, key: &EndpointKey, sources: EndpointSources) {
        self.0.set_sources(key, sources)
    }
    fn mute(&mut self, key: &EndpointKey, kind: MediaKind, muted: bool) {
        self.0.mute(key, kind, muted)
    }
    fn expire(&mut self, key: &EndpointKey) {
        self.0.expire(key)
    }
    fn restart_ice(&mut self, key: &EndpointKey) -> LocalTransport {
        self.0.restart_ice(key)
    }
}

/// Puts the focus into `server` and starts listening to the bridge.
pub fn install(server: &Arc<Server>, bridge: Arc<Bridge>, settings: FocusSettings) {
    let focus = Arc::new(Focus {
        server: Arc::downgrade(server),
        bridge: bridge.clone(),
        settings,
        conferences: Mutex::new(HashMap::new()),
    });
    server.set_extension(focus.clone());
    let events = bridge.events();
    tokio::spawn(async move {
        while let Ok(e) = events.recv_async().await {
            match e {
                BridgeEvent::EndpointExpired { key, ufrag, reason } => {
                    focus.expired(key, &ufrag, reason).await
                }
            }
        }
    });
}

fn handle<'a>(srv: &'a Server, s: &'a Session, to: Jid, el: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        let Some(focus) = srv.extension::<Focus>() else {
            return s.bounce(&el, "service-unavailable");
        };
        if el.name() != "iq" {
            return;
        }
        match el.get_child("conference", NS_FOCUS) {
            Some(c) if el.attr("type") == Some("set") => {
                let reply = focus.request(srv, &to, &el, c).await;
                s.send(&reply);
            }
            _ => s.bounce(&el, "service-unavailable"),
        }
    })
}

impl Focus {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Running>>>> {
        self.conferences.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The conference request (Jitsi's `moderator.js`): make sure the
    /// focus is in the room, then say so.
    async fn request(
        self: &Arc<Self>,
        srv: &Server,
        to: &Jid,
        iq: &Element,
        c: &Element,
    ) -> Element {
        let room = match c.attr("room").map(Jid::new) {
            Some(Ok(j))
                if j.node().is_some()
                    && j.resource().is_none()
                    && srv
                        .service(j.domain().as_str())
                        .is_some_and(|s| s.name == "muc") =>
            {
                j
            }
            _ => {
                return stanza::error_reply(
                    iq,
                    "bad-request",
                    Some("room must name a room on this server's conference service"),
                );
            }
        };
        let focus_domain = to.domain().as_str().to_owned();
        if let Err(condition) = self.ensure(srv, &focus_domain, room.as_str()).await {
            return stanza::error_reply(iq, condition, None);
        }
        let mut reply = stanza::iq_result(iq);
        reply.set("from", to.as_str());
        let mut conf = Element::bare("conference", NS_FOCUS)
            .with("ready", "true")
            .with("room", room.as_str())
            .with("focusjid", &focus_domain);
        // No `live`: lib-jitsi-meet takes live='false' for "this
        // conference is not live yet" (visitors waiting for a live stream)
        // and gives up with NOT_LIVE_ERROR.
        for (name, value) in [
            ("authentication", "false"),
            ("externalAuth", "false"),
            ("sipGatewayEnabled", "false"),
        ] {
            conf.append_child(
                Element::bare("property", NS_FOCUS)
                    .with("name", name)
                    .with("value", value),
            );
        }
        reply.append_child(conf);
        reply
    }

    /// Joins `room` unless the focus is there already. The conference is
    /// entered in the map before the join, under the map's lock, so two
    /// requests at once make one conference; the second waits for the
    /// first's join (it holds the conference's lock until then).
    async fn ensure(
        self: &Arc<Self>,
        srv: &Server,
        focus_domain: &str,
        room: &str,
    ) -> Result<(), &'static str> {
        // A conference found ended (its room emptied while this request
        // waited) is already gone from the map: the second pass makes anew.
        let (running, rx, mut r) = loop {
            let (running, rx) = {
                let mut map = self.lock();
                match map.get(room) {
                    Some(r) => (r.clone(), None),
                    None => {
                        let (r, rx) = self.conference(srv, focus_domain, room);
                        map.insert(room.to_owned(), r.clone());
                        (r, Some(rx))
                    }
                }
            };
            let r = running.clone().lock_owned().await;
            match rx {
                Some(rx) => break (running, rx, r),
                // Joined by an earlier request.
                None if !r.ended => return Ok(()),
                None => continue,
            }
        };
        let mut join = Element::bare("presence", ns::CLIENT).with("to", &format!("{room}/{NICK}"));
        join.append_child(Element::bare("x", ns::MUC));
        if let Err(e) = srv.handle_stanza(&r.session, join).await {
            tracing::warn!(error = e, "focus could not join its room");
            r.ended = true;
            self.lock().remove(room);
            return Err("internal-server-error");
        }
        // Jitsi clients need real JIDs: the room is made non-anonymous
        // (the owner form, as a client does on status 201). A meeting has a
        // lobby: when a moderator makes it members-only, strangers knock
        // there (as with Jitsi's Prosody) rather than being turned away.
        let mut form = Element::bare("x", ns::DATA_FORMS).with("type", "submit");
        form.append_child(field(
            "FORM_TYPE",
            "http://jabber.org/protocol/muc#roomconfig",
        ));
        form.append_child(field("muc#roomconfig_whois", "anyone"));
        form.append_child(field(
            conclave_server::modules::muc::lobby::CONFIG_FIELD,
            "1",
        ));
        let mut q = Element::bare("query", ns::MUC_OWNER);
        q.append_child(form);
        let mut iq = Element::bare("iq", ns::CLIENT)
            .with("to", room)
            .with("type", "set")
            .with("id", "focus-config");
        iq.append_child(q);
        let _ = srv.handle_stanza(&r.session, iq).await;
        drop(r);
        tokio::spawn(drain(self.clone(), running, rx));
        Ok(())
    }

    /// A conference's state and the queue its focus session reads.
    fn conference(
        &self,
        srv: &Server,
        focus_domain: &str,
        room: &str,
    ) -> (
        Arc<tokio::sync::Mutex<Running>>,
        conclave_server::router::OutRx,
    ) {
        let (tx, rx) = conclave_server::router::queue();
        let handle = Arc::new(SessionHandle {
            id: srv.router.next_id(),
            full: format!("{focus_domain}/{NICK}"),
            bare: focus_domain.to_owned(),
            tx,
            state: std::sync::Mutex::new(PresenceState {
                available: true,
                ..Default::default()
            }),
            inactive: Default::default(),
            flow: Arc::new(Flow::new(srv.config.limits.queue())),
        });
        let session = Session {
            handle,
            user: String::new(),
            host: focus_domain.to_owned(),
            anonymous: false,
        };
        let running = Arc::new(tokio::sync::Mutex::new(Running {
            core: Conference::new(room, self.settings.max_sources),
            session,
            roles: HashMap::new(),
            moderator_granted: false,
            ended: false,
        }));
        (running, rx)
    }

    /// The bridge gave up on an endpoint: the others stop expecting its
    /// media. One that vanished (timeout) is also kicked from the room, so
    /// that everyone sees it go; one whose DTLS closed stays, since clients
    /// close their connection before asking for a new session.
    async fn expired(&self, key: EndpointKey, ufrag: &str, reason: Expiry) {
        let Some(running) = self.lock().get(&key.conference).cloned() else {
            return;
        };
        let Some(srv) = self.server.upgrade() else {
            return;
        };
        let mut r = running.lock().await;
        let Some(out) = r.core.media_ended(&key.endpoint, ufrag) else {
            return;
        };
        if reason == Expiry::Closed {
            send_all(&srv, &r.session, out).await;
            return;
        }
        let mut kick = Element::bare("query", ns::MUC_ADMIN);
        kick.append_child(
            Element::bare("item", ns::MUC_ADMIN)
                .with("nick", &key.endpoint)
                .with("role", "none"),
        );
        let mut iq = Element::bare("iq", ns::CLIENT)
            .with("to", &key.conference)
            .with("type", "set")
            .with("id", "focus-expire");
        iq.append_child(kick);
        send_all(&srv, &r.session, out.into_iter().chain(std::iter::once(iq))).await;
    }
}

fn field(var: &str, value: &str) -> Element {
    Element::bare("field", ns::DATA_FORMS)
        .with("var", var)
        .text_child("value", ns::DATA_FORMS, value)
}

async fn send_all(srv: &Server, s: &Session, els: impl IntoIterator<Item = Element>) {
    for el in els {
        if let Err(e) = srv.handle_stanza(s, el).await {
            tracing::debug!(error = e, "focus stanza refused");
        }
    }
}

/// Reads what the hub delivers to the focus in one room until the
/// conference ends.
async fn drain(
    focus: Arc<Focus>,
    running: Arc<tokio::sync::Mutex<Running>>,
    rx: conclave_server::router::OutRx,
) {
    let flow = running.lock().await.session.handle.flow.clone();
    while let Ok(item) = rx.recv_async().await {
        flow.taken(item.weight());
        let bytes = match item {
            Outbound::Stanza(b) | Outbound::ToSelf(b) | Outbound::Deferrable(b) => b,
            Outbound::Close(_) => break,
            _ => continue,
        };
        let Some(srv) = focus.server.upgrade() else {
            return;
        };
        // The hub serialised it; it parses within the server's own limits.
        let Ok(el) = xmpp_core::framing::parse_element(&bytes, srv.config.limits.max_stanza_bytes)
        else {
            continue;
        };
        let mut r = running.lock().await;
        let out = on_stanza(&focus, &mut r, &el);
        send_all(&srv, &r.session, out).await;
        if r.ended {
            let room = r.core.room().to_owned();
            let leave = Element::bare("presence", ns::CLIENT)
                .with("to", &format!("{room}/{NICK}"))
                .with("type", "unavailable");
            send_all(&srv, &r.session, [leave]).await;
            flow.end();
            let mut map = focus.lock();
            if map.get(&room).is_some_and(|x| Arc::ptr_eq(x, &running)) {
                map.remove(&room);
            }
            return;
        }
    }
}

/// One stanza the room delivered to the focus.
fn on_stanza(focus: &Focus, r: &mut Running, el: &Element) -> Vec<Element> {
    let Some(from) = el.attr("from").and_then(|f| Jid::new(f).ok()) else {
        return Vec::new();
    };
    let room = r.core.room().to_owned();
    let nick = match from.resource() {
        Some(n) if from.to_bare().as_str() == room => n.as_str().to_owned(),
        _ => return Vec::new(),
    };
    let media = &mut BridgeMedia(&focus.bridge);
    match el.name() {
        "presence" => {
            let unavailable = el.attr("type") == Some("unavailable");
            if nick == NICK {
                // Kicked, or the room was destroyed: the meeting is over.
                if unavailable {
                    r.ended = true;
                }
                return Vec::new();
            }
            if unavailable {
                r.roles.remove(&nick);
                let out = r.core.left(&nick, media);
                if r.core.is_empty() {
                    r.ended = true;
                }
                return out;
            }
            let item = el
                .get_child("x", ns::MUC_USER)
                .and_then(|x| x.get_child("item", ns::MUC_USER));
            if let Some(role) = item.and_then(|i| i.attr("role")) {
                r.roles.insert(nick.clone(), role.to_owned());
            }
            // Jitsi clients ignore occupants without a real JID; so does
            // the focus (it would have no one to trust).
            let Some(real) = item
                .and_then(|i| i.attr("jid"))
                .and_then(|j| Jid::new(j).ok())
            else {
                return Vec::new();
            };
            if r.core.contains(&nick) {
                return Vec::new();
            }
            let mut out = r.core.joined(&nick, media);
            let moderates = match focus.settings.moderators {
                MeetingModerators::First => !r.moderator_granted,
                MeetingModerators::Authenticated => focus
                    .settings
                    .hosts
                    .iter()
                    .any(|h| h == real.domain().as_str()),
            };
            if moderates {
                r.moderator_granted = true;
                out.push(grant_owner(&room, real.to_bare().as_str()));
            }
            out
        }
        "iq" if matches!(el.attr("type"), Some("set" | "get")) => {
            if el.get_child("jingle", NS_JINGLE).is_some() {
                r.core.jingle(&nick, el, media)
            } else if el.get_child("mute", NS_MUTE_AUDIO).is_some()
                || el.get_child("mute", NS_MUTE_VIDEO).is_some()
            {
                let moderator = r.roles.get(&nick).is_some_and(|x| x == "moderator");
                r.core.mute(el, moderator, media)
            } else {
                vec![stanza::error_reply(el, "feature-not-implemented", None)]
            }
        }
        _ => Vec::new(),
    }
}

/// A participant who moderates is made an owner of the room, as Jicofo
/// does: that makes it a moderator (mute, kick) and lets it lock the room
/// with a password or end the meeting, through plain XEP-0045.
fn grant_owner(room: &str, real_bare: &str) -> Element {
    let mut q = Element::bare("query", ns::MUC_ADMIN);
    q.append_child(
        Element::bare("item", ns::MUC_ADMIN)
            .with("jid", real_bare)
            .with("affiliation", "owner"),
    );
    let mut iq = Element::bare("iq", ns::CLIENT)
        .with("to", room)
        .with("type", "set")
        .with("id", "focus-owner");
    iq.append_child(q);
    iq
}
