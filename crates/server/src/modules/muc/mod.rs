//! XEP-0045 Multi-User Chat at `conference.<host>`, with occupant ids
//! (XEP-0421), self-ping (XEP-0410) and room info (`muc#roominfo`).
//!
//! Rooms live in memory while anyone is in them (persistent rooms always);
//! persistent rooms' configuration, affiliations and subject are written
//! through to the store. A message to N occupants is serialised once.

pub mod lobby;
pub mod room;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jid::Jid;
use minidom::Element;
use xmpp_core::forms::field;
use xmpp_core::stanza::{self, ElementExt};
use xmpp_core::{ns, time};

use conclave_store::StoredRoom;

use crate::hub::{HandlerFuture, Server, Service, Session, bare_of};
use crate::modules::forms::{boolean, list_single};
use room::{Affiliation, Delivery, HistorySpec, Join, Role, Room, RoomConfig};

pub static SERVICE: Service = Service {
    name: "muc",
    subdomain: "conference",
    identity: ("conference", "text", "Chatrooms"),
    host_identity: None,
    features: &[ns::MUC, ns::OCCUPANT_ID, "muc_unique", ns::MODERATE],
    handle,
    info_form: |_| None,
    enabled: |c| c.muc.enabled,
};

type Shared = Arc<Mutex<Room>>;

#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, Shared>>,
    created: Mutex<Created>,
}

/// Who created the rooms that exist, for `muc.max_rooms_per_user`.
#[derive(Default)]
struct Created {
    by_room: HashMap<String, String>,
    per_user: HashMap<String, usize>,
}

impl Rooms {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Shared>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn created(&self) -> std::sync::MutexGuard<'_, Created> {
        self.created.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rooms `bare` created that still exist.
    fn created_by(&self, bare: &str) -> usize {
        self.created().per_user.get(bare).copied().unwrap_or(0)
    }

    fn note_created(&self, room: &str, bare: &str) {
        let mut c = self.created();
        c.by_room.insert(room.to_owned(), bare.to_owned());
        *c.per_user.entry(bare.to_owned()).or_default() += 1;
    }

    /// Forgets a room (destroyed, or temporary and empty).
    fn remove(&self, room: &str) {
        self.lock().remove(room);
        let mut c = self.created();
        if let Some(bare) = c.by_room.remove(room)
            && let Some(n) = c.per_user.get_mut(&bare)
        {
            *n -= 1;
            if *n == 0 {
                c.per_user.remove(&bare);
            }
        }
    }

    fn get(&self, jid: &str) -> Option<Shared> {
        self.lock().get(jid).cloned()
    }

    /// Public rooms in memory on one service domain, for its disco#items
    /// (the map holds every host's rooms, and lobby rooms beside them).
    pub fn public(&self, domain: &str) -> Vec<(String, String)> {
        let rooms: Vec<Shared> = self
            .lock()
            .iter()
            .filter(|(jid, _)| jid.split_once('@').is_some_and(|(_, d)| d == domain))
            .map(|(_, r)| r.clone())
            .collect();
        let mut v: Vec<(String, String)> = rooms
            .iter()
            .filter_map(|r| {
                let r = r.lock().ok()?;
                r.config
                    .public
                    .then(|| (r.jid.clone(), r.config.name.clone()))
            })
            .collect();
        v.sort();
        v
    }
}

fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Room> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

/// Room stanzas are built without `to`: each session's writer adds its own
/// address to the shared bytes.
fn send(out: Vec<Delivery>) {
    for d in out {
        d.to.send_addressed(d.bytes);
    }
}

/// The key of the room's XEP-0421 occupant ids. Without randomness there
/// is no room: a guessable key would let anyone match occupant ids to the
/// JIDs they hash, which is what the ids exist to hide.
fn new_secret() -> Option<Vec<u8>> {
    let mut b = vec![0u8; 32];
    aws_lc_rs::rand::fill(&mut b).ok()?;
    Some(b)
}

/// A room from memory or, if persistent, from the store.
async fn find(srv: &Server, jid: &str) -> Option<Shared> {
    if let Some(r) = srv.muc.get(jid) {
        return Some(r);
    }
    let stored = srv.store.room(jid).await.ok()??;
    let history = srv.config.muc.history;
    let mut room = Room::new(
        jid.to_owned(),
        RoomConfig::from_pairs(&stored.config, history),
        stored.secret,
    );
    room.subject = stored.subject;
    for (j, a) in stored.affiliations {
        if let Some(a) = Affiliation::parse(&a) {
            room.affiliations.insert(j, a);
        }
    }
    let shared = Arc::new(Mutex::new(room));
    Some(
        srv.muc
            .lock()
            .entry(jid.to_owned())
            .or_insert(shared)
            .clone(),
    )
}

/// Writes a persistent room through, or forgets a temporary empty one.
async fn settle(srv: &Server, shared: &Shared) {
    let (save, forget, jid) = {
        let mut r = lock(shared);
        let save = (r.dirty && r.config.persistent).then(|| StoredRoom {
            jid: r.jid.clone(),
            config: r.config.to_pairs(),
            affiliations: r
                .affiliations
                .iter()
                .map(|(j, a)| (j.clone(), a.as_str().to_owned()))
                .collect(),
            subject: r.subject.clone(),
            secret: r.secret().to_vec(),
        });
        r.dirty = false;
        (save, !r.config.persistent && r.is_empty(), r.jid.clone())
    };
    if let Some(s) = save
        && let Err(e) = srv.store.save_room(&s).await
    {
        tracing::error!(error = %e, "saving a room failed");
    }
    if forget {
        self::forget(srv, &jid).await;
    }
}

/// Forgets a room for good (destroyed, or temporary and empty), and the
/// lobby it had.
async fn forget(srv: &Server, jid: &str) {
    srv.muc.remove(jid);
    let _ = srv.store.delete_room(jid).await;
    lobby::main_gone(srv, jid);
}

/// Whether a room's messages go to its archive: never a lobby's, whose
/// knocking chat is ephemeral.
fn archives(srv: &Server, room_jid: &str) -> bool {
    srv.config.archive.enabled && !lobby::is_lobby(srv, room_jid)
}

fn handle<'a>(srv: &'a Server, s: &'a Session, to: Jid, el: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        let room_jid = to.to_bare().as_str().to_owned();
        let nick = to.resource().map(|r| r.as_str().to_owned());
        match el.name() {
            "presence" => presence(srv, s, &room_jid, nick, el).await,
            "message" => message(srv, s, &room_jid, nick, el).await,
            _ => iq(srv, s, &to, &room_jid, nick, el).await,
        }
    })
}

fn refuse(s: &Session, el: &Element, condition: &str) {
    if el.attr("type") != Some("error") {
        s.send(&stanza::error_reply(el, condition, None));
    }
}

/// Whether the session is in `room_jid`, and in how many rooms of its
/// service, from the occupant JIDs its directed presence went to.
fn occupancies(s: &Session, room_jid: &str) -> (bool, usize) {
    let service = room_jid.split_once('@').map_or("", |(_, d)| d);
    let prefix = format!("{room_jid}/");
    let Ok(st) = s.handle.state.lock() else {
        return (false, 0);
    };
    let in_service = |d: &&String| {
        d.split('/')
            .next()
            .and_then(|b| b.split_once('@'))
            .is_some_and(|(_, dom)| dom == service)
    };
    (
        st.directed.iter().any(|d| d.starts_with(&prefix)),
        st.directed.iter().filter(in_service).count(),
    )
}

fn refuse_with(s: &Session, el: &Element, condition: &str, text: &str) {
    if el.attr("type") != Some("error") {
        s.send(&stanza::error_reply(el, condition, Some(text)));
    }
}

async fn presence(srv: &Server, s: &Session, room_jid: &str, nick: Option<String>, el: Element) {
    if !room_jid.contains('@') {
        return;
    }
    let ty = el.attr("type");
    if matches!(ty, Some("unavailable") | Some("error")) {
        if let Ok(mut st) = s.handle.state.lock() {
            st.directed
                .retain(|d| !d.starts_with(&format!("{room_jid}/")));
        }
        if let Some(r) = srv.muc.get(room_jid) {
            let mut out = Vec::new();
            lock(&r).leave(s.full(), Some(&el), &mut out);
            send(out);
            settle(srv, &r).await;
        }
        return;
    }
    if ty.is_some() {
        return;
    }
    let Some(req) = Entering::parse(s, nick, &el) else {
        return;
    };
    let (joined, elsewhere) = occupancies(s, room_jid);
    // An in-process service (the conference focus) joins a room per
    // meeting; only code in this process can speak as its domain.
    let service = srv.service(s.bare()).is_some();
    if !joined && !service && elsewhere >= srv.config.muc.max_occupancies_per_session {
        return refuse_with(
            s,
            &el,
            "resource-constraint",
            "you are in as many rooms as this server allows one session",
        );
    }
    if lobby::is_lobby(srv, room_jid) {
        return lobby::enter(srv, s, room_jid, req, el).await;
    }
    let (shared, created) = match find(srv, room_jid).await {
        Some(r) => (r, false),
        None => {
            if !srv.is_admin(s.bare())
                && !service
                && srv.muc.created_by(s.bare()) >= srv.config.muc.max_rooms_per_user
            {
                // XEP-0045 §10.1.3: a user who may not create the room.
                return refuse_with(
                    s,
                    &el,
                    "not-allowed",
                    "you have created as many rooms as this server allows",
                );
            }
            let Some(secret) = new_secret() else {
                tracing::error!("no random bytes for a new room's key");
                return refuse(s, &el, "internal-server-error");
            };
            let mut room = Room::new(
                room_jid.to_owned(),
                RoomConfig::new(srv.config.muc.history),
                secret,
            );
            room.affiliations
                .insert(s.bare().to_owned(), Affiliation::Owner);
            let ours = Arc::new(Mutex::new(room));
            let shared = srv
                .muc
                .lock()
                .entry(room_jid.to_owned())
                .or_insert(ours.clone())
                .clone();
            if Arc::ptr_eq(&ours, &shared) {
                srv.muc.note_created(room_jid, s.bare());
            }
            (shared, true)
        }
    };
    let mut out = Vec::new();
    let (result, knock) = {
        let mut r = lock(&shared);
        let created = created && r.is_empty();
        let result = req.enter(&mut r, s, &el, created, service, &mut out);
        // A stranger refused by a members-only room with a lobby is told
        // where to knock.
        let knock = (result == Err("registration-required"))
            .then(|| lobby::knock_here(srv, &r))
            .flatten();
        (result, knock)
    };
    req.entered(s, room_jid, &el, result, knock, out);
    settle(srv, &shared).await;
}

/// A presence that enters a room, or updates an occupant's presence there.
struct Entering {
    nick: String,
    password: Option<String>,
    history: HistorySpec,
}

impl Entering {
    /// The request in an available presence to `room/nick`; a missing nick
    /// is refused with `jid-malformed` (then `None`).
    fn parse(s: &Session, nick: Option<String>, el: &Element) -> Option<Entering> {
        let Some(nick) = nick.filter(|n| !n.is_empty()) else {
            refuse(s, el, "jid-malformed");
            return None;
        };
        let x = el.get_child("x", ns::MUC);
        let password = x
            .and_then(|x| x.get_child("password", ns::MUC))
            .map(Element::text);
        let history = x
            .and_then(|x| x.get_child("history", ns::MUC))
            .map(|h| HistorySpec {
                max_stanzas: h.attr("maxstanzas").and_then(|v| v.parse().ok()),
                since: h
                    .attr("seconds")
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|secs| time::now_unix().saturating_sub(secs)),
            })
            .unwrap_or_default();
        Some(Entering {
            nick,
            password,
            history,
        })
    }

    /// Joins the room, or updates the presence of a session already in it.
    fn enter(
        &self,
        r: &mut Room,
        s: &Session,
        el: &Element,
        created: bool,
        trusted: bool,
        out: &mut Vec<Delivery>,
    ) -> Result<(), room::Refusal> {
        if r.nick_of(s.full()).is_some() {
            return r.presence(&s.handle, &self.nick, el, out);
        }
        r.join(
            Join {
                session: &s.handle,
                nick: &self.nick,
                presence: el,
                password: self.password.as_deref(),
                history: self.history,
                created,
                trusted,
            },
            out,
        )
    }

    /// Sends what entering produced and remembers the occupant JID (the
    /// session leaves it when it goes), or answers with the refusal, from
    /// the occupant JID, carrying `extra` in its `<error/>`.
    fn entered(
        &self,
        s: &Session,
        room_jid: &str,
        el: &Element,
        result: Result<(), room::Refusal>,
        extra: Option<Element>,
        out: Vec<Delivery>,
    ) {
        let occupant = format!("{room_jid}/{}", self.nick);
        match result {
            Ok(()) => {
                send(out);
                if let Ok(mut st) = s.handle.state.lock() {
                    st.directed
                        .retain(|d| !d.starts_with(&format!("{room_jid}/")));
                    st.directed.push(occupant);
                }
            }
            Err(cond) => {
                let mut reply = stanza::error_reply(el, cond, None);
                reply.set("from", &occupant);
                if let Some(x) = extra
                    && let Some(e) = reply.get_child_mut("error", ns::CLIENT)
                {
                    e.append_child(x);
                }
                s.send(&reply);
            }
        }
    }
}

async fn message(srv: &Server, s: &Session, room_jid: &str, nick: Option<String>, el: Element) {
    if el.attr("type") == Some("error") {
        return;
    }
    let Some(shared) = srv.muc.get(room_jid) else {
        return refuse(s, &el, "item-not-found");
    };
    if let Some(nick) = nick {
        return private_message(s, &shared, &nick, el);
    }
    if el.attr("type") == Some("groupchat") {
        let mut out = Vec::new();
        let id = (archives(srv, room_jid) && super::mam::archivable(&el)).then(super::mam::new_id);
        let result = lock(&shared).groupchat(s.full(), &el, id.as_deref(), &mut out);
        match result {
            Ok(archived) => {
                // A retraction's tombstone is written before anyone hears
                // of it, so what they then ask the archive agrees.
                let retract = archived.as_ref().and_then(|a| {
                    let r = a.message.get_child("retract", ns::RETRACT)?;
                    let by = a.message.get_child("occupant-id", ns::OCCUPANT_ID)?;
                    Some((r.attr("id")?, by.attr("id")?, a.message.attr("id")))
                });
                if let Some((id, occupant_id, own_id)) = retract {
                    retract_own(srv, &shared, room_jid, id, occupant_id, own_id).await;
                }
                send(out);
                if let Some(a) = archived {
                    super::mam::archive_room(srv, room_jid, &a.occupant, &a.message, a.id);
                }
            }
            Err(c) => refuse(s, &el, c),
        }
        settle(srv, &shared).await;
        return;
    }
    if let Some(x) = el.get_child("x", ns::MUC_USER) {
        for inv in x.children().filter(|c| c.is("invite", ns::MUC_USER)) {
            invite(srv, s, &shared, inv, &el).await;
        }
        for dec in x.children().filter(|c| c.is("decline", ns::MUC_USER)) {
            decline(srv, s, room_jid, dec);
        }
        return;
    }
    refuse(s, &el, "bad-request");
}

/// §7.5: a private message goes to every session of the named occupant,
/// from the sender's occupant JID.
fn private_message(s: &Session, shared: &Shared, nick: &str, el: Element) {
    let r = lock(shared);
    let Some(from_nick) = r.nick_of(s.full()).map(str::to_owned) else {
        return refuse(s, &el, "not-acceptable");
    };
    let Some(target) = r.occupants.get(nick) else {
        return refuse(s, &el, "item-not-found");
    };
    if el.attr("type") == Some("groupchat") {
        return refuse(s, &el, "bad-request");
    }
    let mut m = el.clone();
    m.set("from", &format!("{}/{from_nick}", r.jid));
    m.unset("to");
    if !m.has_child("x", ns::MUC_USER) {
        m.append_child(Element::bare("x", ns::MUC_USER));
    }
    let b = stanza::to_bytes(&m);
    for t in &target.sessions {
        t.send_addressed(b.clone());
    }
}

/// §7.8.2: a mediated invitation. Members-only rooms make the invitee a
/// member when the inviter may invite (`Room::may_invite`).
async fn invite(srv: &Server, s: &Session, shared: &Shared, inv: &Element, orig: &Element) {
    let Some(to) = inv.attr("to").and_then(|t| Jid::new(t).ok()) else {
        return refuse(s, orig, "jid-malformed");
    };
    let invitee = to.to_bare().as_str().to_owned();
    let (room_jid, password, ok) = {
        let mut r = lock(shared);
        let may = r.may_invite(s.full());
        if may && r.config.members_only && r.affiliation(&invitee) < Affiliation::Member {
            r.affiliations.insert(invitee.clone(), Affiliation::Member);
            r.dirty = true;
        }
        (r.jid.clone(), r.config.password.clone(), may)
    };
    if !ok {
        return refuse(s, orig, "forbidden");
    }
    let mut x = Element::bare("x", ns::MUC_USER);
    let mut i = Element::bare("invite", ns::MUC_USER).with("from", s.bare());
    if let Some(reason) = inv.get_child("reason", ns::MUC_USER) {
        i.append_child(reason.clone());
    }
    x.append_child(i);
    if let Some(p) = &password {
        let mut pe = Element::bare("password", ns::MUC_USER);
        pe.append_text(p.as_str());
        x.append_child(pe);
    }
    let mut m = Element::bare("message", ns::CLIENT)
        .with("from", &room_jid)
        .with("to", to.as_str())
        .with("id", &crate::session::random_id());
    m.append_child(x);
    m.append_child(Element::bare("x", ns::CONFERENCE).with("jid", &room_jid));
    // To a full JID, that session, available or not: a Jitsi client
    // waiting in a lobby never sent available presence, and this is how it
    // hears it was admitted. A bare JID: as messages are routed.
    match to
        .is_full()
        .then(|| srv.router.session(bare_of(&to), to.as_str()))
        .flatten()
    {
        Some(h) => srv.deliver(&[h], &m),
        None => deliver_to_user(srv, &to, &m).await,
    }
    settle(srv, shared).await;
}

fn decline(srv: &Server, s: &Session, room_jid: &str, dec: &Element) {
    let Some(to) = dec.attr("to").and_then(|t| Jid::new(t).ok()) else {
        return;
    };
    let mut x = Element::bare("x", ns::MUC_USER);
    let mut d = Element::bare("decline", ns::MUC_USER).with("from", s.bare());
    if let Some(reason) = dec.get_child("reason", ns::MUC_USER) {
        d.append_child(reason.clone());
    }
    x.append_child(d);
    let mut m = Element::bare("message", ns::CLIENT)
        .with("from", room_jid)
        .with("to", to.as_str());
    m.append_child(x);
    let bare = to.to_bare();
    let targets: Vec<_> = srv
        .router
        .sessions(bare.as_str())
        .into_iter()
        .filter(|h| h.is_available())
        .collect();
    srv.deliver(&targets, &m);
}

/// Delivers a message from the room to a user as message routing would:
/// online resources, else offline storage.
async fn deliver_to_user(srv: &Server, to: &Jid, m: &Element) {
    let bare = to.to_bare();
    let targets: Vec<_> = srv
        .router
        .sessions(bare.as_str())
        .into_iter()
        .filter(|h| h.is_available() && h.priority() >= 0)
        .collect();
    if !targets.is_empty() {
        srv.deliver(&targets, m);
        return;
    }
    if srv.user_exists(bare.as_str()).await {
        let xml = stanza::to_bytes(m);
        let _ = srv
            .store
            .push(
                bare.as_str(),
                time::now_unix(),
                &String::from_utf8_lossy(&xml),
                srv.config.limits.max_offline_messages,
            )
            .await;
    }
}

async fn iq(
    srv: &Server,
    s: &Session,
    to: &Jid,
    room_jid: &str,
    nick: Option<String>,
    el: Element,
) {
    let ty = el.attr("type").unwrap_or("");
    let request = matches!(ty, "get" | "set");
    let payload = stanza::iq_payload(&el).cloned();
    if !room_jid.contains('@') {
        // The service itself.
        if request
            && payload
                .as_ref()
                .is_some_and(|p| p.is("query", ns::DISCO_ITEMS))
        {
            let mut q = Element::bare("query", ns::DISCO_ITEMS);
            for (jid, name) in srv.muc.public(to.domain().as_str()) {
                let mut item = Element::bare("item", ns::DISCO_ITEMS).with("jid", &jid);
                if !name.is_empty() {
                    item.set("name", &name);
                }
                q.append_child(item);
            }
            let mut reply = stanza::iq_result(&el);
            reply.append_child(q);
            s.send(&reply);
        } else if request {
            refuse(s, &el, "service-unavailable");
        }
        return;
    }
    let Some(shared) = find(srv, room_jid).await else {
        if request {
            refuse(s, &el, "item-not-found");
        }
        return;
    };
    if let Some(nick) = nick {
        return occupant_iq(s, &shared, to, &nick, el);
    }
    if !request {
        return;
    }
    let Some(p) = payload else {
        return refuse(s, &el, "bad-request");
    };
    if p.is("moderate", ns::MODERATE) && ty == "set" {
        return moderate(srv, s, &shared, room_jid, &el, &p).await;
    }
    if p.ns() == ns::MAM && archives(srv, room_jid) {
        // Occupants, members of a members-only room, and anyone for an
        // open public room without a password may read its archive.
        let allowed = {
            let r = lock(&shared);
            r.nick_of(s.full()).is_some()
                || r.affiliation(s.bare()) >= Affiliation::Member
                || (!r.config.members_only && r.config.password.is_none() && r.config.public)
        };
        if allowed {
            super::mam::query(srv, s, room_jid, &el).await;
        } else {
            refuse(s, &el, "forbidden");
        }
        return;
    }
    let mut out = Vec::new();
    let reply = {
        let mut r = lock(&shared);
        if p.is("query", ns::DISCO_INFO) {
            let lobby = lobby::roominfo_field(srv, &r);
            Ok(Some(room_info(&r, archives(srv, room_jid), lobby)))
        } else if p.is("query", ns::DISCO_ITEMS) {
            // Occupants are not listed: that would unmask nicks to
            // non-occupants of a hidden room.
            Ok(Some(Element::bare("query", ns::DISCO_ITEMS)))
        } else if p.is("query", ns::MUC_ADMIN) {
            admin(&mut r, s, ty, &p, &mut out)
        } else if p.is("query", ns::MUC_OWNER) && lobby::is_lobby(srv, room_jid) {
            Err(lobby::OWNER_REFUSAL)
        } else if p.is("query", ns::MUC_OWNER) {
            let lobby = lobby::of(srv, room_jid).is_some();
            owner(
                &mut r,
                s,
                ty,
                &p,
                srv.config.retention.days,
                lobby,
                &mut out,
            )
        } else {
            Err("service-unavailable")
        }
    };
    let done = reply.is_ok();
    match reply {
        Ok(payload) => {
            send(out);
            let mut res = stanza::iq_result(&el);
            if let Some(p) = payload {
                res.append_child(p);
            }
            s.send(&res);
        }
        Err(c) => {
            send(out);
            refuse(s, &el, c);
        }
    }
    // Only what the owner was allowed to do: a refused destroy of an empty
    // room must not forget it.
    let owner_set = done && ty == "set" && p.is("query", ns::MUC_OWNER);
    if owner_set && p.has_child("destroy", ns::MUC_OWNER) {
        forget(srv, room_jid).await;
    } else {
        if owner_set {
            lobby::main_changed(srv, room_jid, &shared);
        }
        settle(srv, &shared).await;
    }
}

/// An IQ to an occupant: a self-ping (XEP-0410) is answered by the room;
/// anything else is forwarded from the sender's occupant JID.
fn occupant_iq(s: &Session, shared: &Shared, to: &Jid, nick: &str, el: Element) {
    let r = lock(shared);
    let request = matches!(el.attr("type"), Some("get" | "set"));
    let Some(from_nick) = r.nick_of(s.full()).map(str::to_owned) else {
        if request {
            refuse(s, &el, "not-acceptable");
        }
        return;
    };
    if from_nick == nick && stanza::iq_payload(&el).is_some_and(|p| p.is("ping", ns::PING)) {
        let mut res = stanza::iq_result(&el);
        res.set("from", to.as_str());
        s.send(&res);
        return;
    }
    let Some(target) = r.occupants.get(nick).and_then(|o| o.sessions.first()) else {
        if request {
            refuse(s, &el, "item-not-found");
        }
        return;
    };
    let mut fwd = el.clone();
    fwd.set("from", &format!("{}/{from_nick}", r.jid));
    fwd.set("to", &target.full);
    target.send(stanza::to_bytes(&fwd));
}

fn feature(q: &mut Element, var: &str) {
    q.append_child(Element::bare("feature", ns::DISCO_INFO).with("var", var));
}

/// §6.4: room disco#info with the muc#roominfo form (and `extra`, a field
/// of it); with the archive (XEP-0313 on the room, its stanza-ids to be
/// trusted, XEP-0359 §8).
fn room_info(r: &Room, archive: bool, extra: Option<Element>) -> Element {
    let c = &r.config;
    let mut q = Element::bare("query", ns::DISCO_INFO);
    let mut id = Element::bare("identity", ns::DISCO_INFO)
        .with("category", "conference")
        .with("type", "text");
    if !c.name.is_empty() {
        id.set("name", &c.name);
    }
    q.append_child(id);
    for f in [
        ns::MUC,
        ns::OCCUPANT_ID,
        ns::PING,
        "http://jabber.org/protocol/muc#self-ping-optimization",
    ] {
        feature(&mut q, f);
    }
    if archive {
        for f in [ns::MAM, ns::SID, ns::RETRACT_TOMBSTONE] {
            feature(&mut q, f);
        }
    }
    feature(&mut q, if c.public { "muc_public" } else { "muc_hidden" });
    feature(
        &mut q,
        if c.members_only {
            "muc_membersonly"
        } else {
            "muc_open"
        },
    );
    feature(
        &mut q,
        if c.password.is_some() {
            "muc_passwordprotected"
        } else {
            "muc_unsecured"
        },
    );
    feature(
        &mut q,
        if c.moderated {
            "muc_moderated"
        } else {
            "muc_unmoderated"
        },
    );
    feature(
        &mut q,
        if c.persistent {
            "muc_persistent"
        } else {
            "muc_temporary"
        },
    );
    feature(
        &mut q,
        if c.non_anonymous {
            "muc_nonanonymous"
        } else {
            "muc_semianonymous"
        },
    );
    let mut x = Element::bare("x", ns::DATA_FORMS).with("type", "result");
    x.append_child(xmpp_core::forms::form_type(ns::MUC_ROOMINFO));
    x.append_child(field(
        "muc#roominfo_description",
        None,
        Some("Description"),
        &[&c.description],
    ));
    let occupants = r.occupants.len().to_string();
    x.append_child(field(
        "muc#roominfo_occupants",
        None,
        Some("Number of occupants"),
        &[&occupants],
    ));
    let subject = r.subject.as_ref().map(|s| s.0.as_str()).unwrap_or("");
    x.append_child(field(
        "muc#roominfo_subject",
        None,
        Some("Subject"),
        &[subject],
    ));
    x.append_child(field(
        "muc#roomconfig_changesubject",
        Some("boolean"),
        None,
        &[if c.change_subject { "1" } else { "0" }],
    ));
    if let Some(f) = extra {
        x.append_child(f);
    }
    q.append_child(x);
    q
}

type Answer = Result<Option<Element>, &'static str>;

/// §8-9: muc#admin, role and affiliation changes and lists.
fn admin(r: &mut Room, s: &Session, ty: &str, q: &Element, out: &mut Vec<Delivery>) -> Answer {
    let items: Vec<&Element> = q
        .children()
        .filter(|c| c.is("item", ns::MUC_ADMIN))
        .collect();
    if items.is_empty() {
        return Err("bad-request");
    }
    if ty == "get" {
        let actor = r.affiliation(s.bare());
        if actor < Affiliation::Admin {
            return Err("forbidden");
        }
        let mut res = Element::bare("query", ns::MUC_ADMIN);
        for it in items {
            if let Some(a) = it.attr("affiliation").and_then(Affiliation::parse) {
                let mut list: Vec<(&String, &Affiliation)> =
                    r.affiliations.iter().filter(|(_, x)| **x == a).collect();
                list.sort();
                for (j, x) in list {
                    res.append_child(
                        Element::bare("item", ns::MUC_ADMIN)
                            .with("jid", j)
                            .with("affiliation", x.as_str()),
                    );
                }
            } else if let Some(role) = it.attr("role").and_then(Role::parse) {
                for o in r.occupants.values().filter(|o| o.role == role) {
                    res.append_child(
                        Element::bare("item", ns::MUC_ADMIN)
                            .with("nick", &o.nick)
                            .with("role", o.role.as_str())
                            .with("affiliation", o.affiliation.as_str()),
                    );
                }
            } else {
                return Err("bad-request");
            }
        }
        return Ok(Some(res));
    }
    for it in items {
        let reason = it.get_child("reason", ns::MUC_ADMIN).map(Element::text);
        if let Some(role) = it.attr("role") {
            let role = Role::parse(role).ok_or("bad-request")?;
            let nick = it.attr("nick").ok_or("bad-request")?;
            r.set_role(s.full(), nick, role, reason.as_deref(), out)?;
        } else if let Some(aff) = it.attr("affiliation") {
            let aff = Affiliation::parse(aff).ok_or("bad-request")?;
            let jid = match it.attr("jid") {
                Some(j) => Jid::new(j)
                    .map_err(|_| "jid-malformed")?
                    .to_bare()
                    .as_str()
                    .to_owned(),
                None => {
                    let nick = it.attr("nick").ok_or("bad-request")?;
                    r.occupants
                        .get(nick)
                        .map(|o| o.bare.clone())
                        .ok_or("item-not-found")?
                }
            };
            r.set_affiliation(s.bare(), &jid, aff, reason.as_deref(), out)?;
        } else {
            return Err("bad-request");
        }
    }
    Ok(None)
}

fn config_form(c: &RoomConfig, lobby: bool) -> Element {
    let mut x = Element::bare("x", ns::DATA_FORMS).with("type", "form");
    x.append_child(xmpp_core::forms::form_type(ns::MUC_ROOMCONFIG));
    x.append_child(field(
        "muc#roomconfig_roomname",
        Some("text-single"),
        Some("Name"),
        &[&c.name],
    ));
    x.append_child(field(
        "muc#roomconfig_roomdesc",
        Some("text-single"),
        Some("Description"),
        &[&c.description],
    ));
    x.append_child(boolean(
        "muc#roomconfig_persistentroom",
        "Persistent",
        c.persistent,
    ));
    x.append_child(boolean(
        "muc#roomconfig_publicroom",
        "Listed in the directory",
        c.public,
    ));
    x.append_child(boolean(
        "muc#roomconfig_membersonly",
        "Members only",
        c.members_only,
    ));
    x.append_child(boolean(
        "muc#roomconfig_passwordprotectedroom",
        "Password protected",
        c.password.is_some(),
    ));
    x.append_child(field(
        "muc#roomconfig_roomsecret",
        Some("text-private"),
        Some("Password"),
        &[c.password.as_deref().unwrap_or("")],
    ));
    x.append_child(boolean(
        "muc#roomconfig_moderatedroom",
        "Moderated",
        c.moderated,
    ));
    x.append_child(list_single(
        "muc#roomconfig_whois",
        "Who may see real JIDs",
        if c.non_anonymous {
            "anyone"
        } else {
            "moderators"
        },
        &["moderators", "anyone"],
    ));
    x.append_child(boolean(
        "muc#roomconfig_changesubject",
        "Occupants may change the subject",
        c.change_subject,
    ));
    x.append_child(boolean(
        "muc#roomconfig_allowinvites",
        "Occupants may invite (in a members-only room, moderators only)",
        c.allow_invites,
    ));
    let hist = c.history.to_string();
    x.append_child(field(
        "muc#maxhistoryfetch",
        Some("text-single"),
        Some("Messages of history"),
        &[&hist],
    ));
    let max = if c.max_occupants == 0 {
        "none".to_owned()
    } else {
        c.max_occupants.to_string()
    };
    x.append_child(field(
        "muc#roomconfig_maxusers",
        Some("text-single"),
        Some("Maximum occupants"),
        &[&max],
    ));
    let keep = c.retention_days.to_string();
    x.append_child(field(
        RETENTION_FIELD,
        Some("text-single"),
        Some("Days the room's history is kept (0: the server's setting)"),
        &[&keep],
    ));
    if lobby {
        x.append_child(boolean(
            lobby::CONFIG_FIELD,
            "While members-only, strangers may knock in a lobby",
            c.lobby,
        ));
    }
    x
}

/// The room owner's retention field (a Conclave extension of the form).
pub const RETENTION_FIELD: &str = "{https://conclave.chat/protocol/retention}room-archive-days";

/// Applies a submitted configuration form; unknown fields are ignored,
/// malformed values refuse the whole form.
fn apply_form(
    c: &mut RoomConfig,
    x: &Element,
    history_cap: usize,
    max_days: u32,
) -> Result<(), &'static str> {
    let mut next = c.clone();
    let mut secret: Option<String> = None;
    let mut protect: Option<bool> = None;
    for f in x.children().filter(|f| f.is("field", ns::DATA_FORMS)) {
        let Some(var) = f.attr("var") else { continue };
        let v = f
            .get_child("value", ns::DATA_FORMS)
            .map(Element::text)
            .unwrap_or_default();
        let flag = || match v.as_str() {
            "1" | "true" => Ok(true),
            "0" | "false" | "" => Ok(false),
            _ => Err("not-acceptable"),
        };
        match var {
            "muc#roomconfig_roomname" => next.name = v,
            "muc#roomconfig_roomdesc" => next.description = v,
            "muc#roomconfig_persistentroom" => next.persistent = flag()?,
            "muc#roomconfig_publicroom" => next.public = flag()?,
            "muc#roomconfig_membersonly" => next.members_only = flag()?,
            "muc#roomconfig_passwordprotectedroom" => protect = Some(flag()?),
            "muc#roomconfig_roomsecret" => secret = Some(v),
            "muc#roomconfig_moderatedroom" => next.moderated = flag()?,
            "muc#roomconfig_whois" => {
                next.non_anonymous = match v.as_str() {
                    "anyone" => true,
                    "moderators" => false,
                    _ => return Err("not-acceptable"),
                }
            }
            "muc#roomconfig_changesubject" => next.change_subject = flag()?,
            "muc#roomconfig_allowinvites" => next.allow_invites = flag()?,
            lobby::CONFIG_FIELD => next.lobby = flag()?,
            "muc#maxhistoryfetch" | "muc#roomconfig_historylength" => {
                next.history = v
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| "not-acceptable")?
                    .min(history_cap)
            }
            RETENTION_FIELD => {
                let d: u32 = v.trim().parse().map_err(|_| "not-acceptable")?;
                // Within the operator's limit (0 there means no limit).
                if max_days > 0 && d > max_days {
                    return Err("not-acceptable");
                }
                next.retention_days = d;
            }
            "muc#roomconfig_maxusers" => {
                next.max_occupants = match v.trim() {
                    "" | "none" | "0" => 0,
                    n => n.parse().map_err(|_| "not-acceptable")?,
                }
            }
            _ => {}
        }
    }
    match (protect, secret) {
        (Some(false), _) => next.password = None,
        (_, Some(s)) if !s.is_empty() => next.password = Some(s),
        (Some(true), _) if next.password.is_none() => return Err("not-acceptable"),
        _ => {}
    }
    *c = next;
    Ok(())
}

/// §10: muc#owner, configuration and destruction.
/// `lobby`: the host has a lobby service, so the form offers the room one.
fn owner(
    r: &mut Room,
    s: &Session,
    ty: &str,
    q: &Element,
    max_days: u32,
    lobby: bool,
    out: &mut Vec<Delivery>,
) -> Answer {
    if r.affiliation(s.bare()) != Affiliation::Owner {
        return Err("forbidden");
    }
    if ty == "get" {
        let mut res = Element::bare("query", ns::MUC_OWNER);
        res.append_child(config_form(&r.config, lobby));
        return Ok(Some(res));
    }
    if let Some(d) = q.get_child("destroy", ns::MUC_OWNER) {
        let reason = d.get_child("reason", ns::MUC_OWNER).map(Element::text);
        r.destroy(reason.as_deref(), d.attr("jid"), out);
        r.config.persistent = false;
        return Ok(None);
    }
    let Some(x) = q.get_child("x", ns::DATA_FORMS) else {
        return Err("bad-request");
    };
    match x.attr("type") {
        // An instant room, or a cancelled configuration: nothing changes.
        Some("cancel") => Ok(None),
        Some("submit") => {
            let cap = r.config.history.max(1000);
            apply_form(&mut r.config, x, cap, max_days)?;
            r.config_changed(out);
            Ok(None)
        }
        _ => Err("bad-request"),
    }
}

/// XEP-0424 in a room: an occupant retracts its own message (`id` is the
/// room's stanza-id) with the message whose `id` is `own_id`. The archive
/// keeps tombstones of it and of its correction chain, and joiners no
/// longer get them in history, if the message carries the retractor's
/// occupant-id (§6: the author is known by it, whatever the room's
/// anonymity); otherwise nothing changes. The retraction itself was
/// broadcast and archived like any message.
async fn retract_own(
    srv: &Server,
    shared: &Shared,
    room_jid: &str,
    id: &str,
    occupant_id: &str,
    own_id: Option<&str>,
) {
    let retracted = || super::retraction::retracted(own_id);
    if let Ok(gone) =
        super::retraction::retract_in_room(srv, room_jid, id, Some(occupant_id), &retracted).await
    {
        let mut r = lock(shared);
        for id in &gone {
            r.forget(id);
        }
    }
}

/// XEP-0425: a moderator retracts an occupant's message. Everyone is told,
/// the room's archive keeps a tombstone instead of the message, and joiners
/// no longer see it in history.
async fn moderate(
    srv: &Server,
    s: &Session,
    shared: &Shared,
    room_jid: &str,
    iq: &Element,
    req: &Element,
) {
    let Some(id) = req.attr("id").map(str::to_owned) else {
        return refuse(s, iq, "bad-request");
    };
    if !req.has_child("retract", ns::RETRACT) {
        return refuse(s, iq, "feature-not-implemented");
    }
    let actor = {
        let r = lock(shared);
        let Some(o) = r.nick_of(s.full()).and_then(|n| r.occupants.get(n)) else {
            return refuse(s, iq, "forbidden");
        };
        if o.role != Role::Moderator {
            return refuse(s, iq, "forbidden");
        }
        (format!("{room_jid}/{}", o.nick), o.occupant_id.clone())
    };
    let reason = req.get_child("reason", ns::MODERATE).map(Element::text);
    let moderated = || {
        let mut m = Element::bare("moderated", ns::MODERATE).with("by", &actor.0);
        m.append_child(Element::bare("occupant-id", ns::OCCUPANT_ID).with("id", &actor.1));
        m
    };
    let reason_el = |r: &str| {
        let mut e = Element::bare("reason", ns::RETRACT);
        e.append_text(r);
        e
    };
    // The message that announces the retraction: its id goes in every
    // tombstone's <retracted/> (XEP-0424 §5).
    let announce_id = crate::session::random_id();
    let retracted = || {
        let mut r = super::retraction::retracted(Some(&announce_id));
        r.append_child(moderated());
        if let Some(why) = &reason {
            r.append_child(reason_el(why));
        }
        r
    };
    // The named message and its whole correction chain (XEP-0308).
    let gone = match super::retraction::retract_in_room(srv, room_jid, &id, None, &retracted).await
    {
        Ok(g) => g,
        Err(super::retraction::RoomRetractError::NotFound) => {
            return refuse(s, iq, "item-not-found");
        }
        Err(super::retraction::RoomRetractError::Store) => {
            return refuse(s, iq, "internal-server-error");
        }
    };
    let mut retract = Element::bare("retract", ns::RETRACT).with("id", &id);
    retract.append_child(moderated());
    if let Some(r) = &reason {
        retract.append_child(reason_el(r));
    }
    let mut m = Element::bare("message", ns::CLIENT)
        .with("type", "groupchat")
        .with("from", room_jid)
        .with("id", &announce_id);
    m.append_child(retract);
    let mut out = Vec::new();
    {
        let mut r = lock(shared);
        r.forget(&id);
        for g in &gone {
            r.forget(g);
        }
        r.broadcast(&m, &mut out);
    }
    send(out);
    tracing::info!(room = room_jid, "message moderated");
    s.send(&stanza::iq_result(iq));
}
