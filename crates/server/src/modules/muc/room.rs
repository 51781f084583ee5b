//! One XEP-0045 room as a state machine: it takes requests (join, leave,
//! message, admin and owner operations) and returns deliveries. No I/O:
//! the service sends what it returns and persists what it reports dirty.
//!
//! A broadcast is serialised once per variant (the sender's own copy,
//! moderators' copy with real JIDs, everyone else's), never per occupant:
//! each delivery shares the bytes and only the address differs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use aws_lc_rs::hmac;
use base64::Engine;
use bytes::Bytes;
use minidom::Element;
use xmpp_core::stanza::{self, ElementExt};
use xmpp_core::{ns, time};

use crate::router::SessionHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Affiliation> {
        Some(match s {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

/// Everything an owner sets through the configuration form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomConfig {
    pub name: String,
    pub description: String,
    pub persistent: bool,
    pub public: bool,
    pub members_only: bool,
    pub password: Option<String>,
    pub moderated: bool,
    /// Everyone sees real JIDs (non-anonymous), rather than moderators only.
    pub non_anonymous: bool,
    pub change_subject: bool,
    pub allow_invites: bool,
    /// Messages kept for history on join.
    pub history: usize,
    /// 0: no cap.
    pub max_occupants: usize,
    /// Days the room's archive is kept; 0: the server's retention.
    pub retention_days: u32,
    /// While members-only, strangers knock in a lobby room (Jitsi's lobby,
    /// `lobby.rs`) instead of only being refused. Off unless the owner
    /// turns it on: an ordinary private room should not invite knocking.
    pub lobby: bool,
}

impl RoomConfig {
    pub fn new(history: usize) -> Self {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            password: None,
            moderated: false,
            non_anonymous: false,
            change_subject: true,
            allow_invites: true,
            history,
            max_occupants: 0,
            retention_days: 0,
            lobby: false,
        }
    }

    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let b = |v: bool| if v { "1" } else { "0" }.to_owned();
        vec![
            ("name".into(), self.name.clone()),
            ("description".into(), self.description.clone()),
            ("persistent".into(), b(self.persistent)),
            ("public".into(), b(self.public)),
            ("members_only".into(), b(self.members_only)),
            ("password".into(), self.password.clone().unwrap_or_default()),
            ("moderated".into(), b(self.moderated)),
            ("non_anonymous".into(), b(self.non_anonymous)),
            ("change_subject".into(), b(self.change_subject)),
            ("allow_invites".into(), b(self.allow_invites)),
            ("history".into(), self.history.to_string()),
            ("max_occupants".into(), self.max_occupants.to_string()),
            ("retention_days".into(), self.retention_days.to_string()),
            ("lobby".into(), b(self.lobby)),
        ]
    }

    pub fn from_pairs(pairs: &[(String, String)], default_history: usize) -> Self {
        let mut c = RoomConfig::new(default_history);
        for (k, v) in pairs {
            let on = v == "1";
            match k.as_str() {
                "name" => c.name = v.clone(),
                "description" => c.description = v.clone(),
                "persistent" => c.persistent = on,
                "public" => c.public = on,
                "members_only" => c.members_only = on,
                "password" => c.password = (!v.is_empty()).then(|| v.clone()),
                "moderated" => c.moderated = on,
                "non_anonymous" => c.non_anonymous = on,
                "change_subject" => c.change_subject = on,
                "allow_invites" => c.allow_invites = on,
                "history" => c.history = v.parse().unwrap_or(default_history),
                "max_occupants" => c.max_occupants = v.parse().unwrap_or(0),
                "retention_days" => c.retention_days = v.parse().unwrap_or(0),
                "lobby" => c.lobby = on,
                _ => {}
            }
        }
        c
    }
}

#[derive(Debug, Clone)]
pub struct Occupant {
    pub nick: String,
    pub bare: String,
    /// Every session of the same user joined under this nick.
    pub sessions: Vec<Arc<SessionHandle>>,
    pub role: Role,
    pub affiliation: Affiliation,
    pub occupant_id: String,
    /// The occupant's last presence, as the client sent it (payloads kept).
    pub presence: Element,
}

/// A room message as the archive keeps it.
pub struct Archived {
    pub message: Element,
    pub occupant: String,
    pub id: String,
}

/// A stanza for one session.
pub struct Delivery {
    pub to: Arc<SessionHandle>,
    pub bytes: Bytes,
}

pub struct Room {
    pub jid: String,
    pub config: RoomConfig,
    pub subject: Option<(String, String)>,
    pub affiliations: HashMap<String, Affiliation>,
    pub occupants: BTreeMap<String, Occupant>,
    history: VecDeque<(Element, u64)>,
    secret: Vec<u8>,
    /// Persistent state changed and must be saved.
    pub dirty: bool,
}

/// What went wrong with a request, as a stanza error condition.
pub type Refusal = &'static str;

pub struct Join<'a> {
    pub session: &'a Arc<SessionHandle>,
    pub nick: &'a str,
    pub presence: &'a Element,
    pub password: Option<&'a str>,
    pub history: HistorySpec,
    /// The room was created by this join.
    pub created: bool,
    /// An in-process service (the conference focus): code of this
    /// process, which a room's entry rules (members only, a password, a
    /// full room) do not keep out, as Jitsi's focus is admin of every room.
    /// It is how a group's members-only room can hold a meeting.
    pub trusted: bool,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct HistorySpec {
    pub max_stanzas: Option<usize>,
    pub since: Option<u64>,
}

fn status(x: &mut Element, code: u16) {
    x.append_child(Element::bare("status", ns::MUC_USER).with("code", &code.to_string()));
}

impl Room {
    pub fn new(jid: String, config: RoomConfig, secret: Vec<u8>) -> Room {
        Room {
            jid,
            config,
            subject: None,
            affiliations: HashMap::new(),
            occupants: BTreeMap::new(),
            history: VecDeque::new(),
            secret,
            dirty: false,
        }
    }

    pub fn affiliation(&self, bare: &str) -> Affiliation {
        self.affiliations
            .get(bare)
            .copied()
            .unwrap_or(Affiliation::None)
    }

    fn default_role(&self, a: Affiliation) -> Role {
        match a {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            _ if self.config.moderated => Role::Visitor,
            _ => Role::Participant,
        }
    }

    /// XEP-0421: stable per room and user, revealing neither.
    pub fn occupant_id(&self, bare: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.secret);
        let tag = hmac::sign(&key, bare.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(&tag.as_ref()[..18])
    }

    pub fn nick_of(&self, full: &str) -> Option<&str> {
        self.occupants
            .values()
            .find(|o| o.sessions.iter().any(|s| s.full == full))
            .map(|o| o.nick.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.occupants.is_empty()
    }

    fn can_see_jids(&self, viewer: &Occupant) -> bool {
        self.config.non_anonymous || viewer.role == Role::Moderator
    }

    /// Whether `bare` moderates the room: an owner or admin, or an
    /// occupant given the moderator role.
    pub fn moderates(&self, bare: &str) -> bool {
        self.affiliation(bare) >= Affiliation::Admin
            || self
                .occupants
                .values()
                .any(|o| o.bare == bare && o.role == Role::Moderator)
    }

    /// §7.8.2: whether the occupant at `full` may send a mediated
    /// invitation. In a members-only room an invitation makes the invitee a
    /// member, so only those who moderate may send one (Prosody's default
    /// too: members may not invite into members-only rooms); elsewhere
    /// owners and admins may, and everyone when the room allows invites.
    pub fn may_invite(&self, full: &str) -> bool {
        let Some(o) = self.nick_of(full).and_then(|n| self.occupants.get(n)) else {
            return false;
        };
        if self.config.members_only {
            return self.moderates(&o.bare);
        }
        self.affiliation(&o.bare) >= Affiliation::Admin || self.config.allow_invites
    }

    /// The presence of `o` as the room shows it: the client's payloads,
    /// then the muc#user item and the occupant id.
    fn presence_of(
        &self,
        o: &Occupant,
        with_jid: bool,
        statuses: &[u16],
        unavailable: bool,
    ) -> Element {
        let mut p =
            Element::bare("presence", ns::CLIENT).with("from", &format!("{}/{}", self.jid, o.nick));
        if unavailable {
            p.set("type", "unavailable");
        } else {
            for c in o.presence.children() {
                if c.is("x", ns::MUC)
                    || c.is("x", ns::MUC_USER)
                    || c.is("occupant-id", ns::OCCUPANT_ID)
                {
                    continue;
                }
                p.append_child(c.clone());
            }
        }
        let mut x = Element::bare("x", ns::MUC_USER);
        let mut item = Element::bare("item", ns::MUC_USER)
            .with("affiliation", o.affiliation.as_str())
            .with("role", if unavailable { "none" } else { o.role.as_str() });
        if with_jid && let Some(s) = o.sessions.first() {
            item.set("jid", &s.full);
        }
        x.append_child(item);
        for c in statuses {
            status(&mut x, *c);
        }
        p.append_child(x);
        p.append_child(Element::bare("occupant-id", ns::OCCUPANT_ID).with("id", &o.occupant_id));
        p
    }

    /// Sends `o`'s presence to every occupant, serialised once per
    /// variant. `self_codes` go to `o`'s own sessions only.
    fn broadcast_presence(
        &self,
        o: &Occupant,
        unavailable: bool,
        codes: &[u16],
        self_codes: &[u16],
        out: &mut Vec<Delivery>,
    ) {
        let mut plain: Option<Bytes> = None;
        let mut with_jid: Option<Bytes> = None;
        for viewer in self.occupants.values() {
            if viewer.nick == o.nick {
                continue;
            }
            let b = if self.can_see_jids(viewer) {
                with_jid
                    .get_or_insert_with(|| {
                        stanza::to_bytes(&self.presence_of(o, true, codes, unavailable))
                    })
                    .clone()
            } else {
                plain
                    .get_or_insert_with(|| {
                        stanza::to_bytes(&self.presence_of(o, false, codes, unavailable))
                    })
                    .clone()
            };
            for s in &viewer.sessions {
                out.push(Delivery {
                    to: s.clone(),
                    bytes: b.clone(),
                });
            }
        }
        let mut own_codes = codes.to_vec();
        own_codes.extend_from_slice(self_codes);
        own_codes.push(110);
        let own = stanza::to_bytes(&self.presence_of(o, true, &own_codes, unavailable));
        for s in &o.sessions {
            out.push(Delivery {
                to: s.clone(),
                bytes: own.clone(),
            });
        }
    }

    /// XEP-0045 §7.2: enter the room.
    pub fn join(&mut self, j: Join<'_>, out: &mut Vec<Delivery>) -> Result<(), Refusal> {
        let bare = j.session.bare.clone();
        let aff = self.affiliation(&bare);
        // Another session of the same user under the same nick shares it.
        if let Some(o) = self.occupants.get_mut(j.nick) {
            if o.bare != bare {
                return Err("conflict");
            }
            if !o.sessions.iter().any(|s| s.id == j.session.id) {
                o.sessions.push(j.session.clone());
            }
            o.presence = j.presence.clone();
            let o = o.clone();
            self.welcome(&o, j.session, j.history, out);
            return Ok(());
        }
        if aff == Affiliation::Outcast {
            return Err("forbidden");
        }
        if self.config.members_only && aff < Affiliation::Member && !j.trusted {
            return Err("registration-required");
        }
        if let Some(pw) = &self.config.password
            && aff < Affiliation::Admin
            && !j.trusted
            && j.password != Some(pw.as_str())
        {
            return Err("not-authorized");
        }
        if self.config.max_occupants > 0
            && self.occupants.len() >= self.config.max_occupants
            && aff < Affiliation::Admin
            && !j.trusted
        {
            return Err("service-unavailable");
        }
        let o = Occupant {
            nick: j.nick.to_owned(),
            bare: bare.clone(),
            sessions: vec![j.session.clone()],
            role: self.default_role(aff),
            affiliation: aff,
            occupant_id: self.occupant_id(&bare),
            presence: j.presence.clone(),
        };
        // Existing occupants to the newcomer first (§7.2.3).
        for other in self.occupants.values() {
            let p = self.presence_of(other, self.can_see_jids(&o), &[], false);
            out.push(Delivery {
                to: j.session.clone(),
                bytes: stanza::to_bytes(&p),
            });
        }
        self.occupants.insert(o.nick.clone(), o.clone());
        let mut self_codes = Vec::new();
        if self.config.non_anonymous {
            self_codes.push(100);
        }
        if j.created {
            self_codes.push(201);
        }
        self.broadcast_presence(&o, false, &[], &self_codes, out);
        self.welcome(&o, j.session, j.history, out);
        Ok(())
    }

    /// History, then the subject, to one joining session (§7.2.15-16).
    fn welcome(
        &self,
        _o: &Occupant,
        to: &Arc<SessionHandle>,
        spec: HistorySpec,
        out: &mut Vec<Delivery>,
    ) {
        let max = spec
            .max_stanzas
            .unwrap_or(self.config.history)
            .min(self.config.history);
        let skip = self.history.len().saturating_sub(max);
        for (el, stamp) in self.history.iter().skip(skip) {
            if spec.since.is_some_and(|s| *stamp < s) {
                continue;
            }
            let mut m = el.clone();
            m.append_child(
                Element::bare("delay", ns::DELAY)
                    .with("stamp", &time::datetime(*stamp))
                    .with("from", &self.jid),
            );
            out.push(Delivery {
                to: to.clone(),
                bytes: stanza::to_bytes(&m),
            });
        }
        let (text, nick) = self.subject.clone().unwrap_or_default();
        let from = if nick.is_empty() {
            self.jid.clone()
        } else {
            format!("{}/{nick}", self.jid)
        };
        let mut subj = Element::bare("subject", ns::CLIENT);
        if !text.is_empty() {
            subj.append_text(text);
        }
        let mut m = Element::bare("message", ns::CLIENT)
            .with("type", "groupchat")
            .with("from", &from)
            .with("id", &crate::session::random_id());
        m.append_child(subj);
        out.push(Delivery {
            to: to.clone(),
            bytes: stanza::to_bytes(&m),
        });
    }

    /// Presence update, nick change, or leave of a session.
    pub fn presence(
        &mut self,
        from: &Arc<SessionHandle>,
        nick: &str,
        presence: &Element,
        out: &mut Vec<Delivery>,
    ) -> Result<(), Refusal> {
        let Some(current) = self.nick_of(&from.full).map(str::to_owned) else {
            return Err("not-acceptable");
        };
        if current == nick {
            if let Some(o) = self.occupants.get_mut(nick) {
                o.presence = presence.clone();
                let o = o.clone();
                self.broadcast_presence(&o, false, &[], &[], out);
            }
            return Ok(());
        }
        // §7.6: nick change.
        if self.occupants.contains_key(nick) {
            return Err("conflict");
        }
        let Some(mut o) = self.occupants.remove(&current) else {
            return Err("not-acceptable");
        };
        let mut gone = o.clone();
        gone.presence = presence.clone();
        self.occupants.insert(current.clone(), gone.clone());
        self.broadcast_nick_change(&gone, nick, out);
        self.occupants.remove(&current);
        o.nick = nick.to_owned();
        o.presence = presence.clone();
        self.occupants.insert(o.nick.clone(), o.clone());
        self.broadcast_presence(&o, false, &[], &[], out);
        Ok(())
    }

    fn broadcast_nick_change(&self, o: &Occupant, new_nick: &str, out: &mut Vec<Delivery>) {
        for viewer in self.occupants.values() {
            let is_self = viewer.nick == o.nick;
            let mut codes = vec![303];
            if is_self {
                codes.push(110);
            }
            let mut p = self.presence_of(o, is_self || self.can_see_jids(viewer), &codes, true);
            if let Some(item) = p
                .get_child_mut("x", ns::MUC_USER)
                .and_then(|x| x.get_child_mut("item", ns::MUC_USER))
            {
                item.set("nick", new_nick);
            }
            let b = stanza::to_bytes(&p);
            for s in &viewer.sessions {
                out.push(Delivery {
                    to: s.clone(),
                    bytes: b.clone(),
                });
            }
        }
    }

    /// A session leaves (unavailable, disconnect). Returns true if the
    /// occupant is gone altogether.
    pub fn leave(
        &mut self,
        from: &str,
        status_text: Option<&Element>,
        out: &mut Vec<Delivery>,
    ) -> bool {
        let Some(nick) = self.nick_of(from).map(str::to_owned) else {
            return false;
        };
        let Some(o) = self.occupants.get_mut(&nick) else {
            return false;
        };
        if o.sessions.len() > 1 {
            // Another session of the user stays: only this one hears it left.
            let Some(pos) = o.sessions.iter().position(|s| s.full == from) else {
                return false;
            };
            let s = o.sessions.remove(pos);
            let o = o.clone();
            let p = self.presence_of(&o, true, &[110], true);
            out.push(Delivery {
                to: s,
                bytes: stanza::to_bytes(&p),
            });
            return false;
        }
        let mut o = o.clone();
        if let Some(st) = status_text {
            o.presence = st.clone();
        }
        self.broadcast_presence(&o, true, &[], &[], out);
        self.occupants.remove(&nick);
        true
    }

    /// A groupchat message from an occupant (§7.4), or a subject change
    /// (§8.1). `msg` has its payloads; the room sets the addresses.
    ///
    /// With `stanza_id`, the message carries that id `by` the room
    /// (XEP-0359) and comes back, with its occupant JID, for the archive.
    pub fn groupchat(
        &mut self,
        from: &str,
        msg: &Element,
        stanza_id: Option<&str>,
        out: &mut Vec<Delivery>,
    ) -> Result<Option<Archived>, Refusal> {
        let Some(nick) = self.nick_of(from).map(str::to_owned) else {
            return Err("not-acceptable");
        };
        // Not the whole occupant: its last presence is a tree, and this
        // runs for every message.
        let Some((role, occupant_id)) = self
            .occupants
            .get(&nick)
            .map(|o| (o.role, o.occupant_id.clone()))
        else {
            return Err("not-acceptable");
        };
        if role < Role::Participant {
            return Err("forbidden");
        }
        let subject = msg.get_child("subject", ns::CLIENT).map(Element::text);
        if let Some(s) = &subject {
            if !self.config.change_subject && role < Role::Moderator {
                return Err("forbidden");
            }
            self.subject = Some((s.clone(), nick.clone()));
            self.dirty = true;
        }
        let mut m = Element::bare("message", ns::CLIENT)
            .with("type", "groupchat")
            .with("from", &format!("{}/{nick}", self.jid));
        if let Some(id) = msg.attr("id") {
            m.set("id", id);
        }
        for c in msg.children() {
            // Ids only the room may set are dropped if a client sent them.
            if c.is("occupant-id", ns::OCCUPANT_ID)
                || (c.is("stanza-id", ns::SID) && c.attr("by") == Some(&self.jid))
            {
                continue;
            }
            m.append_child(c.clone());
        }
        m.append_child(Element::bare("occupant-id", ns::OCCUPANT_ID).with("id", &occupant_id));
        if let Some(id) = stanza_id {
            m.append_child(
                Element::bare("stanza-id", ns::SID)
                    .with("by", &self.jid)
                    .with("id", id),
            );
        }
        let bytes = stanza::to_bytes(&m);
        for viewer in self.occupants.values() {
            for s in &viewer.sessions {
                out.push(Delivery {
                    to: s.clone(),
                    bytes: bytes.clone(),
                });
            }
        }
        let archived = stanza_id.map(|id| Archived {
            message: m.clone(),
            occupant: format!("{}/{nick}", self.jid),
            id: id.to_owned(),
        });
        if subject.is_none() && m.has_child("body", ns::CLIENT) && self.config.history > 0 {
            self.history.push_back((m, time::now_unix()));
            while self.history.len() > self.config.history {
                self.history.pop_front();
            }
        }
        Ok(archived)
    }

    /// §9.2 / §8.2: role changes by nick. Returns the occupants affected.
    pub fn set_role(
        &mut self,
        actor: &str,
        nick: &str,
        role: Role,
        reason: Option<&str>,
        out: &mut Vec<Delivery>,
    ) -> Result<(), Refusal> {
        let actor_o = self
            .nick_of(actor)
            .and_then(|n| self.occupants.get(n))
            .cloned()
            .ok_or("forbidden")?;
        let Some(target) = self.occupants.get(nick).cloned() else {
            return Err("item-not-found");
        };
        if actor_o.role != Role::Moderator {
            return Err("forbidden");
        }
        // Nobody below admin may grant or take moderation; admins and owners
        // can be neither kicked nor silenced by a moderator.
        if target.affiliation >= Affiliation::Admin
            && target.affiliation >= actor_o.affiliation
            && target.bare != actor_o.bare
        {
            return Err("not-allowed");
        }
        if (role == Role::Moderator || target.role == Role::Moderator)
            && actor_o.affiliation < Affiliation::Admin
        {
            return Err("not-allowed");
        }
        if role == Role::None {
            self.remove_occupant(&target, 307, reason, out);
            return Ok(());
        }
        if let Some(o) = self.occupants.get_mut(nick) {
            o.role = role;
        }
        let o = self.occupants.get(nick).cloned().ok_or("item-not-found")?;
        self.broadcast_presence(&o, false, &[], &[], out);
        Ok(())
    }

    /// Takes an occupant out of the room with a status (307 kicked, 301
    /// banned, 321 lost membership) that everyone sees.
    fn remove_occupant(
        &mut self,
        target: &Occupant,
        code: u16,
        reason: Option<&str>,
        out: &mut Vec<Delivery>,
    ) {
        let mut gone = target.clone();
        gone.role = Role::None;
        for viewer in self.occupants.values() {
            let is_self = viewer.nick == target.nick;
            let mut codes = vec![code];
            if is_self {
                codes.push(110);
            }
            let mut p = self.presence_of(&gone, is_self || self.can_see_jids(viewer), &codes, true);
            if let Some(r) = reason
                && let Some(item) = p
                    .get_child_mut("x", ns::MUC_USER)
                    .and_then(|x| x.get_child_mut("item", ns::MUC_USER))
            {
                item.append_child(Element::bare("reason", ns::MUC_USER).with_text(r));
            }
            let b = stanza::to_bytes(&p);
            for s in &viewer.sessions {
                out.push(Delivery {
                    to: s.clone(),
                    bytes: b.clone(),
                });
            }
        }
        self.occupants.remove(&target.nick);
    }

    /// §9-10: affiliation changes by bare JID.
    pub fn set_affiliation(
        &mut self,
        actor_bare: &str,
        jid: &str,
        aff: Affiliation,
        reason: Option<&str>,
        out: &mut Vec<Delivery>,
    ) -> Result<(), Refusal> {
        let actor = self.affiliation(actor_bare);
        let current = self.affiliation(jid);
        let allowed = match actor {
            Affiliation::Owner => true,
            Affiliation::Admin => current < Affiliation::Admin && aff < Affiliation::Admin,
            _ => false,
        };
        if !allowed {
            return Err("forbidden");
        }
        if current == Affiliation::Owner
            && aff != Affiliation::Owner
            && self
                .affiliations
                .values()
                .filter(|a| **a == Affiliation::Owner)
                .count()
                <= 1
        {
            // §10.6: a room keeps at least one owner.
            return Err("conflict");
        }
        if aff == Affiliation::None {
            self.affiliations.remove(jid);
        } else {
            self.affiliations.insert(jid.to_owned(), aff);
        }
        self.dirty = true;
        let targets: Vec<Occupant> = self
            .occupants
            .values()
            .filter(|o| o.bare == jid)
            .cloned()
            .collect();
        for t in targets {
            if aff == Affiliation::Outcast {
                self.remove_occupant(&t, 301, reason, out);
            } else if self.config.members_only && aff < Affiliation::Member {
                self.remove_occupant(&t, 321, reason, out);
            } else if let Some(o) = self.occupants.get_mut(&t.nick) {
                o.affiliation = aff;
                o.role = match aff {
                    Affiliation::Owner | Affiliation::Admin => Role::Moderator,
                    _ if o.role == Role::Moderator => Role::Participant,
                    _ if aff == Affiliation::Member && o.role == Role::Visitor => Role::Participant,
                    _ => o.role,
                };
                let o = o.clone();
                self.broadcast_presence(&o, false, &[], &[], out);
            }
        }
        Ok(())
    }

    /// §10.9: everyone leaves with the destroy notice.
    pub fn destroy(
        &mut self,
        reason: Option<&str>,
        alternate: Option<&str>,
        out: &mut Vec<Delivery>,
    ) {
        for o in self.occupants.values() {
            let mut p = self.presence_of(o, true, &[], true);
            if let Some(x) = p.get_child_mut("x", ns::MUC_USER) {
                let mut d = Element::bare("destroy", ns::MUC_USER);
                if let Some(a) = alternate {
                    d.set("jid", a);
                }
                if let Some(r) = reason {
                    d.append_child(Element::bare("reason", ns::MUC_USER).with_text(r));
                }
                x.append_child(d);
            }
            let b = stanza::to_bytes(&p);
            for s in &o.sessions {
                out.push(Delivery {
                    to: s.clone(),
                    bytes: b.clone(),
                });
            }
        }
        self.occupants.clear();
    }

    /// §10.2: after a configuration change occupants hear status 104, and
    /// a room turned members-only loses its non-members.
    pub fn config_changed(&mut self, out: &mut Vec<Delivery>) {
        self.dirty = true;
        let mut x = Element::bare("x", ns::MUC_USER);
        status(&mut x, 104);
        let mut m = Element::bare("message", ns::CLIENT)
            .with("type", "groupchat")
            .with("from", &self.jid)
            .with("id", &crate::session::random_id());
        m.append_child(x);
        let b = stanza::to_bytes(&m);
        for o in self.occupants.values() {
            for s in &o.sessions {
                out.push(Delivery {
                    to: s.clone(),
                    bytes: b.clone(),
                });
            }
        }
        if self.config.members_only {
            let out_of: Vec<Occupant> = self
                .occupants
                .values()
                .filter(|o| o.affiliation < Affiliation::Member)
                .cloned()
                .collect();
            for o in out_of {
                self.remove_occupant(&o, 322, None, out);
            }
        }
        while self.history.len() > self.config.history {
            self.history.pop_front();
        }
    }

    /// Sends a room-generated stanza to every occupant, serialised once.
    pub fn broadcast(&self, el: &Element, out: &mut Vec<Delivery>) {
        let bytes = stanza::to_bytes(el);
        for o in self.occupants.values() {
            for s in &o.sessions {
                out.push(Delivery {
                    to: s.clone(),
                    bytes: bytes.clone(),
                });
            }
        }
    }

    /// Drops a message (by its room stanza-id) from what joiners replay.
    pub fn forget(&mut self, stanza_id: &str) {
        let jid = self.jid.clone();
        self.history.retain(|(m, _)| {
            !m.children().any(|c| {
                c.is("stanza-id", ns::SID)
                    && c.attr("by") == Some(&jid)
                    && c.attr("id") == Some(stanza_id)
            })
        });
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::router::PresenceState;
    use xmpp_core::framing::parse_element;

    pub(crate) fn session(user: &str, id: u64) -> (Arc<SessionHandle>, crate::router::OutRx) {
        let (tx, rx) = crate::router::queue();
        (
            Arc::new(SessionHandle {
                id,
                full: format!("{user}@localhost/r"),
                bare: format!("{user}@localhost"),
                tx,
                state: std::sync::Mutex::new(PresenceState::default()),
                inactive: Default::default(),
                flow: Default::default(),
            }),
            rx,
        )
    }

    fn presence() -> Element {
        Element::bare("presence", ns::CLIENT)
    }

    pub(crate) fn join(
        room: &mut Room,
        s: &Arc<SessionHandle>,
        nick: &str,
    ) -> Result<Vec<Delivery>, Refusal> {
        let mut out = Vec::new();
        let p = presence();
        room.join(
            Join {
                session: s,
                nick,
                presence: &p,
                password: None,
                history: HistorySpec::default(),
                created: false,
                trusted: false,
            },
            &mut out,
        )?;
        Ok(out)
    }

    fn room() -> Room {
        let mut r = Room::new(
            "r@conference.localhost".into(),
            RoomConfig::new(20),
            vec![7; 32],
        );
        r.affiliations
            .insert("owner@localhost".into(), Affiliation::Owner);
        r
    }

    fn parsed(d: &Delivery) -> Element {
        parse_element(&d.bytes, 1 << 20).unwrap()
    }

    #[test]
    fn real_jids_only_for_moderators_in_semi_anonymous_rooms() {
        let mut r = room();
        let (o, _o) = session("owner", 1);
        let (a, _a) = session("alice", 2);
        let (b, _b) = session("bob", 3);
        join(&mut r, &o, "owner").unwrap();
        join(&mut r, &a, "alice").unwrap();
        let out = join(&mut r, &b, "bob").unwrap();
        let item_jid = |d: &Delivery| {
            parsed(d)
                .get_child("x", ns::MUC_USER)
                .and_then(|x| x.get_child("item", ns::MUC_USER))
                .and_then(|i| i.attr("jid").map(str::to_owned))
        };
        let mut bob_seen_by: Vec<(u64, Option<String>)> = out
            .iter()
            .filter(|d| {
                parsed(d).attr("from") == Some("r@conference.localhost/bob") && d.to.id != 3
            })
            .map(|d| (d.to.id, item_jid(d)))
            .collect();
        bob_seen_by.sort();
        assert_eq!(
            bob_seen_by,
            vec![(1, Some("bob@localhost/r".into())), (2, None)],
            "the owner (moderator) sees bob's JID, alice does not"
        );
    }

    #[test]
    fn one_serialisation_per_broadcast() {
        let mut r = room();
        let mut sessions = Vec::new();
        for i in 0..10 {
            let (s, rx) = session(&format!("u{i}"), i + 1);
            join(&mut r, &s, &format!("n{i}")).unwrap();
            sessions.push((s, rx));
        }
        let msg = parse_element(
            b"<message xmlns='jabber:client' type='groupchat'><body>hi</body><x xmlns='urn:keep'/></message>",
            4096,
        )
        .unwrap();
        let mut out = Vec::new();
        r.groupchat("u3@localhost/r", &msg, None, &mut out).unwrap();
        assert_eq!(out.len(), 10);
        let first = out[0].bytes.as_ptr();
        assert!(
            out.iter().all(|d| d.bytes.as_ptr() == first),
            "every occupant shares one buffer"
        );
        let m = parsed(&out[0]);
        assert_eq!(m.attr("from"), Some("r@conference.localhost/n3"));
        assert!(
            m.has_child("x", "urn:keep"),
            "unknown payloads pass through"
        );
        assert!(m.has_child("occupant-id", ns::OCCUPANT_ID));
    }

    #[test]
    fn permissions() {
        let mut r = room();
        let (o, _o) = session("owner", 1);
        let (a, _a) = session("alice", 2);
        let (b, _b) = session("bob", 3);
        join(&mut r, &o, "owner").unwrap();
        join(&mut r, &a, "alice").unwrap();
        join(&mut r, &b, "bob").unwrap();
        let mut out = Vec::new();
        // A participant can neither kick nor ban.
        assert_eq!(
            r.set_role("alice@localhost/r", "bob", Role::None, None, &mut out),
            Err("forbidden")
        );
        assert_eq!(
            r.set_affiliation(
                "alice@localhost",
                "bob@localhost",
                Affiliation::Outcast,
                None,
                &mut out
            ),
            Err("forbidden")
        );
        // The last owner cannot step down.
        assert_eq!(
            r.set_affiliation(
                "owner@localhost",
                "owner@localhost",
                Affiliation::Admin,
                None,
                &mut out
            ),
            Err("conflict")
        );
        // An admin may not kick the owner.
        r.set_affiliation(
            "owner@localhost",
            "alice@localhost",
            Affiliation::Admin,
            None,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            r.set_role("alice@localhost/r", "owner", Role::None, None, &mut out),
            Err("not-allowed")
        );
        // A ban takes the user out and keeps them out.
        r.set_affiliation(
            "owner@localhost",
            "bob@localhost",
            Affiliation::Outcast,
            None,
            &mut out,
        )
        .unwrap();
        assert!(!r.occupants.contains_key("bob"));
        assert_eq!(join(&mut r, &b, "bob").err(), Some("forbidden"));
        assert!(r.dirty);
    }

    #[test]
    fn in_members_only_rooms_only_moderators_invite() {
        let mut r = room();
        let (o, _o) = session("owner", 1);
        let (m, _m) = session("member", 2);
        let (v, _v) = session("voiced", 3);
        r.affiliations
            .insert("member@localhost".into(), Affiliation::Member);
        r.affiliations
            .insert("voiced@localhost".into(), Affiliation::Member);
        join(&mut r, &o, "owner").unwrap();
        join(&mut r, &m, "member").unwrap();
        join(&mut r, &v, "voiced").unwrap();
        // The owner makes one member a moderator (role, not affiliation).
        r.set_role(
            "owner@localhost/r",
            "voiced",
            Role::Moderator,
            None,
            &mut Vec::new(),
        )
        .unwrap();
        assert!(
            r.may_invite("member@localhost/r"),
            "an open room allows invites"
        );
        r.config.members_only = true;
        assert!(r.may_invite("owner@localhost/r"));
        assert!(r.may_invite("voiced@localhost/r"), "a moderator by role");
        assert!(
            !r.may_invite("member@localhost/r"),
            "a member may not make members"
        );
        assert!(!r.may_invite("stranger@localhost/r"), "not in the room");
        r.config.members_only = false;
        r.config.allow_invites = false;
        assert!(!r.may_invite("member@localhost/r"));
        assert!(r.may_invite("owner@localhost/r"));
    }

    #[test]
    fn the_focus_enters_a_members_only_room_that_keeps_others_out() {
        let mut r = room();
        r.config.members_only = true;
        r.config.password = Some("pw".into());
        let (stranger, _s) = session("stranger", 2);
        let (focus, _f) = session("focus", 3);
        assert_eq!(
            join(&mut r, &stranger, "stranger").err(),
            Some("registration-required")
        );
        let p = presence();
        let joined = r.join(
            Join {
                session: &focus,
                nick: "focus",
                presence: &p,
                password: None,
                history: HistorySpec::default(),
                created: false,
                trusted: true,
            },
            &mut Vec::new(),
        );
        assert_eq!(joined, Ok(()));
        assert_eq!(
            r.affiliation("focus@localhost"),
            Affiliation::None,
            "let in, not made a member"
        );
    }

    #[test]
    fn nick_conflict_and_password() {
        let mut r = room();
        r.config.password = Some("pw".into());
        let (a, _a) = session("alice", 2);
        let (b, _b) = session("bob", 3);
        assert_eq!(join(&mut r, &a, "alice").err(), Some("not-authorized"));
        r.config.password = None;
        join(&mut r, &a, "alice").unwrap();
        assert_eq!(join(&mut r, &b, "alice").err(), Some("conflict"));
    }

    #[test]
    fn history_is_bounded_and_replayed_with_delay() {
        let mut r = room();
        r.config.history = 2;
        let (a, _a) = session("alice", 2);
        join(&mut r, &a, "alice").unwrap();
        for i in 0..3 {
            let m = parse_element(
                format!(
                    "<message xmlns='jabber:client' type='groupchat'><body>{i}</body></message>"
                )
                .as_bytes(),
                4096,
            )
            .unwrap();
            r.groupchat("alice@localhost/r", &m, None, &mut Vec::new())
                .unwrap();
        }
        let (b, _b) = session("bob", 3);
        let out = join(&mut r, &b, "bob").unwrap();
        let bodies: Vec<String> = out
            .iter()
            .filter(|d| d.to.id == 3)
            .map(parsed)
            .filter(|m| m.has_child("delay", ns::DELAY))
            .map(|m| m.get_child("body", ns::CLIENT).unwrap().text())
            .collect();
        assert_eq!(bodies, vec!["1", "2"]);
    }
}
