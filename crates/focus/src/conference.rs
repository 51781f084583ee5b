//! One conference as the focus sees it, sans IO: who is in the room, what
//! each sends, and which Jingle each must be told. Inputs are MUC presence
//! and Jingle IQs (already addressed by nick); outputs are stanzas for the
//! focus to send, and calls on the bridge through [`Media`].
//!
//! A participant is invited when it joins; source changes reach the others
//! at once if their session is up, or are queued and sent after their
//! session-accept, so that nobody misses a source that appeared while its
//! own offer was in flight.

use std::collections::HashMap;

use conclave_bridge::api::{
    EndpointKey, EndpointSources, LocalTransport, MediaKind, RemoteTransport,
};
use minidom::Element;
use xmpp_core::ns;
use xmpp_core::stanza::{self, ElementExt};

use crate::jingle::{self, Action, JingleError, NS_JINGLE};

/// What the conference asks of the bridge: the one in this process, or
/// one that runs apart (colibri2). Only what needs the bridge's answer
/// (a transport to offer) waits for it; the rest is sent in order and
/// not waited for.
pub trait Media {
    /// A new endpoint and the transport to offer it; `None` when the
    /// bridge could not make one (it went away, or refused).
    fn allocate(
        &mut self,
        key: &EndpointKey,
    ) -> impl Future<Output = Option<LocalTransport>> + Send;
    fn connect(&mut self, key: &EndpointKey, remote: RemoteTransport);
    fn set_sources(&mut self, key: &EndpointKey, sources: EndpointSources);
    fn mute(&mut self, key: &EndpointKey, kind: MediaKind, muted: bool);
    fn expire(&mut self, key: &EndpointKey);
    /// New ICE credentials for the endpoint (its media goes on over the
    /// old ones until the client's answer).
    fn restart_ice(
        &mut self,
        key: &EndpointKey,
    ) -> impl Future<Output = Option<LocalTransport>> + Send;
}

/// Namespaces of Jitsi's remote mute (`<mute>` in an IQ set).
pub const NS_MUTE_AUDIO: &str = "http://jitsi.org/jitmeet/audio";
pub const NS_MUTE_VIDEO: &str = "http://jitsi.org/jitmeet/video";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// session-initiate sent, no session-accept yet.
    Invited,
    Active,
    /// Its bridge endpoint closed: it has no media until it ends this
    /// session, with or without asking for a new one.
    Ended,
}

#[derive(Debug)]
struct Participant {
    sid: String,
    /// The bridge endpoint's ufrag, which names this allocation (it
    /// changes with an in-place ICE restart).
    ufrag: String,
    /// In-place ICE restarts so far (lib-jitsi-meet's `ice-generation`).
    ice_generation: u32,
    state: State,
    sources: EndpointSources,
    /// Source changes to send once its session is active.
    queued: Vec<Element>,
}

pub struct Conference {
    room: String,
    participants: HashMap<String, Participant>,
    max_sources: usize,
    next_id: u64,
}

impl Conference {
    pub fn new(room: &str, max_sources: usize) -> Self {
        Conference {
            room: room.to_owned(),
            participants: HashMap::new(),
            max_sources,
            next_id: 0,
        }
    }

    pub fn room(&self) -> &str {
        &self.room
    }

    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    pub fn contains(&self, nick: &str) -> bool {
        self.participants.contains_key(nick)
    }

    fn key(&self, nick: &str) -> EndpointKey {
        EndpointKey {
            conference: self.room.clone(),
            endpoint: nick.to_owned(),
        }
    }

    fn occupant(&self, nick: &str) -> String {
        format!("{}/{}", self.room, nick)
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    fn iq_set(&mut self, to_nick: &str, payload: Element) -> Element {
        let id = self.id("focus-");
        let mut iq = Element::bare("iq", ns::CLIENT)
            .with("to", &self.occupant(to_nick))
            .with("type", "set")
            .with("id", &id);
        iq.append_child(payload);
        iq
    }

    /// `nick` joined the room: invite it, with everyone else's sources.
    /// Nothing is sent if the bridge could not allocate it an endpoint.
    pub async fn joined<M: Media + Send>(&mut self, nick: &str, media: &mut M) -> Vec<Element> {
        if self.participants.contains_key(nick) {
            return Vec::new();
        }
        let key = self.key(nick);
        let Some(transport) = media.allocate(&key).await else {
            return Vec::new();
        };
        let sid = self.id("s");
        let others: Vec<(String, EndpointSources)> = self
            .participants
            .iter()
            .filter(|(_, p)| !p.sources.sources.is_empty())
            .map(|(n, p)| (self.occupant(n), p.sources.clone()))
            .collect();
        let offer =
            jingle::session_initiate(&sid, &self.occupant("focus"), &sid, &transport, &others);
        self.participants.insert(
            nick.to_owned(),
            Participant {
                sid,
                ufrag: transport.ufrag.clone(),
                ice_generation: 0,
                state: State::Invited,
                sources: EndpointSources::default(),
                queued: Vec::new(),
            },
        );
        vec![self.iq_set(nick, offer)]
    }

    /// The conference's bridge is gone: everyone's session ends and each
    /// is invited anew on `media` (Jicofo's re-invite after a bridge
    /// failure). The old endpoints are not expired: their bridge is gone.
    /// Sources reach the others again as each new session is accepted.
    pub async fn relocate<M: Media + Send>(&mut self, media: &mut M) -> Vec<Element> {
        let mut nicks: Vec<String> = self.participants.keys().cloned().collect();
        nicks.sort();
        let mut out = Vec::new();
        for nick in &nicks {
            if let Some(p) = self.participants.remove(nick) {
                let end = jingle::session_terminate(&p.sid, "success", "bridge failure");
                out.push(self.iq_set(nick, end));
            }
        }
        for nick in &nicks {
            out.extend(self.joined(nick, media).await);
        }
        out
    }

    /// The participants, by nick.
    pub fn nicks(&self) -> Vec<String> {
        self.participants.keys().cloned().collect()
    }

    /// Whether any of `sources` is already another participant's.
    fn sent_by_another(&self, nick: &str, sources: &EndpointSources) -> bool {
        self.participants
            .iter()
            .filter(|(n, _)| n.as_str() != nick)
            .any(|(_, p)| {
                p.sources
                    .sources
                    .iter()
                    .any(|o| sources.sources.iter().any(|s| s.ssrc == o.ssrc))
            })
    }

    /// `nick` left the room (or its media expired): the others stop
    /// receiving what it sent.
    pub fn left<M: Media>(&mut self, nick: &str, media: &mut M) -> Vec<Element> {
        let Some(p) = self.participants.remove(nick) else {
            return Vec::new();
        };
        media.expire(&self.key(nick));
        if p.sources.sources.is_empty() {
            return Vec::new();
        }
        self.fan_out(nick, &p.sources, false)
    }

    /// The bridge endpoint allocated with `ufrag` for `nick` is gone: the
    /// others stop expecting its sources, and its session only waits to be
    /// ended (or restarted). `None` when that endpoint is not the current
    /// one (the session was restarted since), which changes nothing.
    pub fn media_ended(&mut self, nick: &str, ufrag: &str) -> Option<Vec<Element>> {
        let p = self.participants.get_mut(nick)?;
        if p.ufrag != ufrag {
            return None;
        }
        p.state = State::Ended;
        let sources = std::mem::take(&mut p.sources);
        if sources.sources.is_empty() {
            return Some(Vec::new());
        }
        Some(self.fan_out(nick, &sources, false))
    }

    /// Tells everyone but `owner` that its `sources` came or went.
    fn fan_out(&mut self, owner: &str, sources: &EndpointSources, add: bool) -> Vec<Element> {
        let owner_jid = self.occupant(owner);
        let targets: Vec<(String, String, State)> = self
            .participants
            .iter()
            // An ended session gets everyone's sources afresh if restarted.
            .filter(|(n, p)| n.as_str() != owner && p.state != State::Ended)
            .map(|(n, p)| (n.clone(), p.sid.clone(), p.state))
            .collect();
        let mut out = Vec::new();
        for (nick, sid, state) in targets {
            let j = if add {
                jingle::source_add(&sid, &owner_jid, sources)
            } else {
                jingle::source_remove(&sid, &owner_jid, sources)
            };
            let iq = self.iq_set(&nick, j);
            match state {
                State::Active => out.push(iq),
                State::Invited | State::Ended => {
                    if let Some(p) = self.participants.get_mut(&nick) {
                        p.queued.push(iq);
                    }
                }
            }
        }
        out
    }

    /// A Jingle IQ set from `nick`. The answer (result or error) comes
    /// first in what is returned.
    pub async fn jingle<M: Media + Send>(
        &mut self,
        nick: &str,
        iq: &Element,
        media: &mut M,
    ) -> Vec<Element> {
        let Some(el) = iq.get_child("jingle", NS_JINGLE) else {
            return vec![stanza::error_reply(iq, "bad-request", None)];
        };
        let j = match jingle::parse(el, self.max_sources) {
            Ok(j) => j,
            Err(e) => return vec![jingle_error(iq, &e)],
        };
        let Some(p) = self.participants.get(nick) else {
            return vec![stanza::error_reply(iq, "item-not-found", None)];
        };
        if j.sid != p.sid {
            return vec![unknown_session(iq)];
        }
        if p.state == State::Ended && j.action != Action::SessionTerminate {
            return vec![unknown_session(iq)];
        }
        let key = self.key(nick);
        if matches!(j.action, Action::SessionAccept | Action::SourceAdd) {
            if let Err(e) = jingle::validate_owner(&j.sources, nick) {
                return vec![jingle_error(iq, &e)];
            }
            if self.sent_by_another(nick, &j.sources) {
                return vec![jingle_error(
                    iq,
                    &JingleError::BadRequest("an SSRC another participant sends".into()),
                )];
            }
        }
        let mut out = vec![stanza::iq_result(iq)];
        match j.action {
            Action::SessionAccept => {
                // XEP-0166 §7.2: one session, accepted once.
                if p.state != State::Invited {
                    return vec![out_of_order(iq)];
                }
                if let Some(t) = j.transport {
                    media.connect(&key, t);
                }
                media.set_sources(&key, j.sources.clone());
                let queued = match self.participants.get_mut(nick) {
                    Some(p) => {
                        p.state = State::Active;
                        p.sources = j.sources.clone();
                        std::mem::take(&mut p.queued)
                    }
                    None => Vec::new(),
                };
                out.extend(queued);
                if !j.sources.sources.is_empty() {
                    out.extend(self.fan_out(nick, &j.sources, true));
                }
            }
            Action::TransportInfo | Action::TransportAccept => {
                if let Some(t) = j.transport {
                    media.connect(&key, t);
                }
            }
            Action::SourceAdd => {
                let mut all = p.sources.clone();
                if all.sources.len() + j.sources.sources.len() > self.max_sources {
                    return vec![jingle_error(
                        iq,
                        &JingleError::TooManySources {
                            max: self.max_sources,
                        },
                    )];
                }
                let fresh: Vec<_> = j
                    .sources
                    .sources
                    .iter()
                    .filter(|s| !all.sources.iter().any(|o| o.ssrc == s.ssrc))
                    .cloned()
                    .collect();
                all.sources.extend(fresh);
                all.groups.extend(j.sources.groups.iter().cloned());
                media.set_sources(&key, all.clone());
                if let Some(p) = self.participants.get_mut(nick) {
                    p.sources = all;
                }
                out.extend(self.fan_out(nick, &j.sources, true));
            }
            Action::SourceRemove => {
                // Only what it sent: others are never told that someone
                // else's source went away.
                let mut removed = j.sources.clone();
                removed
                    .sources
                    .retain(|s| p.sources.sources.iter().any(|o| o.ssrc == s.ssrc));
                removed.groups.retain(|g| {
                    g.ssrcs
                        .iter()
                        .all(|s| removed.sources.iter().any(|r| r.ssrc == *s))
                });
                if removed.sources.is_empty() {
                    return out;
                }
                let mut all = p.sources.clone();
                all.sources
                    .retain(|s| !removed.sources.iter().any(|r| r.ssrc == s.ssrc));
                all.groups.retain(|g| {
                    !g.ssrcs
                        .iter()
                        .any(|s| removed.sources.iter().any(|r| r.ssrc == *s))
                });
                media.set_sources(&key, all.clone());
                if let Some(p) = self.participants.get_mut(nick) {
                    p.sources = all;
                }
                out.extend(self.fan_out(nick, &removed, false));
            }
            Action::SessionTerminate => {
                out.extend(self.left(nick, media));
                // Jicofo's re-invite: the others saw its sources go, and
                // see them again once the new session is accepted.
                if j.restart {
                    out.extend(self.joined(nick, media).await);
                }
            }
            Action::SessionInfo if j.ice_restart => {
                // In place (lib-jitsi-meet's `enableIceRestart`): the
                // bridge takes new credentials while media goes on over
                // the old pair, and the client is sent them to answer.
                if p.state != State::Active {
                    return vec![out_of_order(iq)];
                }
                let sid = p.sid.clone();
                let Some(t) = media.restart_ice(&key).await else {
                    return vec![stanza::error_reply(iq, "service-unavailable", None)];
                };
                let generation = match self.participants.get_mut(nick) {
                    Some(p) => {
                        p.ufrag = t.ufrag.clone();
                        p.ice_generation += 1;
                        p.ice_generation
                    }
                    None => return vec![stanza::error_reply(iq, "item-not-found", None)],
                };
                let offer = jingle::ice_restart_transport(&sid, &t, generation);
                out.push(self.iq_set(nick, offer));
            }
            Action::SessionInfo | Action::TransportReject => {}
            Action::Other(_) => {
                return vec![stanza::error_reply(iq, "feature-not-implemented", None)];
            }
        }
        out
    }

    /// A `<mute>` IQ from the participant `from` for `target`. A moderator's
    /// mute: the bridge stops forwarding the target's audio or video, and
    /// the target is told (Jitsi clients then mute themselves). Unmuting is
    /// for oneself only, as in Jitsi: it lifts a moderator's mute, so the
    /// bridge forwards again what the participant sends once unmuted.
    pub fn mute<M: Media>(
        &mut self,
        iq: &Element,
        from: &str,
        from_is_moderator: bool,
        media: &mut M,
    ) -> Vec<Element> {
        let Some((m, kind)) = iq.children().find_map(|c| {
            if c.is("mute", NS_MUTE_AUDIO) {
                Some((c, MediaKind::Audio))
            } else if c.is("mute", NS_MUTE_VIDEO) {
                Some((c, MediaKind::Video))
            } else {
                None
            }
        }) else {
            return vec![stanza::error_reply(iq, "bad-request", None)];
        };
        let mute = m.text().trim() == "true";
        let target = m
            .attr("jid")
            .and_then(|j| j.strip_prefix(&format!("{}/", self.room)))
            .map(str::to_owned);
        if !mute {
            if target.as_deref() != Some(from) {
                return vec![stanza::error_reply(iq, "not-allowed", None)];
            }
            if self.participants.contains_key(from) {
                media.mute(&self.key(from), kind, false);
            }
            return vec![stanza::iq_result(iq)];
        }
        if !from_is_moderator {
            return vec![stanza::error_reply(iq, "forbidden", None)];
        }
        let Some(target) = target.filter(|t| self.participants.contains_key(t)) else {
            return vec![stanza::error_reply(iq, "item-not-found", None)];
        };
        media.mute(&self.key(&target), kind, true);
        let ns = match kind {
            MediaKind::Audio => NS_MUTE_AUDIO,
            MediaKind::Video => NS_MUTE_VIDEO,
        };
        let mut tell = Element::bare("mute", ns).with("actor", iq.attr("from").unwrap_or(""));
        tell.append_text_node("true");
        let notice = self.iq_set(&target, tell);
        vec![stanza::iq_result(iq), notice]
    }
}

fn jingle_error(iq: &Element, e: &JingleError) -> Element {
    let mut reply = stanza::error_reply(iq, e.condition(), Some(&e.to_string()));
    if let Some(c) = e.jingle_condition()
        && let Some(err) = reply.get_child_mut("error", ns::CLIENT)
    {
        err.append_child(Element::bare(c, jingle::NS_JINGLE_ERRORS));
    }
    reply
}

/// XEP-0166 §7.3: an action the session's state does not allow.
fn out_of_order(iq: &Element) -> Element {
    let mut reply = stanza::error_reply(iq, "unexpected-request", None);
    if let Some(err) = reply.get_child_mut("error", ns::CLIENT) {
        err.append_child(Element::bare("out-of-order", jingle::NS_JINGLE_ERRORS));
    }
    reply
}

/// XEP-0166 §7.3: a sid the focus does not know.
fn unknown_session(iq: &Element) -> Element {
    let mut reply = stanza::error_reply(iq, "item-not-found", None);
    if let Some(err) = reply.get_child_mut("error", ns::CLIENT) {
        err.append_child(Element::bare("unknown-session", jingle::NS_JINGLE_ERRORS));
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what the conference asked of the bridge.
    #[derive(Default)]
    struct Fake {
        calls: Vec<String>,
    }

    impl Media for Fake {
        fn allocate(
            &mut self,
            key: &EndpointKey,
        ) -> impl Future<Output = Option<LocalTransport>> + Send {
            self.calls.push(format!("allocate {}", key.endpoint));
            let mut t = crate::jingle::tests::transport();
            t.ufrag = format!("uf{}", self.calls.len());
            std::future::ready(Some(t))
        }
        fn connect(&mut self, key: &EndpointKey, remote: RemoteTransport) {
            self.calls
                .push(format!("connect {} {}", key.endpoint, remote.ufrag));
        }
        fn set_sources(&mut self, key: &EndpointKey, sources: EndpointSources) {
            let ssrcs: Vec<String> = sources.sources.iter().map(|s| s.ssrc.to_string()).collect();
            self.calls
                .push(format!("sources {} [{}]", key.endpoint, ssrcs.join(",")));
        }
        fn mute(&mut self, key: &EndpointKey, kind: MediaKind, muted: bool) {
            self.calls
                .push(format!("mute {} {kind:?} {muted}", key.endpoint));
        }
        fn expire(&mut self, key: &EndpointKey) {
            self.calls.push(format!("expire {}", key.endpoint));
        }
        fn restart_ice(
            &mut self,
            key: &EndpointKey,
        ) -> impl Future<Output = Option<LocalTransport>> + Send {
            self.calls.push(format!("restart {}", key.endpoint));
            let mut t = crate::jingle::tests::transport();
            t.ufrag = format!("re{}", self.calls.len());
            t.websocket_url.clear();
            std::future::ready(Some(t))
        }
    }

    /// Runs a future that the fake bridge never makes wait.
    fn now<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the fake bridge does not wait"),
        }
    }

    impl Conference {
        fn joined_now(&mut self, nick: &str, m: &mut Fake) -> Vec<Element> {
            now(self.joined(nick, m))
        }
        fn jingle_now(&mut self, nick: &str, iq: &Element, m: &mut Fake) -> Vec<Element> {
            now(self.jingle(nick, iq, m))
        }
    }

    const ROOM: &str = "m@conference.localhost";

    fn sid_of(out: &[Element]) -> String {
        out[0]
            .get_child("jingle", NS_JINGLE)
            .and_then(|j| j.attr("sid"))
            .unwrap()
            .to_owned()
    }

    /// A Jingle IQ from `nick` as the room relays it to the focus.
    fn iq(nick: &str, action: &str, sid: &str, ssrcs: &[u32]) -> Element {
        let sources: String = ssrcs
            .iter()
            .map(|s| {
                format!(
                    "<source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='{s}' name='{nick}-a0'/>"
                )
            })
            .collect();
        let transport = if action == "session-accept" {
            "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='cuf' pwd='cpw'>\
             <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='active'>AB:CD</fingerprint>\
             </transport>"
        } else {
            ""
        };
        format!(
            "<iq xmlns='jabber:client' type='set' id='c1' from='{ROOM}/{nick}' to='focus.localhost/focus'>\
             <jingle xmlns='urn:xmpp:jingle:1' action='{action}' sid='{sid}'>\
             <content name='audio'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>{sources}</description>\
             {transport}</content></jingle></iq>"
        )
        .parse()
        .unwrap()
    }

    /// a (sending SSRC 11) and b (22), both with accepted sessions.
    fn two_in_session() -> (Fake, Conference, String, String) {
        let mut m = Fake::default();
        let mut c = Conference::new(ROOM, 20);
        let a_sid = sid_of(&c.joined_now("a", &mut m));
        c.jingle_now("a", &iq("a", "session-accept", &a_sid, &[11]), &mut m);
        let b_sid = sid_of(&c.joined_now("b", &mut m));
        c.jingle_now("b", &iq("b", "session-accept", &b_sid, &[22]), &mut m);
        (m, c, a_sid, b_sid)
    }

    /// lib-jitsi-meet's answer to failed ICE: a new session instead.
    fn restart_request(nick: &str, sid: &str) -> Element {
        format!(
            "<iq xmlns='jabber:client' type='set' id='c3' from='{ROOM}/{nick}'>\
             <jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='{sid}'>\
             <reason><connectivity-error/><text>ICE FAILED</text></reason>\
             <bridge-session xmlns='http://jitsi.org/protocol/focus' id='{sid}' restart='true'/>\
             </jingle></iq>"
        )
        .parse()
        .unwrap()
    }

    fn actions(out: &[Element]) -> Vec<(String, String)> {
        out.iter()
            .map(|e| {
                let what = match e.get_child("jingle", NS_JINGLE) {
                    Some(j) => j.attr("action").unwrap_or("").to_owned(),
                    None => e.attr("type").unwrap_or("").to_owned(),
                };
                (e.attr("to").unwrap_or("").to_owned(), what)
            })
            .collect()
    }

    fn error_condition(e: &Element) -> Option<String> {
        e.get_child("error", ns::CLIENT)
            .and_then(|err| err.children().next())
            .map(|c| c.name().to_owned())
    }

    #[test]
    fn a_joiner_is_offered_the_others_sources_and_they_are_told_of_its_own() {
        let mut m = Fake::default();
        let mut c = Conference::new(ROOM, 20);
        let a = c.joined_now("a", &mut m);
        assert_eq!(
            actions(&a),
            [(format!("{ROOM}/a"), "session-initiate".into())]
        );
        let a_sid = sid_of(&a);
        let out = c.jingle_now("a", &iq("a", "session-accept", &a_sid, &[11]), &mut m);
        assert_eq!(out[0].attr("type"), Some("result"));
        assert_eq!(m.calls, ["allocate a", "connect a cuf", "sources a [11]"]);

        // b is offered a's source; b's own comes to a by source-add
        let b = c.joined_now("b", &mut m);
        let offer = b[0].get_child("jingle", NS_JINGLE).unwrap();
        assert!(stanza::to_string(offer).contains("ssrc='11'"));
        let b_sid = sid_of(&b);
        let out = c.jingle_now("b", &iq("b", "session-accept", &b_sid, &[22]), &mut m);
        assert_eq!(
            actions(&out),
            [
                (format!("{ROOM}/b"), "result".into()),
                (format!("{ROOM}/a"), "source-add".into())
            ]
        );
        // a second session-accept is out of order and changes nothing
        let again = c.jingle_now("b", &iq("b", "session-accept", &b_sid, &[23]), &mut m);
        assert_eq!(again.len(), 1);
        assert_eq!(
            error_condition(&again[0]).as_deref(),
            Some("unexpected-request")
        );
        assert!(!m.calls.iter().any(|x| x.contains("23")));
    }

    #[test]
    fn source_changes_wait_for_a_session_that_is_not_accepted_yet() {
        let mut m = Fake::default();
        let mut c = Conference::new(ROOM, 20);
        let a_sid = sid_of(&c.joined_now("a", &mut m));
        c.jingle_now("a", &iq("a", "session-accept", &a_sid, &[11]), &mut m);
        let b_sid = sid_of(&c.joined_now("b", &mut m));
        // a adds a source while b's offer is in flight: b hears of it
        // only with its own session-accept, after the result
        let out = c.jingle_now("a", &iq("a", "source-add", &a_sid, &[12]), &mut m);
        assert_eq!(actions(&out), [(format!("{ROOM}/a"), "result".into())]);
        let out = c.jingle_now("b", &iq("b", "session-accept", &b_sid, &[]), &mut m);
        assert_eq!(
            actions(&out),
            [
                (format!("{ROOM}/b"), "result".into()),
                (format!("{ROOM}/b"), "source-add".into())
            ]
        );
    }

    #[test]
    fn nobody_can_add_or_remove_another_participants_sources() {
        let (mut m, mut c, _, b_sid) = two_in_session();
        // b claims a's ssrc
        let out = c.jingle_now("b", &iq("b", "source-add", &b_sid, &[11]), &mut m);
        assert_eq!(out.len(), 1);
        assert_eq!(error_condition(&out[0]).as_deref(), Some("bad-request"));
        // b removes a's ssrc: acknowledged, but nobody is told anything
        let out = c.jingle_now("b", &iq("b", "source-remove", &b_sid, &[11]), &mut m);
        assert_eq!(actions(&out), [(format!("{ROOM}/b"), "result".into())]);
        // its own goes out to a
        let out = c.jingle_now("b", &iq("b", "source-remove", &b_sid, &[22]), &mut m);
        assert_eq!(
            actions(&out)[1],
            (format!("{ROOM}/a"), "source-remove".into())
        );
        assert_eq!(m.calls.last().map(String::as_str), Some("sources b []"));
    }

    #[test]
    fn unknown_sessions_and_actions_are_refused() {
        let mut m = Fake::default();
        let mut c = Conference::new(ROOM, 20);
        let sid = sid_of(&c.joined_now("a", &mut m));
        let out = c.jingle_now("a", &iq("a", "session-accept", "other", &[]), &mut m);
        assert_eq!(error_condition(&out[0]).as_deref(), Some("item-not-found"));
        let out = c.jingle_now("a", &iq("a", "content-add", &sid, &[]), &mut m);
        assert_eq!(
            error_condition(&out[0]).as_deref(),
            Some("feature-not-implemented")
        );
        let out = c.jingle_now("nobody", &iq("nobody", "source-add", &sid, &[]), &mut m);
        assert_eq!(error_condition(&out[0]).as_deref(), Some("item-not-found"));
    }

    #[test]
    fn an_in_place_ice_restart_sends_new_credentials_and_a_session_restart_re_invites() {
        let (mut m, mut c, _, b_sid) = two_in_session();

        let info: Element = format!(
            "<iq xmlns='jabber:client' type='set' id='c2' from='{ROOM}/b'>\
             <jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='{b_sid}'>\
             <bridge-session xmlns='http://jitsi.org/protocol/focus' id='{b_sid}' ice-restart='true'/>\
             </jingle></iq>"
        )
        .parse()
        .unwrap();
        let before = c.participants["b"].ufrag.clone();
        for generation in ["1", "2"] {
            let out = c.jingle_now("b", &info, &mut m);
            assert_eq!(
                actions(&out),
                [
                    (format!("{ROOM}/b"), "result".into()),
                    (format!("{ROOM}/b"), "transport-info".into()),
                ]
            );
            let j = out[1].get_child("jingle", NS_JINGLE).unwrap();
            assert_eq!(j.attr("sid"), Some(b_sid.as_str()));
            let t = j
                .get_child("content", NS_JINGLE)
                .and_then(|c| c.get_child("transport", jingle::NS_ICE_UDP))
                .unwrap();
            assert_eq!(t.attr("ice-generation"), Some(generation));
            assert_eq!(t.attr("ufrag"), Some(c.participants["b"].ufrag.as_str()));
        }
        assert_ne!(c.participants["b"].ufrag, before);
        // The endpoint is the same one under its new ufrag.
        assert_eq!(c.media_ended("b", &before), None);

        m.calls.clear();
        let out = c.jingle_now("b", &restart_request("b", &b_sid), &mut m);
        assert_eq!(
            actions(&out),
            [
                (format!("{ROOM}/b"), "result".into()),
                (format!("{ROOM}/a"), "source-remove".into()),
                (format!("{ROOM}/b"), "session-initiate".into()),
            ]
        );
        assert_eq!(m.calls, ["expire b", "allocate b"]);
        let new_sid = sid_of(&out[2..]);
        assert_ne!(new_sid, b_sid);
        // The old session is gone; the new one carries on as the first did.
        let out = c.jingle_now("b", &iq("b", "source-add", &b_sid, &[23]), &mut m);
        assert_eq!(error_condition(&out[0]).as_deref(), Some("item-not-found"));
        let out = c.jingle_now("b", &iq("b", "session-accept", &new_sid, &[22]), &mut m);
        assert_eq!(
            actions(&out),
            [
                (format!("{ROOM}/b"), "result".into()),
                (format!("{ROOM}/a"), "source-add".into()),
            ]
        );
        // A plain session-terminate ends it for good.
        let out = c.jingle_now("b", &iq("b", "session-terminate", &new_sid, &[]), &mut m);
        assert_eq!(
            actions(&out),
            [
                (format!("{ROOM}/b"), "result".into()),
                (format!("{ROOM}/a"), "source-remove".into()),
            ]
        );
        assert!(!c.contains("b"));
    }

    #[test]
    fn an_endpoint_that_closed_ends_its_media_until_the_session_is_restarted() {
        let (mut m, mut c, _, b_sid) = two_in_session();
        let first = c.participants["b"].ufrag.clone();
        let out = c.media_ended("b", &first).unwrap();
        assert_eq!(
            actions(&out),
            [(format!("{ROOM}/a"), "source-remove".into())]
        );
        // Nothing but ending the session is taken on it now.
        let out = c.jingle_now("b", &iq("b", "source-add", &b_sid, &[23]), &mut m);
        assert_eq!(error_condition(&out[0]).as_deref(), Some("item-not-found"));
        let out = c.jingle_now("b", &restart_request("b", &b_sid), &mut m);
        assert_eq!(
            actions(&out),
            [
                (format!("{ROOM}/b"), "result".into()),
                (format!("{ROOM}/b"), "session-initiate".into()),
            ]
        );
        // The offer has a's sources again; the old endpoint's late news
        // changes nothing.
        let offer = out[1].get_child("jingle", NS_JINGLE).unwrap();
        let ssrcs: Vec<&str> = offer
            .children()
            .flat_map(Element::children)
            .flat_map(Element::children)
            .filter(|s| s.name() == "source")
            .filter_map(|s| s.attr("ssrc"))
            .collect();
        assert_eq!(ssrcs, ["11"]);
        assert_eq!(c.media_ended("b", &first), None);
        assert_ne!(c.participants["b"].ufrag, first);
    }

    #[test]
    fn a_leaver_is_expired_and_its_sources_removed_from_the_others() {
        let (mut m, mut c, _, _) = two_in_session();
        let out = c.left("a", &mut m);
        assert_eq!(
            actions(&out),
            [(format!("{ROOM}/b"), "source-remove".into())]
        );
        assert!(m.calls.contains(&"expire a".to_owned()));
        c.left("b", &mut m);
        assert!(c.is_empty());
    }

    #[test]
    fn only_a_moderator_mutes_and_only_oneself_unmutes() {
        let mut m = Fake::default();
        let mut c = Conference::new(ROOM, 20);
        c.joined_now("a", &mut m);
        let mute = |v: &str| -> Element {
            format!(
                "<iq xmlns='jabber:client' type='set' id='m' from='{ROOM}/b'>\
                 <mute xmlns='http://jitsi.org/jitmeet/audio' jid='{ROOM}/a'>{v}</mute></iq>"
            )
            .parse()
            .unwrap()
        };
        let out = c.mute(&mute("true"), "b", false, &mut m);
        assert_eq!(error_condition(&out[0]).as_deref(), Some("forbidden"));
        let out = c.mute(&mute("false"), "b", true, &mut m);
        assert_eq!(error_condition(&out[0]).as_deref(), Some("not-allowed"));
        let out = c.mute(&mute("true"), "b", true, &mut m);
        assert_eq!(out[0].attr("type"), Some("result"));
        assert_eq!(out[1].attr("to"), Some(&*format!("{ROOM}/a")));
        assert_eq!(
            m.calls.last().map(String::as_str),
            Some("mute a Audio true")
        );
        // a, muted, unmutes itself: the bridge forwards its audio again
        let out = c.mute(&mute("false"), "a", false, &mut m);
        assert_eq!(out[0].attr("type"), Some("result"));
        assert_eq!(
            m.calls.last().map(String::as_str),
            Some("mute a Audio false")
        );
    }

    #[test]
    fn a_conference_moved_to_another_bridge_is_invited_anew_there() {
        let (m, mut c, a_sid, b_sid) = two_in_session();
        let mut other = Fake::default();
        let out = now(c.relocate(&mut other));
        // both sessions end, then each is offered a new one, with nobody's
        // sources yet: those come as each accepts
        assert_eq!(
            actions(&out),
            [
                (format!("{ROOM}/a"), "session-terminate".into()),
                (format!("{ROOM}/b"), "session-terminate".into()),
                (format!("{ROOM}/a"), "session-initiate".into()),
                (format!("{ROOM}/b"), "session-initiate".into()),
            ]
        );
        assert_eq!(other.calls, ["allocate a", "allocate b"]);
        // the dead bridge is asked nothing more
        let before = m.calls.len();
        let new_a = sid_of(&out[2..]);
        let new_b = sid_of(&out[3..]);
        assert!(new_a != a_sid && new_b != b_sid);
        let out = c.jingle_now("a", &iq("a", "session-accept", &new_a, &[11]), &mut other);
        assert_eq!(actions(&out), [(format!("{ROOM}/a"), "result".into())]);
        let out = c.jingle_now("b", &iq("b", "session-accept", &new_b, &[22]), &mut other);
        // b hears of a's source queued while its offer was out; a of b's
        assert_eq!(
            actions(&out),
            [
                (format!("{ROOM}/b"), "result".into()),
                (format!("{ROOM}/b"), "source-add".into()),
                (format!("{ROOM}/a"), "source-add".into()),
            ]
        );
        assert_eq!(m.calls.len(), before);
    }
}
