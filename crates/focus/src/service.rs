//! The focus as a hub service at `focus.<host>`: answers Jitsi's
//! conference request, joins the room as occupant `focus`, and runs a
//! [`Conference`] per room, moving its stanzas through the hub like any
//! session's. The hub knows nothing of this beyond the `Service` seam.
//!
//! Each conference has a session handle of its own (full JID
//! `focus.<host>/focus`, outside the router) whose queue a task drains:
//! that is how MUC presence and occupants' IQs reach the focus.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

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

use crate::cascade::{Cascade, RelayChange};
use crate::colibri2::{
    self, BridgeStats, ConferenceModify, EndpointModify, Modified, NS_COLIBRI2, RelayModify,
};
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
    /// `meetings.brewery_room`: where bridges that run apart are found
    /// (used when this process has no bridge of its own).
    pub brewery_room: String,
    /// `meetings.max_participants_per_bridge`: a conference with this many
    /// on each of its bridges cascades to another (0: never).
    pub max_per_bridge: usize,
}

/// How long the focus waits for a bridge's colibri2 answer.
const COLIBRI2_TIMEOUT: Duration = Duration::from_secs(5);

/// The focus's state, kept by the server (`Server::extension`).
pub struct Focus {
    server: Weak<Server>,
    /// The bridge in this process, if any; else conferences go to bridges
    /// in the brewery room.
    bridge: Option<Arc<Bridge>>,
    settings: FocusSettings,
    conferences: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Running>>>>,
    /// Bridges in the brewery room, by their component domain.
    bridges: Mutex<HashMap<String, RemoteBridge>>,
    /// Colibri2 requests awaiting their answer, by IQ id: the bridge asked
    /// and where its answer goes.
    pending: Mutex<HashMap<String, Pending>>,
    /// Pairs of bridges a relay links (ordered): a pair carries one
    /// conference's relay at a time, since each side knows the other by
    /// its one media address.
    links: Mutex<HashSet<(String, String)>>,
    next_id: AtomicU64,
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

type Pending = (String, tokio::sync::oneshot::Sender<Element>);

fn error_condition(iq: &Element) -> Option<String> {
    iq.get_child("error", ns::CLIENT)
        .and_then(|e| e.children().next())
        .map(|c| c.name().to_owned())
}

/// A bridge as its brewery presence describes it.
#[derive(Debug, Clone)]
pub struct RemoteBridge {
    pub stats: BridgeStats,
    /// Conferences this focus has on it now.
    pub placed: usize,
}

/// Where a conference's media is.
enum Placement {
    Local,
    /// Bridges that run apart (one, or several cascaded).
    Remote(Remote),
    /// No bridge could take it.
    Nowhere,
}

/// A conference on bridges that run apart.
struct Remote {
    /// Its colibri2 meeting id, the same on each bridge.
    meeting_id: String,
    /// Its bridges, by component domain, and who is on each.
    cascade: Cascade,
    /// The bridges where it was created.
    created: HashSet<String>,
}

struct Running {
    core: Conference,
    room: String,
    placement: Placement,
    session: Session,
    /// Occupants' roles, from their presence.
    roles: HashMap<String, String>,
    moderator_granted: bool,
    /// Meeting participants in the order they came, with their bare real
    /// JIDs: the next moderator when the last one leaves.
    arrivals: Vec<(String, String)>,
    ended: bool,
    /// Occupants with no bridge endpoint, since no bridge could take them
    /// (their bridge left and none was there): invited when one comes.
    waiting: Vec<String>,
}

impl Running {
    /// Invites `nicks` on the conference's bridge; those it cannot take
    /// wait for another.
    async fn invite(&mut self, focus: &Focus, nicks: Vec<String>) -> Vec<Element> {
        let mut out = Vec::new();
        for nick in nicks {
            let (core, mut media) = self.parts(focus);
            out.extend(core.joined(&nick, &mut media).await);
            if !core.contains(&nick) && !self.waiting.contains(&nick) {
                self.waiting.push(nick);
            }
        }
        out
    }
}

/// The conference's bridge, whichever it is.
enum AnyMedia<'a> {
    Local(&'a Bridge),
    Remote(RemoteMedia<'a>),
    Nowhere,
}

/// Bridges that run apart, driven by colibri2 IQs sent from the
/// conference's focus session.
struct RemoteMedia<'a> {
    focus: &'a Focus,
    session: &'a Session,
    room: &'a str,
    remote: &'a mut Remote,
}

impl RemoteMedia<'_> {
    fn request(
        &self,
        bridge: &str,
        endpoints: Vec<EndpointModify>,
        relays: Vec<RelayModify>,
    ) -> Element {
        colibri2::modify(&ConferenceModify {
            meeting_id: self.remote.meeting_id.clone(),
            name: self.room.to_owned(),
            create: !self.remote.created.contains(bridge),
            expire: false,
            endpoints,
            relays,
        })
    }

    /// Sends a change to the endpoint's bridge, whose answer nobody waits
    /// for (a refusal is logged when it comes).
    fn tell(&self, e: EndpointModify) {
        let Some(bridge) = self.remote.cascade.bridge_of(&e.id) else {
            return;
        };
        let payload = self.request(bridge, vec![e], Vec::new());
        self.focus.send_colibri2(self.session, bridge, payload);
    }

    /// Sends relay changes to their bridges.
    fn tell_relays(&self, changes: Vec<RelayChange>) {
        for (bridge, relay) in changes {
            let payload = self.request(&bridge, Vec::new(), vec![relay]);
            self.focus.send_colibri2(self.session, &bridge, payload);
        }
    }

    /// Sends a change and waits for the bridge's answer.
    async fn ask(
        &mut self,
        bridge: &str,
        endpoints: Vec<EndpointModify>,
        relays: Vec<RelayModify>,
    ) -> Option<Modified> {
        let payload = self.request(bridge, endpoints, relays);
        let answer = self
            .focus
            .ask_colibri2(self.session, bridge, payload)
            .await?;
        self.remote.created.insert(bridge.to_owned());
        let modified = answer.get_child("conference-modified", NS_COLIBRI2)?;
        match colibri2::parse_modified(modified) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(%bridge, error = %e, "bridge's colibri2 answer unreadable");
                None
            }
        }
    }

    /// Sends a change that makes an endpoint's transport, and waits for it.
    async fn transport_of(&mut self, bridge: &str, e: EndpointModify) -> Option<LocalTransport> {
        let id = e.id.clone();
        let m = self.ask(bridge, vec![e], Vec::new()).await?;
        m.endpoints.into_iter().find(|e| e.id == id)?.transport
    }

    /// Sends a relay change and waits for that side's transport.
    async fn relay_transport(&mut self, bridge: &str, r: RelayModify) -> Option<LocalTransport> {
        let id = r.id.clone();
        let m = self.ask(bridge, Vec::new(), vec![r]).await?;
        m.relays.into_iter().find(|r| r.id == id)?.transport
    }

    /// A new endpoint on the bridge the cascade chooses; a bridge new to
    /// the conference is linked with each of its others.
    async fn allocate(&mut self, key: &EndpointKey) -> Option<LocalTransport> {
        let focus = self.focus;
        let ranked = focus.ranked(None);
        let bridge = self
            .remote
            .cascade
            .choose(&ranked, |a, b| focus.linked(a, b))?;
        let new = !self.remote.cascade.bridges().any(|b| b == bridge);
        let t = self
            .transport_of(
                &bridge,
                EndpointModify {
                    id: key.endpoint.clone(),
                    create: true,
                    ..Default::default()
                },
            )
            .await?;
        if new {
            focus.took(&bridge);
            tracing::info!(room = %self.room, %bridge, "conference cascades to another bridge");
        }
        for other in self.remote.cascade.add(&key.endpoint, &bridge) {
            if !self.link(&other, &bridge).await {
                tracing::warn!(room = %self.room, a = %other, b = %bridge, "no relay between the bridges");
            }
        }
        Some(t)
    }

    /// Makes the relay between `a` (controlling) and `b`, in three steps
    /// (see `cascade`).
    async fn link(&mut self, a: &str, b: &str) -> bool {
        let open = self.remote.cascade.open(b);
        let Some(ta) = self.relay_transport(a, open).await else {
            return false;
        };
        let answer = self.remote.cascade.answer(a, &ta);
        let Some(tb) = self.relay_transport(b, answer).await else {
            return false;
        };
        let done = self.remote.cascade.complete(a, b, &tb);
        self.tell_relays(vec![(a.to_owned(), done)]);
        self.focus
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pair(a, b));
        true
    }
}

impl Media for AnyMedia<'_> {
    async fn allocate(&mut self, key: &EndpointKey) -> Option<LocalTransport> {
        match self {
            AnyMedia::Local(b) => Some(b.allocate(key)),
            AnyMedia::Remote(r) => r.allocate(key).await,
            AnyMedia::Nowhere => None,
        }
    }
    fn connect(&mut self, key: &EndpointKey, remote: RemoteTransport) {
        match self {
            AnyMedia::Local(b) => b.connect(key, remote),
            AnyMedia::Remote(r) => r.tell(EndpointModify {
                id: key.endpoint.clone(),
                transport: Some(remote),
                ..Default::default()
            }),
            AnyMedia::Nowhere => {}
        }
    }
    fn set_sources(&mut self, key: &EndpointKey, sources: EndpointSources) {
        match self {
            AnyMedia::Local(b) => b.set_sources(key, sources),
            AnyMedia::Remote(r) => {
                let relays = r.remote.cascade.set_sources(&key.endpoint, &sources);
                r.tell(EndpointModify {
                    id: key.endpoint.clone(),
                    sources: Some(sources),
                    ..Default::default()
                });
                r.tell_relays(relays);
            }
            AnyMedia::Nowhere => {}
        }
    }
    fn mute(&mut self, key: &EndpointKey, kind: MediaKind, muted: bool) {
        match self {
            AnyMedia::Local(b) => b.mute(key, kind, muted),
            AnyMedia::Remote(r) => r.tell(EndpointModify {
                id: key.endpoint.clone(),
                force_mute: vec![(kind, muted)],
                ..Default::default()
            }),
            AnyMedia::Nowhere => {}
        }
    }
    fn expire(&mut self, key: &EndpointKey) {
        match self {
            AnyMedia::Local(b) => b.expire(key),
            AnyMedia::Remote(r) => {
                r.tell(EndpointModify {
                    id: key.endpoint.clone(),
                    expire: true,
                    ..Default::default()
                });
                let relays = r.remote.cascade.remove(&key.endpoint);
                r.tell_relays(relays);
            }
            AnyMedia::Nowhere => {}
        }
    }
    async fn restart_ice(&mut self, key: &EndpointKey) -> Option<LocalTransport> {
        match self {
            AnyMedia::Local(b) => Some(b.restart_ice(key)),
            AnyMedia::Remote(r) => {
                let bridge = r.remote.cascade.bridge_of(&key.endpoint)?.to_owned();
                r.transport_of(
                    &bridge,
                    EndpointModify {
                        id: key.endpoint.clone(),
                        ice_restart: true,
                        ..Default::default()
                    },
                )
                .await
            }
            AnyMedia::Nowhere => None,
        }
    }
}

impl Running {
    /// The conference's state and its bridge, borrowed apart.
    fn parts<'a>(&'a mut self, focus: &'a Focus) -> (&'a mut Conference, AnyMedia<'a>) {
        let media = match &mut self.placement {
            Placement::Local => match &focus.bridge {
                Some(b) => AnyMedia::Local(b),
                None => AnyMedia::Nowhere,
            },
            Placement::Remote(remote) => AnyMedia::Remote(RemoteMedia {
                focus,
                session: &self.session,
                room: &self.room,
                remote,
            }),
            Placement::Nowhere => AnyMedia::Nowhere,
        };
        (&mut self.core, media)
    }
}

/// Puts the focus into `server` and starts listening to the bridge.
/// Puts the focus into `server`. With a bridge in this process it uses
/// that one; without (`serve --roles xmpp,focus`), it joins the brewery
/// room and places each new conference on the least stressed bridge
/// there.
pub fn install(server: &Arc<Server>, bridge: Option<Arc<Bridge>>, settings: FocusSettings) {
    let focus = Arc::new(Focus {
        server: Arc::downgrade(server),
        bridge: bridge.clone(),
        settings,
        conferences: Mutex::new(HashMap::new()),
        bridges: Mutex::new(HashMap::new()),
        pending: Mutex::new(HashMap::new()),
        links: Mutex::new(HashSet::new()),
        next_id: AtomicU64::new(0),
    });
    server.set_extension(focus.clone());
    match bridge {
        Some(bridge) => {
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
        None => {
            let srv = server.clone();
            tokio::spawn(async move { focus.brewery(srv).await });
        }
    }
}

fn handle<'a>(srv: &'a Server, s: &'a Session, to: Jid, el: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        let Some(focus) = srv.extension::<Focus>() else {
            return s.bounce(&el, "service-unavailable");
        };
        if el.name() != "iq" {
            return;
        }
        if matches!(el.attr("type"), Some("result" | "error")) {
            focus.answered(el);
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
                        let Some(placement) = self.place() else {
                            tracing::warn!(%room, "no bridge for a new conference");
                            return Err("service-unavailable");
                        };
                        let (r, rx) = self.conference(srv, focus_domain, room, placement);
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
        placement: Placement,
    ) -> (
        Arc<tokio::sync::Mutex<Running>>,
        conclave_server::router::OutRx,
    ) {
        let (session, rx) = focus_session(srv, focus_domain);
        let running = Arc::new(tokio::sync::Mutex::new(Running {
            core: Conference::new(room, self.settings.max_sources),
            room: room.to_owned(),
            placement,
            session,
            roles: HashMap::new(),
            moderator_granted: false,
            arrivals: Vec::new(),
            ended: false,
            waiting: Vec::new(),
        }));
        (running, rx)
    }

    /// Where a new conference goes: this process's bridge, else the least
    /// stressed bridge in the brewery that is not draining (fewest
    /// conferences from this focus breaks ties, since stats lag).
    fn place(&self) -> Option<Placement> {
        if self.bridge.is_some() {
            return Some(Placement::Local);
        }
        self.remote_placement(None)
    }

    /// A conference's placement on the best bridge but `except`, if any.
    fn remote_placement(&self, except: Option<&str>) -> Option<Placement> {
        let home = self.choose(except)?;
        Some(Placement::Remote(Remote {
            meeting_id: self.meeting_id(),
            cascade: Cascade::new(&home, self.settings.max_per_bridge),
            created: HashSet::new(),
        }))
    }

    /// The bridges that take new work (not draining, not `except`), best
    /// first: least stressed, then fewest conferences from this focus
    /// (stats lag).
    fn ranked(&self, except: Option<&str>) -> Vec<String> {
        let bridges = self.bridges.lock().unwrap_or_else(|e| e.into_inner());
        let mut ok: Vec<(&String, &RemoteBridge)> = bridges
            .iter()
            .filter(|(j, b)| !b.stats.drain && Some(j.as_str()) != except)
            .collect();
        ok.sort_by(|(ja, a), (jb, b)| {
            a.stats
                .stress
                .total_cmp(&b.stats.stress)
                .then(a.placed.cmp(&b.placed))
                .then(ja.cmp(jb))
        });
        ok.into_iter().map(|(j, _)| j.clone()).collect()
    }

    fn choose(&self, except: Option<&str>) -> Option<String> {
        let jid = self.ranked(except).into_iter().next()?;
        self.took(&jid);
        tracing::info!(bridge = %jid, "conference placed");
        Some(jid)
    }

    /// One more conference from this focus is on `bridge`.
    fn took(&self, bridge: &str) {
        let mut bridges = self.bridges.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = bridges.get_mut(bridge) {
            b.placed += 1;
        }
    }

    /// Whether a relay links `a` and `b` (for some conference).
    fn linked(&self, a: &str, b: &str) -> bool {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&pair(a, b))
    }

    fn meeting_id(&self) -> String {
        format!(
            "{:x}-{}",
            xmpp_core::time::now_unix(),
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The conference is over: its bridges (but `gone`, which left) hear
    /// so and count it no more, and their relays are undone.
    fn unplace(&self, r: &mut Running, gone: Option<&str>) {
        let Placement::Remote(remote) = std::mem::replace(&mut r.placement, Placement::Nowhere)
        else {
            return;
        };
        {
            let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
            for l in remote.cascade.links() {
                links.remove(&l);
            }
        }
        for bridge in remote.cascade.bridges() {
            if remote.created.contains(bridge) && Some(bridge) != gone {
                let payload = colibri2::modify(&ConferenceModify {
                    meeting_id: remote.meeting_id.clone(),
                    name: r.room.clone(),
                    create: false,
                    expire: true,
                    endpoints: Vec::new(),
                    relays: Vec::new(),
                });
                self.send_colibri2(&r.session, bridge, payload);
            }
            self.release(bridge);
        }
    }

    fn release(&self, bridge: &str) {
        let mut bridges = self.bridges.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = bridges.get_mut(bridge) {
            b.placed = b.placed.saturating_sub(1);
        }
    }

    /// The bridges in the brewery room now, by component domain.
    pub fn bridges(&self) -> HashMap<String, RemoteBridge> {
        self.bridges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn colibri2_iq(&self, session: &Session, bridge: &str, payload: Element) -> (String, Element) {
        let id = format!("colibri2-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut iq = Element::bare("iq", ns::CLIENT)
            .with("type", "set")
            .with("id", &id)
            .with("from", session.full())
            .with("to", bridge);
        iq.append_child(payload);
        (id, iq)
    }

    /// Sends a colibri2 request to `bridge` without waiting for the answer.
    fn send_colibri2(&self, session: &Session, bridge: &str, payload: Element) {
        let Some(srv) = self.server.upgrade() else {
            return;
        };
        let (_, iq) = self.colibri2_iq(session, bridge, payload);
        if let Some(slot) = srv.component(bridge) {
            slot.deliver(session, &iq);
        }
    }

    /// Sends a colibri2 request and waits for its result; `None` on an
    /// error, no answer in time, or a bridge not connected.
    async fn ask_colibri2(
        &self,
        session: &Session,
        bridge: &str,
        payload: Element,
    ) -> Option<Element> {
        let srv = self.server.upgrade()?;
        let slot = srv.component(bridge)?;
        slot.connection()?;
        let (id, iq) = self.colibri2_iq(session, bridge, payload);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), (bridge.to_owned(), tx));
        slot.deliver(session, &iq);
        let answer = tokio::time::timeout(COLIBRI2_TIMEOUT, rx).await;
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        match answer {
            Ok(Ok(a)) if a.attr("type") == Some("result") => Some(a),
            Ok(Ok(a)) => {
                tracing::warn!(%bridge, error = ?error_condition(&a), "bridge refused a colibri2 request");
                None
            }
            _ => {
                tracing::warn!(%bridge, "no colibri2 answer from the bridge");
                None
            }
        }
    }

    /// An IQ answer addressed to the focus: a bridge's, to a colibri2
    /// request.
    fn answered(&self, el: Element) {
        let Some(id) = el.attr("id") else { return };
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let from_bridge = |b: &str| el.attr("from") == Some(b);
        if pending.get(id).is_some_and(|(b, _)| from_bridge(b)) {
            if let Some((_, tx)) = pending.remove(id) {
                let _ = tx.send(el);
            }
        } else if el.attr("type") == Some("error") && id.starts_with("colibri2-") {
            tracing::warn!(from = ?el.attr("from"), error = ?error_condition(&el), "a colibri2 request was refused");
        }
    }

    /// Joins the brewery room and follows the bridges' presence there
    /// until the server stops.
    async fn brewery(self: Arc<Self>, srv: Arc<Server>) {
        let room = self.settings.brewery_room.clone();
        let Some(host) = self.settings.hosts.first() else {
            return;
        };
        let focus_domain = format!("{}.{host}", SERVICE.subdomain);
        let (session, rx) = focus_session(&srv, &focus_domain);
        let mut join = Element::bare("presence", ns::CLIENT).with("to", &format!("{room}/{NICK}"));
        join.append_child(Element::bare("x", ns::MUC));
        if let Err(e) = srv.handle_stanza(&session, join).await {
            tracing::warn!(error = e, %room, "focus could not join the brewery room");
            return;
        }
        let iq = colibri2::brewery_config(&room, "focus-brewery-config");
        let _ = srv.handle_stanza(&session, iq).await;
        tracing::info!(%room, "focus in the brewery room");
        let flow = session.handle.flow.clone();
        // Occupant nick -> the bridge's component domain.
        let mut nicks: HashMap<String, String> = HashMap::new();
        drop(srv);
        while let Some((srv, el)) = next_stanza(&self, &rx, &flow).await {
            if el.name() != "presence" {
                continue;
            }
            let Some(from) = el.attr("from").and_then(|f| Jid::new(f).ok()) else {
                continue;
            };
            let Some(nick) = from.resource().map(|r| r.as_str().to_owned()) else {
                continue;
            };
            if from.to_bare().as_str() != room || nick == NICK {
                continue;
            }
            if el.attr("type") == Some("unavailable") {
                if let Some(jid) = nicks.remove(&nick) {
                    self.bridge_gone(&srv, &jid).await;
                }
                continue;
            }
            let real = el
                .get_child("x", ns::MUC_USER)
                .and_then(|x| x.get_child("item", ns::MUC_USER))
                .and_then(|i| i.attr("jid"))
                .and_then(|j| Jid::new(j).ok());
            // Only a configured component, which proved its secret, is a
            // bridge; anyone else in the room is ignored.
            let Some(real) =
                real.filter(|j| j.node().is_none() && srv.component(j.domain().as_str()).is_some())
            else {
                continue;
            };
            let Some(stats) = colibri2::parse_stats(&el) else {
                continue;
            };
            let jid = real.domain().as_str().to_owned();
            let joined = nicks.insert(nick, jid.clone()).is_none();
            {
                let mut bridges = self.bridges.lock().unwrap_or_else(|e| e.into_inner());
                let b = bridges.entry(jid.clone()).or_insert(RemoteBridge {
                    stats: stats.clone(),
                    placed: 0,
                });
                b.stats = stats;
            }
            if joined {
                tracing::info!(bridge = %jid, "bridge joined the brewery");
                self.bridge_came(&srv).await;
            }
        }
    }

    /// A bridge left the brewery (its connection ended): each conference
    /// on it is moved to another, everyone invited anew there.
    async fn bridge_gone(&self, srv: &Server, jid: &str) {
        self.bridges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(jid);
        tracing::warn!(bridge = %jid, "bridge left the brewery");
        let running: Vec<_> = self.lock().values().cloned().collect();
        for running in running {
            let mut r = running.lock().await;
            if !matches!(&r.placement, Placement::Remote(remote) if remote.cascade.bridges().any(|b| b == jid))
            {
                continue;
            }
            // Everyone moves, from every bridge of the conference: the
            // others end it, and it starts anew (cascading as it fills).
            self.unplace(&mut r, Some(jid));
            r.placement = self.remote_placement(Some(jid)).unwrap_or_else(|| {
                tracing::warn!(room = %r.room, "no bridge left for a conference");
                Placement::Nowhere
            });
            let before = r.core.nicks();
            let out = {
                let (core, mut media) = r.parts(self);
                core.relocate(&mut media).await
            };
            for nick in before {
                if !r.core.contains(&nick) && !r.waiting.contains(&nick) {
                    r.waiting.push(nick);
                }
            }
            send_all(srv, &r.session, out).await;
        }
    }

    /// A bridge joined the brewery: conferences left without one are
    /// placed again, their participants invited there.
    async fn bridge_came(&self, srv: &Server) {
        let running: Vec<_> = self.lock().values().cloned().collect();
        for running in running {
            let mut r = running.lock().await;
            if !matches!(r.placement, Placement::Nowhere) || r.waiting.is_empty() || r.ended {
                continue;
            }
            let Some(placement) = self.remote_placement(None) else {
                return;
            };
            r.placement = placement;
            let waiting = std::mem::take(&mut r.waiting);
            let out = r.invite(self, waiting).await;
            send_all(srv, &r.session, out).await;
        }
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
    while let Some((srv, el)) = next_stanza(&focus, &rx, &flow).await {
        let mut r = running.lock().await;
        let out = on_stanza(&focus, &mut r, &el).await;
        send_all(&srv, &r.session, out).await;
        if r.ended {
            focus.unplace(&mut r, None);
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

/// The next stanza the hub delivered to one of the focus's sessions;
/// `None` once it is closed (or the server is gone).
async fn next_stanza(
    focus: &Focus,
    rx: &conclave_server::router::OutRx,
    flow: &Flow,
) -> Option<(Arc<Server>, Element)> {
    while let Ok(item) = rx.recv_async().await {
        flow.taken(item.weight());
        let bytes = match item {
            Outbound::Stanza(b) | Outbound::ToSelf(b) | Outbound::Deferrable(b) => b,
            Outbound::Close(_) => return None,
            _ => continue,
        };
        let srv = focus.server.upgrade()?;
        // The hub serialised it; it parses within the server's own limits.
        if let Ok(el) =
            xmpp_core::framing::parse_element(&bytes, srv.config.limits.max_stanza_bytes)
        {
            return Some((srv, el));
        }
    }
    None
}

/// One stanza the room delivered to the focus.
async fn on_stanza(focus: &Focus, r: &mut Running, el: &Element) -> Vec<Element> {
    let Some(from) = el.attr("from").and_then(|f| Jid::new(f).ok()) else {
        return Vec::new();
    };
    let room = r.core.room().to_owned();
    let nick = match from.resource() {
        Some(n) if from.to_bare().as_str() == room => n.as_str().to_owned(),
        _ => return Vec::new(),
    };
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
                r.waiting.retain(|n| *n != nick);
                r.arrivals.retain(|(n, _)| *n != nick);
                let next_owner = next_moderator(focus.settings.moderators, &r.arrivals, &r.roles)
                    .map(|real| grant_owner(&room, real));
                let (core, mut media) = r.parts(focus);
                let mut out = core.left(&nick, &mut media);
                out.extend(next_owner);
                if core.is_empty() && r.waiting.is_empty() {
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
            if r.core.contains(&nick) || r.waiting.contains(&nick) || !in_meeting(el) {
                return Vec::new();
            }
            let mut out = r.invite(focus, vec![nick.clone()]).await;
            r.arrivals
                .push((nick.clone(), real.to_bare().as_str().to_owned()));
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
                let (core, mut media) = r.parts(focus);
                core.jingle(&nick, el, &mut media).await
            } else if el.get_child("mute", NS_MUTE_AUDIO).is_some()
                || el.get_child("mute", NS_MUTE_VIDEO).is_some()
            {
                let moderator = r.roles.get(&nick).is_some_and(|x| x == "moderator");
                let (core, mut media) = r.parts(focus);
                core.mute(el, &nick, moderator, &mut media)
            } else {
                vec![stanza::error_reply(el, "feature-not-implemented", None)]
            }
        }
        _ => Vec::new(),
    }
}

/// Whom to make moderator now that someone left, as Jicofo's auto-owner
/// does: where the first participant moderates and no one still in the
/// meeting does, the one who has been there longest (so a meeting is never
/// left without anyone who can lock it, mute or admit from the lobby).
fn next_moderator<'a>(
    policy: MeetingModerators,
    arrivals: &'a [(String, String)],
    roles: &HashMap<String, String>,
) -> Option<&'a str> {
    if policy != MeetingModerators::First
        || arrivals
            .iter()
            .any(|(n, _)| roles.get(n).is_some_and(|r| r == "moderator"))
    {
        return None;
    }
    arrivals.first().map(|(_, real)| real.as_str())
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

/// A session of the focus's own (`focus.<host>/focus`), outside the
/// router: the hub delivers what a room sends it to the queue returned.
fn focus_session(srv: &Server, focus_domain: &str) -> (Session, conclave_server::router::OutRx) {
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
    (session, rx)
}

/// Whether an occupant's presence is a meeting client's: Jitsi clients
/// (and ours) announce sources, mute state or a stats id; a chat client in
/// the same room (a group's members, chatting) announces none and is not
/// called into the meeting.
fn in_meeting(presence: &Element) -> bool {
    ["SourceInfo", "audiomuted", "videomuted", "stats-id"]
        .iter()
        .any(|n| presence.children().any(|c| c.name() == *n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_meeting_clients_are_called_in() {
        let p = |inner: &str| -> Element {
            format!("<presence xmlns='jabber:client'>{inner}</presence>")
                .parse()
                .expect("xml")
        };
        assert!(in_meeting(&p("<SourceInfo>{}</SourceInfo>")));
        assert!(in_meeting(&p("<audiomuted>false</audiomuted>")));
        assert!(!in_meeting(&p(
            "<x xmlns='http://jabber.org/protocol/muc'/><show>away</show>"
        )));
        assert!(!in_meeting(&p("")));
    }

    #[test]
    fn when_the_last_moderator_leaves_the_longest_present_moderates() {
        let arrivals = vec![
            ("b".to_owned(), "bob@h".to_owned()),
            ("c".to_owned(), "carol@h".to_owned()),
        ];
        let mut roles = HashMap::from([
            ("b".to_owned(), "participant".to_owned()),
            ("c".to_owned(), "participant".to_owned()),
        ]);
        let first = MeetingModerators::First;
        assert_eq!(next_moderator(first, &arrivals, &roles), Some("bob@h"));
        // Someone still moderates: nobody new.
        roles.insert("c".into(), "moderator".into());
        assert_eq!(next_moderator(first, &arrivals, &roles), None);
        roles.insert("c".into(), "participant".into());
        // Where accounts moderate, every account already does: nobody new.
        let auth = MeetingModerators::Authenticated;
        assert_eq!(next_moderator(auth, &arrivals, &roles), None);
        assert_eq!(next_moderator(first, &[], &roles), None);
    }
}
