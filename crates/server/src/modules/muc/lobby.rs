//! Jitsi's lobby: a stranger who knocks at a members-only meeting waits in
//! a room of its own until a moderator admits or denies them. It is here
//! because unmodified lib-jitsi-meet (its `Lobby.js`, `ChatRoom.ts`) speaks
//! this protocol to Prosody's `mod_muc_lobby_rooms`, and it is plain
//! XEP-0045 but for where the rooms live and who may enter them:
//!
//! - the host's disco#info names the lobby service with the identity
//!   `component/lobbyrooms` (the `Service`'s `host_identity`); without it
//!   the client says the lobby is not supported;
//! - a room whose owner turned the lobby on ([`CONFIG_FIELD`]) and made it
//!   members-only names its lobby room (`room@lobby.<host>`) in its
//!   `muc#roominfo` and in the `registration-required` refusal a
//!   non-member gets (`<lobbyroom xmlns='http://jitsi.org/jitmeet'>`);
//! - anyone may enter that lobby room while its main room has the lobby
//!   on; the main room's moderators are its owners there (moderator role:
//!   they see the knockers' real JIDs and may kick them, which is how they
//!   deny), knockers are participants who see no one's real JID;
//! - a moderator admits with a mediated invitation to the main room
//!   (XEP-0045 §7.8.2, which makes the invitee a member), addressed to the
//!   knocker's full JID;
//! - turning the lobby off destroys the lobby room with the main room as
//!   the alternate venue (§10.9), so that waiting clients go in; the main
//!   room ending destroys it without one.
//!
//! Lobby rooms live in the MUC's map beside the rooms (keyed by their own
//! JIDs, on their own domain) and go through the same request paths; this
//! module holds only what differs. They are temporary, hidden, never
//! persistent, keep no history and are never archived: knocking chat is
//! ephemeral. Creating one counts against no one's `max_rooms_per_user`.

use std::sync::{Arc, Mutex};

use minidom::Element;
use xmpp_core::forms::field;
use xmpp_core::ns;
use xmpp_core::stanza::ElementExt;

use super::room::{Affiliation, Refusal, Room, RoomConfig};
use super::{Entering, Shared, find, lock, new_secret, send, settle};
use crate::hub::{Server, Service, Session};

pub static SERVICE: Service = Service {
    name: "lobby",
    subdomain: "lobby",
    identity: ("conference", "text", "Lobby"),
    host_identity: Some(("component", "lobbyrooms")),
    features: &[ns::MUC],
    info_form: |_| None,
    handle: super::handle,
    enabled: |c| c.muc.enabled && c.muc.lobby,
};

/// The owner's form field that gives a room a lobby (Jitsi's meetings get
/// it from the focus).
pub const CONFIG_FIELD: &str = "conclave#roomconfig_lobby";

/// Owners of a lobby room may not configure or destroy it: it lives and
/// dies with its main room's lobby setting.
pub const OWNER_REFUSAL: Refusal = "not-allowed";

/// Why a lobby room may not be entered: its main room is gone or has no
/// lobby (now). XEP-0045 §10.1.1 refuses a room the user may not create
/// with `not-allowed`; the text is Prosody's, on which lib-jitsi-meet
/// tries the main room instead (the lobby was turned off: it gets in).
const CLOSED: Refusal = "not-allowed";
const CLOSED_TEXT: &str = "Room creation is restricted";

/// Whether a room has a lobby now: its owner turned it on and only
/// members may enter, so that strangers have somewhere to knock.
pub fn open(c: &RoomConfig) -> bool {
    c.members_only && c.lobby
}

/// A new lobby room's configuration: temporary, hidden, semi-anonymous
/// (knockers see no one's real JID), no history for later knockers, no
/// invitations or subject from knockers.
pub fn room_config() -> RoomConfig {
    RoomConfig {
        persistent: false,
        public: false,
        members_only: false,
        non_anonymous: false,
        history: 0,
        allow_invites: false,
        change_subject: false,
        lobby: false,
        ..RoomConfig::new(0)
    }
}

/// A lobby room's affiliation for `bare`, from its main room: those who
/// moderate there own the lobby; everyone else is no one in particular.
pub fn affiliation(main: &Room, bare: &str) -> Affiliation {
    if main.moderates(bare) {
        Affiliation::Owner
    } else {
        Affiliation::None
    }
}

/// Whether `room_jid` is a lobby room (on a lobby service's domain).
pub fn is_lobby(srv: &Server, room_jid: &str) -> bool {
    domain(room_jid)
        .and_then(|d| srv.service(d))
        .is_some_and(|svc| std::ptr::eq(svc, &SERVICE))
}

/// The lobby room of a room on the conference service, if its host has a
/// lobby service: same node, `lobby.<host>`.
pub fn of(srv: &Server, main_jid: &str) -> Option<String> {
    swap(srv, main_jid, &super::SERVICE, &SERVICE)
}

/// The main room of a lobby room.
fn main_of(srv: &Server, lobby_jid: &str) -> Option<String> {
    swap(srv, lobby_jid, &SERVICE, &super::SERVICE)
}

/// `node@<from's subdomain>.<host>` as `node@<to's subdomain>.<host>`,
/// when services `from` and `to` both serve those domains.
fn swap(srv: &Server, jid: &str, from: &Service, to: &Service) -> Option<String> {
    let (node, d) = jid.split_once('@')?;
    let served = |d: &str, svc: &Service| srv.service(d).is_some_and(|s| std::ptr::eq(s, svc));
    if !served(d, from) {
        return None;
    }
    let host = d.strip_prefix(from.subdomain)?.strip_prefix('.')?;
    let other = format!("{}.{host}", to.subdomain);
    served(&other, to).then(|| format!("{node}@{other}"))
}

fn domain(jid: &str) -> Option<&str> {
    jid.split_once('@').map(|(_, d)| d)
}

/// The lobby room a room names, if it has a lobby now.
fn named(srv: &Server, r: &Room) -> Option<String> {
    open(&r.config).then(|| of(srv, &r.jid)).flatten()
}

/// For the `<error/>` of a `registration-required` refusal: where to knock.
pub fn knock_here(srv: &Server, r: &Room) -> Option<Element> {
    let jid = named(srv, r)?;
    Some(Element::bare("lobbyroom", ns::JITMEET).with_text(&jid))
}

/// For the room's `muc#roominfo` form: its lobby room.
pub fn roominfo_field(srv: &Server, r: &Room) -> Option<Element> {
    let jid = named(srv, r)?;
    Some(field(
        "muc#roominfo_lobbyroom",
        None,
        Some("Lobby room"),
        &[&jid],
    ))
}

/// A join (or presence update) to a lobby room. The main room is locked
/// first and held until the join is done, so that turning its lobby off
/// (which destroys the lobby room under the same lock) cannot leave
/// anyone behind in a lobby that no longer exists.
pub(super) async fn enter(srv: &Server, s: &Session, lobby_jid: &str, req: Entering, el: Element) {
    let main = match main_of(srv, lobby_jid) {
        Some(j) => find(srv, &j).await.map(|m| (j, m)),
        None => None,
    };
    let mut out = Vec::new();
    let mut entered = None;
    let result = match &main {
        None => Err(CLOSED),
        Some((main_jid, main)) => {
            let m = lock(main);
            // Forgotten while this waited for its lock: the room is gone.
            let current = srv.muc.get(main_jid).is_some_and(|x| Arc::ptr_eq(&x, main));
            match (current && open(&m.config)).then(|| room(srv, lobby_jid)) {
                None => Err(CLOSED),
                Some(None) => Err("internal-server-error"),
                Some(Some(shared)) => {
                    let mut r = lock(&shared);
                    if r.nick_of(s.full()).is_none() {
                        match affiliation(&m, s.bare()) {
                            Affiliation::None => r.affiliations.remove(s.bare()),
                            a => r.affiliations.insert(s.bare().to_owned(), a),
                        };
                    }
                    let result = req.enter(&mut r, s, &el, false, false, &mut out);
                    drop(r);
                    entered = Some(shared);
                    result
                }
            }
        }
    };
    let text = (result == Err(CLOSED))
        .then(|| Element::bare("text", ns::STANZAS_ERR).with_text(CLOSED_TEXT));
    req.entered(s, lobby_jid, &el, result, text, out);
    if let Some(shared) = entered {
        settle(srv, &shared).await;
    }
}

/// The lobby room at `jid`, made if need be. Nobody is its creator: its
/// owners come from the main room as they enter.
fn room(srv: &Server, jid: &str) -> Option<Shared> {
    if let Some(r) = srv.muc.get(jid) {
        return Some(r);
    }
    let Some(secret) = new_secret() else {
        tracing::error!("no random bytes for a new lobby room's key");
        return None;
    };
    let fresh = Room::new(jid.to_owned(), room_config(), secret);
    Some(
        srv.muc
            .lock()
            .entry(jid.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(fresh)))
            .clone(),
    )
}

/// After the owner changed the main room's configuration: a lobby that is
/// no longer wanted (members-only or the lobby turned off) is destroyed,
/// pointing its occupants at the main room, which they may now enter.
pub(super) fn main_changed(srv: &Server, main_jid: &str, main: &Shared) {
    let m = lock(main);
    if !open(&m.config) {
        close(srv, main_jid, Some(main_jid), "The lobby is closed");
    }
}

/// The main room is gone: so is its lobby, with nowhere to go.
pub(super) fn main_gone(srv: &Server, main_jid: &str) {
    close(srv, main_jid, None, "The room is gone");
}

fn close(srv: &Server, main_jid: &str, alternate: Option<&str>, reason: &str) {
    let Some(lobby_jid) = of(srv, main_jid) else {
        return;
    };
    let Some(shared) = srv.muc.get(&lobby_jid) else {
        return;
    };
    srv.muc.remove(&lobby_jid);
    let mut out = Vec::new();
    lock(&shared).destroy(Some(reason), alternate, &mut out);
    send(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::muc::room::Role;
    use crate::modules::muc::room::tests::{join, session};

    #[test]
    fn a_room_has_a_lobby_only_when_members_only_with_the_lobby_on() {
        let mut c = RoomConfig::new(20);
        assert!(!open(&c), "off by default");
        c.members_only = true;
        assert!(!open(&c), "a members-only room without the option");
        c.lobby = true;
        assert!(open(&c));
        c.members_only = false;
        assert!(!open(&c), "the option alone");
    }

    #[test]
    fn lobby_rooms_are_ephemeral_and_hide_real_jids() {
        let c = room_config();
        assert!(!c.persistent && !c.public && !c.members_only && !c.lobby);
        assert!(!c.non_anonymous, "knockers must not see each other");
        assert_eq!(c.history, 0, "a later knocker hears nothing earlier");
        assert!(c.password.is_none());
    }

    #[test]
    fn those_who_moderate_the_main_room_own_its_lobby() {
        let mut main = Room::new(
            "m@conference.localhost".into(),
            RoomConfig::new(20),
            vec![1; 32],
        );
        main.affiliations
            .insert("owner@localhost".into(), Affiliation::Owner);
        main.affiliations
            .insert("admin@localhost".into(), Affiliation::Admin);
        main.affiliations
            .insert("member@localhost".into(), Affiliation::Member);
        let (voiced, _rx) = session("voiced", 1);
        join(&mut main, &voiced, "voiced").unwrap();
        main.occupants.get_mut("voiced").unwrap().role = Role::Moderator;
        assert_eq!(affiliation(&main, "owner@localhost"), Affiliation::Owner);
        assert_eq!(affiliation(&main, "admin@localhost"), Affiliation::Owner);
        assert_eq!(affiliation(&main, "voiced@localhost"), Affiliation::Owner);
        assert_eq!(affiliation(&main, "member@localhost"), Affiliation::None);
        assert_eq!(affiliation(&main, "stranger@localhost"), Affiliation::None);
    }
}
