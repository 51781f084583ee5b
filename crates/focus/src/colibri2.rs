//! Colibri2, the focus's requests to a bridge that runs apart (Jicofo to
//! Jitsi Videobridge), and the stats a bridge publishes in the brewery
//! room, sans IO: typed requests to elements and back, both sides.
//!
//! One IQ set, `<conference-modify xmlns='jitsi:colibri2' meeting-id name
//! create expire>`, with an `<endpoint id create expire>` per endpoint it
//! changes: `<transport>` (the client's ICE-UDP transport inside, or
//! `ice-restart`), `<sources>` (everything the endpoint sends, one
//! `<media-source>` per kind), `<force-mute>`. The answer,
//! `<conference-modified>`, carries the bridge's transport of each endpoint
//! created or restarted. The media elements are Jingle's (XEP-0176/0320/
//! 0339), built and read by [`crate::jingle`]'s helpers.
//!
//! Cascading (Jitsi's relays): `<relay id create expire>` links the
//! conference to the same conference on another bridge (`id` names that
//! bridge): `<transport ice-controlling>` with the other side's ICE-UDP
//! transport once known, and `<endpoints>`, one `<endpoint id expire>`
//! with its `<sources>` per endpoint that lives there. The answer carries
//! each relay's transport as it does an endpoint's.

use std::net::IpAddr;

use conclave_bridge::api::{EndpointSources, LocalTransport, MediaKind, RemoteTransport};
use minidom::Element;
use xmpp_core::stanza::ElementExt;

use crate::jingle::{
    self, NS_COLIBRI, NS_ICE_UDP, append_sources, candidate_el, check_sources, elem,
    fingerprint_el, kind_name, parse_description, parse_transport, transport_el,
};

/// Jitsi's colibri2 namespace (`Colibri2Element.NAMESPACE`).
pub const NS_COLIBRI2: &str = "jitsi:colibri2";

/// Most endpoints one request may name: a request is one conference's
/// changes, and a conference is a room.
pub const MAX_ENDPOINTS: usize = 1000;

/// A request the bridge cannot take as is: `bad-request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Colibri2Error(pub String);

impl std::fmt::Display for Colibri2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad colibri2: {}", self.0)
    }
}

impl std::error::Error for Colibri2Error {}

fn bad(why: impl Into<String>) -> Colibri2Error {
    Colibri2Error(why.into())
}

impl From<jingle::JingleError> for Colibri2Error {
    fn from(e: jingle::JingleError) -> Self {
        Colibri2Error(e.to_string())
    }
}

/// `<conference-modify>`: changes to one conference.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConferenceModify {
    pub meeting_id: String,
    /// The room's JID: what the bridge's endpoint keys are made of.
    pub name: String,
    pub create: bool,
    pub expire: bool,
    pub endpoints: Vec<EndpointModify>,
    pub relays: Vec<RelayModify>,
}

/// `<relay>`: changes to the conference's link to another bridge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RelayModify {
    /// The other bridge, as the focus names it.
    pub id: String,
    pub create: bool,
    pub expire: bool,
    /// Set at creation: this side controls ICE (the other does not).
    pub ice_controlling: bool,
    /// The other bridge's transport for the relay.
    pub transport: Option<RemoteTransport>,
    /// Endpoints of the other bridge that came, changed or went.
    pub endpoints: Vec<RelayEndpoint>,
}

/// One endpoint behind a relay: what it sends, or that it is gone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RelayEndpoint {
    pub id: String,
    pub expire: bool,
    pub sources: Option<EndpointSources>,
}

/// `<conference-modified>`: the bridge's transports, of endpoints and of
/// relays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Modified {
    pub endpoints: Vec<EndpointModified>,
    pub relays: Vec<EndpointModified>,
}

/// `<endpoint>`: changes to one endpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointModify {
    pub id: String,
    pub create: bool,
    pub expire: bool,
    /// The client's transport, from its session-accept or transport-info.
    pub transport: Option<RemoteTransport>,
    /// New ICE credentials wanted (an in-place ICE restart).
    pub ice_restart: bool,
    /// Everything it sends now; `None` leaves its sources as they are.
    pub sources: Option<EndpointSources>,
    pub force_mute: Vec<(MediaKind, bool)>,
}

/// One endpoint (or relay) in `<conference-modified>`: the bridge's
/// transport for one created or restarted.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointModified {
    pub id: String,
    pub transport: Option<LocalTransport>,
}

fn flag(el: &Element, attr: &str) -> bool {
    matches!(el.attr(attr), Some("true" | "1"))
}

fn set_flag(el: &mut Element, attr: &str, on: bool) {
    if on {
        el.set(attr, "true");
    }
}

fn kind_of(name: &str) -> Option<MediaKind> {
    match name {
        "audio" => Some(MediaKind::Audio),
        "video" => Some(MediaKind::Video),
        _ => None,
    }
}

/// The request element (the IQ's payload).
pub fn modify(c: &ConferenceModify) -> Element {
    let mut el = elem(
        "conference-modify",
        NS_COLIBRI2,
        &[("meeting-id", &c.meeting_id), ("name", &c.name)],
    );
    set_flag(&mut el, "create", c.create);
    set_flag(&mut el, "expire", c.expire);
    for e in &c.endpoints {
        let mut ep = elem("endpoint", NS_COLIBRI2, &[("id", &e.id)]);
        set_flag(&mut ep, "create", e.create);
        set_flag(&mut ep, "expire", e.expire);
        if e.create || e.transport.is_some() || e.ice_restart {
            let mut t = Element::bare("transport", NS_COLIBRI2);
            // The bridge is the controlling ICE agent, as Jitsi's is.
            set_flag(&mut t, "ice-controlling", e.create);
            set_flag(&mut t, "ice-restart", e.ice_restart);
            if let Some(r) = &e.transport {
                t.append_child(remote_transport_el(r));
            }
            ep.append_child(t);
        }
        if let Some(s) = &e.sources {
            ep.append_child(sources_el(&e.id, s));
        }
        for (kind, muted) in &e.force_mute {
            ep.append_child(elem(
                "force-mute",
                NS_COLIBRI2,
                &[(kind_name(*kind), if *muted { "true" } else { "false" })],
            ));
        }
        el.append_child(ep);
    }
    for r in &c.relays {
        let mut relay = elem("relay", NS_COLIBRI2, &[("id", &r.id)]);
        set_flag(&mut relay, "create", r.create);
        set_flag(&mut relay, "expire", r.expire);
        if r.create || r.transport.is_some() {
            let mut t = Element::bare("transport", NS_COLIBRI2);
            set_flag(&mut t, "ice-controlling", r.ice_controlling);
            if let Some(remote) = &r.transport {
                t.append_child(remote_transport_el(remote));
            }
            relay.append_child(t);
        }
        if !r.endpoints.is_empty() {
            let mut eps = Element::bare("endpoints", NS_COLIBRI2);
            for e in &r.endpoints {
                let mut ep = elem("endpoint", NS_COLIBRI2, &[("id", &e.id)]);
                set_flag(&mut ep, "expire", e.expire);
                if let Some(s) = &e.sources {
                    ep.append_child(sources_el(&e.id, s));
                }
                eps.append_child(ep);
            }
            relay.append_child(eps);
        }
        el.append_child(relay);
    }
    el
}

/// `<sources>`: everything endpoint `id` sends, a `<media-source>` per kind.
fn sources_el(id: &str, s: &EndpointSources) -> Element {
    let mut sources = Element::bare("sources", NS_COLIBRI2);
    for kind in [MediaKind::Audio, MediaKind::Video] {
        if !s.sources.iter().any(|x| x.kind == kind) {
            continue;
        }
        let suffix = if kind == MediaKind::Audio { "a0" } else { "v0" };
        let mut m = elem(
            "media-source",
            NS_COLIBRI2,
            &[("type", kind_name(kind)), ("id", &format!("{id}-{suffix}"))],
        );
        append_sources(&mut m, kind, id, s);
        sources.append_child(m);
    }
    sources
}

fn parse_sources(el: &Element, max_sources: usize) -> Result<EndpointSources, Colibri2Error> {
    let mut s = EndpointSources::default();
    for m in el.children().filter(|m| m.is("media-source", NS_COLIBRI2)) {
        let kind =
            kind_of(req(m, "type")?).ok_or_else(|| bad("media-source neither audio nor video"))?;
        parse_description(m, kind, &mut s)?;
    }
    check_sources(&s, max_sources)?;
    Ok(s)
}

fn parse_remote_transport(el: &Element) -> Result<Option<RemoteTransport>, Colibri2Error> {
    match el.get_child("transport", NS_ICE_UDP) {
        Some(t) => {
            let mut r = RemoteTransport::default();
            parse_transport(t, &mut r)?;
            Ok(Some(r))
        }
        None => Ok(None),
    }
}

fn parse_relay(el: &Element, max_sources: usize) -> Result<RelayModify, Colibri2Error> {
    let mut r = RelayModify {
        id: req(el, "id")?.to_owned(),
        create: flag(el, "create"),
        expire: flag(el, "expire"),
        ..Default::default()
    };
    for child in el.children() {
        if child.is("transport", NS_COLIBRI2) {
            r.ice_controlling = flag(child, "ice-controlling");
            r.transport = parse_remote_transport(child)?;
        } else if child.is("endpoints", NS_COLIBRI2) {
            for ep in child.children().filter(|e| e.is("endpoint", NS_COLIBRI2)) {
                if r.endpoints.len() == MAX_ENDPOINTS {
                    return Err(bad("too many endpoints behind a relay"));
                }
                let id = req(ep, "id")?.to_owned();
                if r.endpoints.iter().any(|o| o.id == id) {
                    return Err(bad(format!("relayed endpoint {id:?} named twice")));
                }
                let sources = match ep.get_child("sources", NS_COLIBRI2) {
                    Some(s) => Some(parse_sources(s, max_sources)?),
                    None => None,
                };
                r.endpoints.push(RelayEndpoint {
                    id,
                    expire: flag(ep, "expire"),
                    sources,
                });
            }
        }
    }
    Ok(r)
}

fn remote_transport_el(r: &RemoteTransport) -> Element {
    let mut t = elem(
        "transport",
        NS_ICE_UDP,
        &[("ufrag", &r.ufrag), ("pwd", &r.pwd)],
    );
    for fp in &r.fingerprints {
        t.append_child(fingerprint_el(fp));
    }
    for (i, c) in r.candidates.iter().enumerate() {
        t.append_child(candidate_el(c, &format!("c{i}")));
    }
    t
}

/// The brewery room's configuration, as whoever made it submits it:
/// hidden from room lists, real JIDs shown (the focus trusts a bridge by
/// its JID, a configured component's domain).
pub fn brewery_config(room: &str, id: &str) -> Element {
    let field = |var: &str, value: &str| {
        Element::bare("field", xmpp_core::ns::DATA_FORMS)
            .with("var", var)
            .text_child("value", xmpp_core::ns::DATA_FORMS, value)
    };
    let mut form = Element::bare("x", xmpp_core::ns::DATA_FORMS).with("type", "submit");
    form.append_child(field(
        "FORM_TYPE",
        "http://jabber.org/protocol/muc#roomconfig",
    ));
    form.append_child(field("muc#roomconfig_whois", "anyone"));
    form.append_child(field("muc#roomconfig_publicroom", "0"));
    let mut q = Element::bare("query", xmpp_core::ns::MUC_OWNER);
    q.append_child(form);
    let mut iq = Element::bare("iq", xmpp_core::ns::CLIENT)
        .with("to", room)
        .with("type", "set")
        .with("id", id);
    iq.append_child(q);
    iq
}

fn req<'a>(el: &'a Element, attr: &'a str) -> Result<&'a str, Colibri2Error> {
    match el.attr(attr) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(bad(format!("<{}> without {attr}", el.name()))),
    }
}

/// Reads a request. `max_sources` bounds what one endpoint may send, as
/// for Jingle.
pub fn parse_modify(el: &Element, max_sources: usize) -> Result<ConferenceModify, Colibri2Error> {
    if !el.is("conference-modify", NS_COLIBRI2) {
        return Err(bad("not a conference-modify"));
    }
    let mut c = ConferenceModify {
        meeting_id: req(el, "meeting-id")?.to_owned(),
        name: el.attr("name").unwrap_or("").to_owned(),
        create: flag(el, "create"),
        expire: flag(el, "expire"),
        endpoints: Vec::new(),
        relays: Vec::new(),
    };
    for r in el.children().filter(|e| e.is("relay", NS_COLIBRI2)) {
        if c.relays.len() == MAX_ENDPOINTS {
            return Err(bad("too many relays"));
        }
        let r = parse_relay(r, max_sources)?;
        if c.relays.iter().any(|o| o.id == r.id) {
            return Err(bad(format!("relay {:?} named twice", r.id)));
        }
        c.relays.push(r);
    }
    if c.create && c.name.is_empty() {
        return Err(bad("a conference is created with a name"));
    }
    for ep in el.children().filter(|e| e.is("endpoint", NS_COLIBRI2)) {
        if c.endpoints.len() == MAX_ENDPOINTS {
            return Err(bad("too many endpoints"));
        }
        let mut e = EndpointModify {
            id: req(ep, "id")?.to_owned(),
            create: flag(ep, "create"),
            expire: flag(ep, "expire"),
            ..Default::default()
        };
        if c.endpoints.iter().any(|o| o.id == e.id) {
            return Err(bad(format!("endpoint {:?} named twice", e.id)));
        }
        for child in ep.children() {
            if child.is("transport", NS_COLIBRI2) {
                e.ice_restart = flag(child, "ice-restart");
                e.transport = parse_remote_transport(child)?;
            } else if child.is("sources", NS_COLIBRI2) {
                e.sources = Some(parse_sources(child, max_sources)?);
            } else if child.is("force-mute", NS_COLIBRI2) {
                for kind in [MediaKind::Audio, MediaKind::Video] {
                    match child.attr(kind_name(kind)) {
                        Some("true") => e.force_mute.push((kind, true)),
                        Some("false") => e.force_mute.push((kind, false)),
                        Some(_) => return Err(bad("force-mute takes true or false")),
                        None => {}
                    }
                }
            }
        }
        c.endpoints.push(e);
    }
    Ok(c)
}

/// The answer element.
pub fn modified(meeting_id: &str, m: &Modified) -> Element {
    let mut el = elem(
        "conference-modified",
        NS_COLIBRI2,
        &[("meeting-id", meeting_id)],
    );
    for (name, list) in [("endpoint", &m.endpoints), ("relay", &m.relays)] {
        for e in list {
            let mut ep = elem(name, NS_COLIBRI2, &[("id", &e.id)]);
            if let Some(t) = &e.transport {
                let mut outer = Element::bare("transport", NS_COLIBRI2);
                outer.append_child(transport_el(&e.id, t));
                ep.append_child(outer);
            }
            el.append_child(ep);
        }
    }
    el
}

/// Reads an answer: the bridge's transport per endpoint and relay.
pub fn parse_modified(el: &Element) -> Result<Modified, Colibri2Error> {
    if !el.is("conference-modified", NS_COLIBRI2) {
        return Err(bad("not a conference-modified"));
    }
    let read = |name: &str| -> Result<Vec<EndpointModified>, Colibri2Error> {
        let mut out = Vec::new();
        for ep in el.children().filter(|e| e.is(name, NS_COLIBRI2)) {
            let transport = match ep
                .get_child("transport", NS_COLIBRI2)
                .and_then(|t| t.get_child("transport", NS_ICE_UDP))
            {
                Some(t) => Some(local_transport(t)?),
                None => None,
            };
            out.push(EndpointModified {
                id: req(ep, "id")?.to_owned(),
                transport,
            });
        }
        Ok(out)
    };
    Ok(Modified {
        endpoints: read("endpoint")?,
        relays: read("relay")?,
    })
}

fn local_transport(t: &Element) -> Result<LocalTransport, Colibri2Error> {
    let mut r = RemoteTransport::default();
    parse_transport(t, &mut r)?;
    if r.ufrag.is_empty() || r.pwd.is_empty() {
        return Err(bad("transport without ICE credentials"));
    }
    let fingerprint = r
        .fingerprints
        .into_iter()
        .next()
        .ok_or_else(|| bad("transport without a fingerprint"))?;
    Ok(LocalTransport {
        ufrag: r.ufrag,
        pwd: r.pwd,
        fingerprint,
        candidates: r.candidates,
        websocket_url: t
            .get_child("web-socket", NS_COLIBRI)
            .and_then(|w| w.attr("url"))
            .unwrap_or("")
            .to_owned(),
    })
}

/// What a bridge says of itself in the brewery room (Jitsi's
/// `<stats xmlns='http://jitsi.org/protocol/colibri'>`, name/value pairs).
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeStats {
    /// Its packet rate over its capacity (1.0: full).
    pub stress: f64,
    pub conferences: usize,
    pub endpoints: usize,
    pub version: String,
    /// Draining: it takes no new conference.
    pub drain: bool,
    /// Where its media is (the address its candidates carry), for logs.
    pub media_ip: Option<IpAddr>,
}

fn stat(name: &str, value: &str) -> Element {
    elem("stat", NS_COLIBRI, &[("name", name), ("value", value)])
}

pub fn stats_element(s: &BridgeStats) -> Element {
    let mut el = Element::bare("stats", NS_COLIBRI);
    el.append_child(stat("stress_level", &format!("{:.4}", s.stress)));
    el.append_child(stat("conferences", &s.conferences.to_string()));
    el.append_child(stat("participants", &s.endpoints.to_string()));
    el.append_child(stat("version", &s.version));
    el.append_child(stat("drain", if s.drain { "true" } else { "false" }));
    el.append_child(stat("healthy", "true"));
    if let Some(ip) = s.media_ip {
        el.append_child(stat("media_ip", &ip.to_string()));
    }
    el
}

/// Reads the stats of a brewery presence; `None` without any (not a
/// bridge). Missing or unreadable figures count as zero, a stress that is
/// not a finite number as a full bridge.
pub fn parse_stats(presence: &Element) -> Option<BridgeStats> {
    let el = presence.get_child("stats", NS_COLIBRI)?;
    let mut s = BridgeStats {
        stress: 0.0,
        conferences: 0,
        endpoints: 0,
        version: String::new(),
        drain: false,
        media_ip: None,
    };
    for st in el.children().filter(|c| c.is("stat", NS_COLIBRI)) {
        let (Some(name), Some(value)) = (st.attr("name"), st.attr("value")) else {
            continue;
        };
        match name {
            "stress_level" => {
                s.stress = value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .unwrap_or(1.0)
            }
            "conferences" => s.conferences = value.parse().unwrap_or(0),
            "participants" => s.endpoints = value.parse().unwrap_or(0),
            "version" => s.version = value.to_owned(),
            "drain" => s.drain = value == "true",
            "media_ip" => s.media_ip = value.parse().ok(),
            _ => {}
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_bridge::api::{Candidate, Fingerprint, Source, SsrcGroup};

    fn sources() -> EndpointSources {
        sources_of("ep")
    }

    fn sources_of(ep: &str) -> EndpointSources {
        let src = |ssrc, kind, name: String| Source {
            ssrc,
            kind,
            name: Some(name),
            msid: Some("m t".into()),
            video_type: None,
        };
        EndpointSources {
            sources: vec![
                src(1, MediaKind::Audio, format!("{ep}-a0")),
                src(2, MediaKind::Video, format!("{ep}-v0")),
                src(3, MediaKind::Video, format!("{ep}-v0")),
            ],
            groups: vec![SsrcGroup {
                kind: MediaKind::Video,
                semantics: "FID".into(),
                ssrcs: vec![2, 3],
            }],
        }
    }

    fn remote() -> RemoteTransport {
        RemoteTransport {
            ufrag: "cu".into(),
            pwd: "cp".into(),
            fingerprints: vec![Fingerprint {
                hash: "sha-256".into(),
                value: "AB:CD".into(),
                setup: "active".into(),
            }],
            candidates: vec![Candidate {
                foundation: "1".into(),
                component: 1,
                protocol: "udp".into(),
                priority: 7,
                ip: "127.0.0.1".parse().unwrap(),
                port: 5000,
                typ: "host".into(),
                generation: 0,
            }],
        }
    }

    #[test]
    fn a_request_reads_back_as_it_was_written() {
        let c = ConferenceModify {
            meeting_id: "m1".into(),
            name: "r@conference.localhost".into(),
            create: true,
            expire: false,
            endpoints: vec![
                EndpointModify {
                    id: "ep".into(),
                    create: true,
                    transport: Some(remote()),
                    sources: Some(sources()),
                    force_mute: vec![(MediaKind::Audio, true)],
                    ..Default::default()
                },
                EndpointModify {
                    id: "gone".into(),
                    expire: true,
                    ..Default::default()
                },
                EndpointModify {
                    id: "quiet".into(),
                    sources: Some(EndpointSources::default()),
                    ice_restart: true,
                    ..Default::default()
                },
            ],
            relays: vec![
                RelayModify {
                    id: "jvb2.localhost".into(),
                    create: true,
                    ice_controlling: true,
                    endpoints: vec![
                        RelayEndpoint {
                            id: "far".into(),
                            expire: false,
                            sources: Some(sources_of("far")),
                        },
                        RelayEndpoint {
                            id: "quiet".into(),
                            expire: false,
                            sources: None,
                        },
                    ],
                    ..Default::default()
                },
                RelayModify {
                    id: "jvb3.localhost".into(),
                    transport: Some(remote()),
                    endpoints: vec![RelayEndpoint {
                        id: "gone".into(),
                        expire: true,
                        sources: None,
                    }],
                    ..Default::default()
                },
                RelayModify {
                    id: "jvb4.localhost".into(),
                    expire: true,
                    ..Default::default()
                },
            ],
        };
        let el = modify(&c);
        // over the wire and back
        let text = xmpp_core::stanza::to_string(&el);
        let back: Element = text.parse().unwrap();
        assert_eq!(parse_modify(&back, 20).unwrap(), c);
    }

    #[test]
    fn an_answer_reads_back_with_the_bridge_transport() {
        let t = LocalTransport {
            ufrag: "bu".into(),
            pwd: "bp".into(),
            fingerprint: Fingerprint {
                hash: "sha-256".into(),
                value: "01:02".into(),
                setup: "actpass".into(),
            },
            candidates: remote().candidates,
            websocket_url: "ws://127.0.0.1:8080/colibri-ws/x/r/ep?pwd=bp".into(),
        };
        let m = Modified {
            endpoints: vec![
                EndpointModified {
                    id: "ep".into(),
                    transport: Some(t.clone()),
                },
                EndpointModified {
                    id: "other".into(),
                    transport: None,
                },
            ],
            relays: vec![EndpointModified {
                id: "jvb2.localhost".into(),
                transport: Some(LocalTransport {
                    websocket_url: String::new(),
                    ..t
                }),
            }],
        };
        let text = xmpp_core::stanza::to_string(&modified("m1", &m));
        let back: Element = text.parse().unwrap();
        assert_eq!(parse_modified(&back).unwrap(), m);
    }

    fn parse(xml: &str) -> Result<ConferenceModify, Colibri2Error> {
        let el: Element = xml.parse().unwrap();
        parse_modify(&el, 2)
    }

    #[test]
    fn bad_requests_are_refused_not_guessed() {
        let ns = NS_COLIBRI2;
        for bad in [
            // no meeting-id
            format!("<conference-modify xmlns='{ns}'/>"),
            // created without a name
            format!("<conference-modify xmlns='{ns}' meeting-id='m' create='true'/>"),
            // an endpoint without an id, or twice
            format!(
                "<conference-modify xmlns='{ns}' meeting-id='m'><endpoint/></conference-modify>"
            ),
            format!(
                "<conference-modify xmlns='{ns}' meeting-id='m'><endpoint id='a'/><endpoint id='a'/></conference-modify>"
            ),
            // a source that is no number, a kind that is neither, too many
            format!(
                "<conference-modify xmlns='{ns}' meeting-id='m'><endpoint id='a'><sources><media-source type='audio'><source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='x'/></media-source></sources></endpoint></conference-modify>"
            ),
            format!(
                "<conference-modify xmlns='{ns}' meeting-id='m'><endpoint id='a'><sources><media-source type='data'/></sources></endpoint></conference-modify>"
            ),
            format!(
                "<conference-modify xmlns='{ns}' meeting-id='m'><endpoint id='a'><sources><media-source type='audio'>{}</media-source></sources></endpoint></conference-modify>",
                "<source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='1'/><source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2'/><source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='3'/>"
            ),
            // a candidate whose address is none
            format!(
                "<conference-modify xmlns='{ns}' meeting-id='m'><endpoint id='a'><transport><transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='u' pwd='p'><candidate component='1' foundation='1' ip='nowhere' port='1' priority='1' protocol='udp' type='host'/></transport></transport></endpoint></conference-modify>"
            ),
            format!(
                "<conference-modify xmlns='{ns}' meeting-id='m'><endpoint id='a'><force-mute audio='maybe'/></endpoint></conference-modify>"
            ),
            // a relay without an id, twice, or with bad endpoints behind it
            format!("<conference-modify xmlns='{ns}' meeting-id='m'><relay/></conference-modify>"),
            format!(
                "<conference-modify xmlns='{ns}' meeting-id='m'><relay id='b'/><relay id='b'/></conference-modify>"
            ),
            format!(
                "<conference-modify xmlns='{ns}' meeting-id='m'><relay id='b'><endpoints><endpoint/></endpoints></relay></conference-modify>"
            ),
            format!(
                "<conference-modify xmlns='{ns}' meeting-id='m'><relay id='b'><endpoints><endpoint id='x'/><endpoint id='x'/></endpoints></relay></conference-modify>"
            ),
            format!(
                "<conference-modify xmlns='{ns}' meeting-id='m'><relay id='b'><endpoints><endpoint id='x'><sources><media-source type='audio'><source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='-1'/></media-source></sources></endpoint></endpoints></relay></conference-modify>"
            ),
            format!(
                "<conference-modify xmlns='{ns}' meeting-id='m'><relay id='b'><transport><transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='u' pwd='p'><candidate component='1' foundation='1' ip='x' port='1' priority='1' protocol='udp' type='host'/></transport></transport></relay></conference-modify>"
            ),
            // not colibri2 at all
            "<conference-modify xmlns='urn:other' meeting-id='m'/>".to_owned(),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
        // an answer without credentials or fingerprint is no transport
        let el: Element = format!(
            "<conference-modified xmlns='{ns}' meeting-id='m'><endpoint id='a'><transport><transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='u'/></transport></endpoint></conference-modified>"
        )
        .parse()
        .unwrap();
        assert!(parse_modified(&el).is_err());
    }

    #[test]
    fn stats_read_back_and_junk_counts_against_the_bridge() {
        let s = BridgeStats {
            stress: 0.25,
            conferences: 2,
            endpoints: 5,
            version: "0.1.0".into(),
            drain: true,
            media_ip: Some("127.0.0.1".parse().unwrap()),
        };
        let mut p = Element::bare("presence", xmpp_core::ns::CLIENT);
        p.append_child(stats_element(&s));
        let text = xmpp_core::stanza::to_string(&p);
        assert_eq!(parse_stats(&text.parse().unwrap()), Some(s));
        let junk: Element = format!(
            "<presence xmlns='jabber:client'><stats xmlns='{NS_COLIBRI}'><stat name='stress_level' value='NaN'/><stat name='conferences' value='-1'/></stats></presence>"
        )
        .parse()
        .unwrap();
        let j = parse_stats(&junk).unwrap();
        assert_eq!((j.stress, j.conferences, j.drain), (1.0, 0, false));
        let none: Element = "<presence xmlns='jabber:client'/>".parse().unwrap();
        assert_eq!(parse_stats(&none), None);
    }
}
