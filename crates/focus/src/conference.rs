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

/// What the conference asks of the bridge.
pub trait Media {
    fn allocate(&mut self, key: &EndpointKey) -> LocalTransport;
    fn connect(&mut self, key: &EndpointKey, remote: RemoteTransport);
    fn set_sources(&mut self, key: &EndpointKey, sources: EndpointSources);
    fn mute(&mut self, key: &EndpointKey, kind: MediaKind, muted: bool);
    fn expire(&mut self, key: &EndpointKey);
}

/// Namespaces of Jitsi's remote mute (`<mute>` in an IQ set).
pub const NS_MUTE_AUDIO: &str = "http://jitsi.org/jitmeet/audio";
pub const NS_MUTE_VIDEO: &str = "http://jitsi.org/jitmeet/video";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// session-initiate sent, no session-accept yet.
    Invited,
    Active,
}

#[derive(Debug)]
struct Participant {
    sid: String,
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
    pub fn joined(&mut self, nick: &str, media: &mut dyn Media) -> Vec<Element> {
        if self.participants.contains_key(nick) {
            return Vec::new();
        }
        let key = self.key(nick);
        let transport = media.allocate(&key);
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
                state: State::Invited,
                sources: EndpointSources::default(),
                queued: Vec::new(),
            },
        );
        vec![self.iq_set(nick, offer)]
    }

    /// `nick` left the room (or its media expired): the others stop
    /// receiving what it sent.
    pub fn left(&mut self, nick: &str, media: &mut dyn Media) -> Vec<Element> {
        let Some(p) = self.participants.remove(nick) else {
            return Vec::new();
        };
        media.expire(&self.key(nick));
        if p.sources.sources.is_empty() {
            return Vec::new();
        }
        self.fan_out(nick, &p.sources, false)
    }

    /// Tells everyone but `owner` that its `sources` came or went.
    fn fan_out(&mut self, owner: &str, sources: &EndpointSources, add: bool) -> Vec<Element> {
        let owner_jid = self.occupant(owner);
        let targets: Vec<(String, String, State)> = self
            .participants
            .iter()
            .filter(|(n, _)| n.as_str() != owner)
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
                State::Invited => {
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
    pub fn jingle(&mut self, nick: &str, iq: &Element, media: &mut dyn Media) -> Vec<Element> {
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
        let key = self.key(nick);
        let mut out = vec![stanza::iq_result(iq)];
        match j.action {
            Action::SessionAccept => {
                if let Err(e) = jingle::validate_owner(&j.sources, nick) {
                    return vec![jingle_error(iq, &e)];
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
                if let Err(e) = jingle::validate_owner(&j.sources, nick) {
                    return vec![jingle_error(iq, &e)];
                }
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
                let gone: Vec<u32> = j.sources.sources.iter().map(|s| s.ssrc).collect();
                let mut all = p.sources.clone();
                all.sources.retain(|s| !gone.contains(&s.ssrc));
                all.groups
                    .retain(|g| !g.ssrcs.iter().any(|s| gone.contains(s)));
                media.set_sources(&key, all.clone());
                if let Some(p) = self.participants.get_mut(nick) {
                    p.sources = all;
                }
                out.extend(self.fan_out(nick, &j.sources, false));
            }
            Action::SessionTerminate => {
                out.extend(self.left(nick, media));
            }
            Action::SessionInfo | Action::TransportReject => {}
            Action::Other(_) => {
                return vec![stanza::error_reply(iq, "feature-not-implemented", None)];
            }
        }
        out
    }

    /// A moderator's `<mute>` IQ for `target`: the bridge stops forwarding
    /// the target's audio or video, and the target is told (Jitsi clients
    /// then mute themselves). Unmuting others is refused, as in Jitsi.
    pub fn mute(
        &mut self,
        iq: &Element,
        from_is_moderator: bool,
        media: &mut dyn Media,
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
        if !from_is_moderator {
            return vec![stanza::error_reply(iq, "forbidden", None)];
        }
        let mute = m.text().trim() == "true";
        if !mute {
            return vec![stanza::error_reply(iq, "not-allowed", None)];
        }
        let target = m
            .attr("jid")
            .and_then(|j| j.strip_prefix(&format!("{}/", self.room)))
            .map(str::to_owned);
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

/// XEP-0166 §7.3: a sid the focus does not know.
fn unknown_session(iq: &Element) -> Element {
    let mut reply = stanza::error_reply(iq, "item-not-found", None);
    if let Some(err) = reply.get_child_mut("error", ns::CLIENT) {
        err.append_child(Element::bare("unknown-session", jingle::NS_JINGLE_ERRORS));
    }
    reply
}
