//! Jingle as Jitsi speaks it (XEP-0166 with RTP 0167, ICE-UDP 0176,
//! DTLS 0320, RTCP feedback 0293, header extensions 0294, sources 0339 and
//! grouping 0338), sans IO: the focus's session logic hands in plain
//! `conclave_bridge::api` types and gets elements back, and the reverse,
//! so the wire dialect is tested here and nowhere else.
//!
//! Parsing never trusts the peer: every number is parsed strictly and every
//! failure is a [`JingleError`] that maps onto the IQ error to answer with.

use std::collections::HashSet;
use std::net::IpAddr;

use conclave_bridge::api::{
    CODECS, Candidate, EndpointSources, Fingerprint, HEADER_EXTS, LocalTransport, MediaKind,
    RemoteTransport, Source, SsrcGroup,
};
use minidom::Element;
use xmpp_core::stanza::ElementExt;

pub const NS_JINGLE: &str = "urn:xmpp:jingle:1";
pub const NS_JINGLE_ERRORS: &str = "urn:xmpp:jingle:errors:1";
pub const NS_RTP: &str = "urn:xmpp:jingle:apps:rtp:1";
pub const NS_RTCP_FB: &str = "urn:xmpp:jingle:apps:rtp:rtcp-fb:0";
pub const NS_HDREXT: &str = "urn:xmpp:jingle:apps:rtp:rtp-hdrext:0";
pub const NS_SSMA: &str = "urn:xmpp:jingle:apps:rtp:ssma:0";
pub const NS_ICE_UDP: &str = "urn:xmpp:jingle:transports:ice-udp:1";
pub const NS_DTLS: &str = "urn:xmpp:jingle:apps:dtls:0";
pub const NS_GROUPING: &str = "urn:xmpp:jingle:apps:grouping:0";
/// Jitsi's own extensions: `<ssrc-info owner>` tells a receiver which
/// endpoint a source belongs to, since Jingle itself has no such notion.
pub const NS_JITMEET: &str = xmpp_core::ns::JITMEET;
/// `<web-socket>`: where the endpoint opens its bridge channel.
pub const NS_COLIBRI: &str = "http://jitsi.org/protocol/colibri";
/// `<bridge-session>`: lets the client name the bridge session it refers
/// to and ask for an ICE restart in session-info.
pub const NS_FOCUS: &str = "http://jitsi.org/protocol/focus";

/// Why a Jingle element was refused. Every variant answers `bad-request`
/// (the peer sent something we will never accept as is); where XEP-0166
/// has a more precise condition it is given too, for the client's logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JingleError {
    /// Malformed: a missing or unparsable attribute, an inconsistent group.
    BadRequest(String),
    /// An `action` that XEP-0166 (or Jitsi's legacy names) does not define.
    UnknownAction(String),
    /// More sources than the conference allows one endpoint.
    TooManySources { max: usize },
}

impl JingleError {
    /// The XMPP stanza error condition (RFC 6120 §8.3.3).
    pub fn condition(&self) -> &'static str {
        "bad-request"
    }

    /// The `urn:xmpp:jingle:errors:1` condition to add, if one fits.
    pub fn jingle_condition(&self) -> Option<&'static str> {
        match self {
            JingleError::UnknownAction(_) => Some("unsupported-info"),
            _ => None,
        }
    }
}

impl std::fmt::Display for JingleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JingleError::BadRequest(why) => write!(f, "bad jingle: {why}"),
            JingleError::UnknownAction(a) => write!(f, "unknown jingle action {a:?}"),
            JingleError::TooManySources { max } => write!(f, "more than {max} sources"),
        }
    }
}

impl std::error::Error for JingleError {}

pub(crate) fn bad(why: impl Into<String>) -> JingleError {
    JingleError::BadRequest(why.into())
}

/// The actions the focus acts on. `addsource`/`removesource` are the names
/// older Jitsi clients still send, so they fold into the standard ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SessionAccept,
    SessionInfo,
    SessionTerminate,
    TransportInfo,
    TransportAccept,
    TransportReject,
    SourceAdd,
    SourceRemove,
    /// A defined XEP-0166 action the focus does not handle (it answers
    /// these itself, e.g. with `feature-not-implemented`).
    Other(String),
}

impl Action {
    fn parse(s: &str) -> Result<Action, JingleError> {
        Ok(match s {
            "session-accept" => Action::SessionAccept,
            "session-info" => Action::SessionInfo,
            "session-terminate" => Action::SessionTerminate,
            "transport-info" => Action::TransportInfo,
            "transport-accept" => Action::TransportAccept,
            "transport-reject" => Action::TransportReject,
            "source-add" | "addsource" => Action::SourceAdd,
            "source-remove" | "removesource" => Action::SourceRemove,
            "content-accept" | "content-add" | "content-modify" | "content-reject"
            | "content-remove" | "description-info" | "security-info" | "session-initiate"
            | "transport-replace" => Action::Other(s.to_owned()),
            _ => return Err(JingleError::UnknownAction(s.to_owned())),
        })
    }
}

/// What a client's Jingle element says, in the shared types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jingle {
    pub action: Action,
    pub sid: String,
    /// Present when any content carried an ICE-UDP transport; with BUNDLE
    /// the contents share one, so they are merged into one.
    pub transport: Option<RemoteTransport>,
    pub sources: EndpointSources,
    /// `<bridge-session ice-restart='true'/>` in a session-info: an
    /// in-place ICE restart (lib-jitsi-meet's opt-in `enableIceRestart`).
    pub ice_restart: bool,
    /// `<bridge-session restart='true'/>` in a session-terminate: ICE
    /// failed, and the client wants a new session in place of this one
    /// (what lib-jitsi-meet does by default).
    pub restart: bool,
}

pub(crate) fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

/// An element with attributes, for the builders below.
pub(crate) fn elem(name: &str, ns: &str, attrs: &[(&str, &str)]) -> Element {
    attrs
        .iter()
        .fold(Element::bare(name, ns), |el, (k, v)| el.with(k, v))
}

fn payload_types(kind: MediaKind, desc: &mut Element) {
    for c in CODECS.iter().filter(|c| c.kind == kind) {
        let pt = c.pt.to_string();
        let clock = c.clock_rate.to_string();
        let channels = c.channels.to_string();
        let mut attrs = vec![
            ("id", pt.as_str()),
            ("name", c.name),
            ("clockrate", clock.as_str()),
        ];
        if kind == MediaKind::Audio {
            attrs.push(("channels", channels.as_str()));
        }
        let mut p = elem("payload-type", NS_RTP, &attrs);
        for (name, value) in c.params {
            p.append_child(elem(
                "parameter",
                NS_RTP,
                &[("name", name), ("value", value)],
            ));
        }
        for (typ, sub) in c.feedback {
            let mut attrs = vec![("type", *typ)];
            if !sub.is_empty() {
                attrs.push(("subtype", *sub));
            }
            p.append_child(elem("rtcp-fb", NS_RTCP_FB, &attrs));
        }
        desc.append_child(p);
        if let Some(rtx) = c.rtx_pt {
            let rtx = rtx.to_string();
            let mut r = elem(
                "payload-type",
                NS_RTP,
                &[("id", &rtx), ("name", "rtx"), ("clockrate", "90000")],
            );
            r.append_child(elem(
                "parameter",
                NS_RTP,
                &[("name", "apt"), ("value", &pt)],
            ));
            desc.append_child(r);
        }
    }
}

/// Appends the sources and groups of one kind; the owner goes in
/// `<ssrc-info>` because receivers map tracks to participants by it.
pub(crate) fn append_sources(
    desc: &mut Element,
    kind: MediaKind,
    owner: &str,
    s: &EndpointSources,
) {
    for src in s.sources.iter().filter(|x| x.kind == kind) {
        let ssrc = src.ssrc.to_string();
        let mut attrs = vec![("ssrc", ssrc.as_str())];
        if let Some(n) = &src.name {
            attrs.push(("name", n));
        }
        if let Some(v) = &src.video_type {
            attrs.push(("videoType", v));
        }
        let mut e = elem("source", NS_SSMA, &attrs);
        if let Some(m) = &src.msid {
            e.append_child(elem(
                "parameter",
                NS_SSMA,
                &[("name", "msid"), ("value", m)],
            ));
        }
        e.append_child(elem("ssrc-info", NS_JITMEET, &[("owner", owner)]));
        desc.append_child(e);
    }
    for g in s.groups.iter().filter(|g| g.kind == kind) {
        let mut e = elem("ssrc-group", NS_SSMA, &[("semantics", &g.semantics)]);
        for ssrc in &g.ssrcs {
            e.append_child(elem("source", NS_SSMA, &[("ssrc", &ssrc.to_string())]));
        }
        desc.append_child(e);
    }
}

pub(crate) fn fingerprint_el(fp: &Fingerprint) -> Element {
    let mut el = elem(
        "fingerprint",
        NS_DTLS,
        &[("hash", &fp.hash), ("setup", &fp.setup)],
    );
    el.append_text_node(fp.value.clone());
    el
}

pub(crate) fn candidate_el(c: &Candidate, id: &str) -> Element {
    elem(
        "candidate",
        NS_ICE_UDP,
        &[
            ("component", &c.component.to_string()),
            ("foundation", &c.foundation),
            ("generation", &c.generation.to_string()),
            ("id", id),
            ("ip", &c.ip.to_string()),
            ("port", &c.port.to_string()),
            ("priority", &c.priority.to_string()),
            ("protocol", &c.protocol),
            ("type", &c.typ),
            ("network", "0"),
        ],
    )
}

pub(crate) fn transport_el(content: &str, t: &LocalTransport) -> Element {
    let mut tr = elem(
        "transport",
        NS_ICE_UDP,
        &[("ufrag", &t.ufrag), ("pwd", &t.pwd)],
    );
    tr.append_child(fingerprint_el(&t.fingerprint));
    for (i, c) in t.candidates.iter().enumerate() {
        tr.append_child(candidate_el(c, &format!("{content}-c{i}")));
    }
    if !t.websocket_url.is_empty() {
        tr.append_child(elem("web-socket", NS_COLIBRI, &[("url", &t.websocket_url)]));
    }
    tr
}

/// The bridge's new transport after an in-place ICE restart: new
/// credentials, the same candidates and certificate, tagged with the
/// restart's `ice-generation` (which lib-jitsi-meet looks for to tell it
/// from trickled candidates).
pub fn ice_restart_transport(sid: &str, t: &LocalTransport, generation: u32) -> Element {
    let mut j = elem(
        "jingle",
        NS_JINGLE,
        &[("action", "transport-info"), ("sid", sid)],
    );
    for kind in KINDS {
        let name = kind_name(kind);
        let mut content = elem(
            "content",
            NS_JINGLE,
            &[("creator", "initiator"), ("name", name)],
        );
        let mut tr = transport_el(name, t);
        tr.set("ice-generation", &generation.to_string());
        content.append_child(tr);
        j.append_child(content);
    }
    j
}

const KINDS: [MediaKind; 2] = [MediaKind::Audio, MediaKind::Video];

/// The offer to one endpoint: the bridge's codecs, transport and every
/// other endpoint's sources. Each other's sources go through
/// [`EndpointSources::receiver_view`] here, so callers pass what senders
/// actually send and receivers never learn simulcast layers they cannot
/// get.
pub fn session_initiate(
    sid: &str,
    initiator: &str,
    bridge_session: &str,
    transport: &LocalTransport,
    others: &[(String, EndpointSources)],
) -> Element {
    let mut j = elem(
        "jingle",
        NS_JINGLE,
        &[
            ("action", "session-initiate"),
            ("initiator", initiator),
            ("sid", sid),
        ],
    );
    let views: Vec<(&str, EndpointSources)> = others
        .iter()
        .map(|(o, s)| (o.as_str(), s.receiver_view()))
        .collect();
    for kind in KINDS {
        let name = kind_name(kind);
        let mut content = elem(
            "content",
            NS_JINGLE,
            &[
                ("creator", "initiator"),
                ("name", name),
                ("senders", "both"),
            ],
        );
        let mut desc = elem("description", NS_RTP, &[("media", name)]);
        payload_types(kind, &mut desc);
        for h in HEADER_EXTS.iter().filter(|h| h.kind == kind) {
            desc.append_child(elem(
                "rtp-hdrext",
                NS_HDREXT,
                &[("id", &h.id.to_string()), ("uri", h.uri)],
            ));
        }
        // Two-byte header extensions (RFC 8285 §4.3): AV1's dependency
        // descriptor outgrows the one-byte form, and browsers send it only
        // when both forms are allowed.
        desc.append_child(elem("extmap-allow-mixed", NS_HDREXT, &[]));
        for (owner, s) in &views {
            append_sources(&mut desc, kind, owner, s);
        }
        desc.append_child(elem("rtcp-mux", NS_RTP, &[]));
        content.append_child(desc);
        content.append_child(transport_el(name, transport));
        j.append_child(content);
    }
    let mut group = elem("group", NS_GROUPING, &[("semantics", "BUNDLE")]);
    for kind in KINDS {
        group.append_child(elem("content", NS_GROUPING, &[("name", kind_name(kind))]));
    }
    j.append_child(group);
    j.append_child(elem("bridge-session", NS_FOCUS, &[("id", bridge_session)]));
    j
}

fn source_change(action: &str, sid: &str, owner: &str, s: &EndpointSources) -> Element {
    let view = s.receiver_view();
    let mut j = elem("jingle", NS_JINGLE, &[("action", action), ("sid", sid)]);
    for kind in KINDS {
        let name = kind_name(kind);
        if !view.sources.iter().any(|x| x.kind == kind) {
            continue;
        }
        let mut content = elem(
            "content",
            NS_JINGLE,
            &[("creator", "initiator"), ("name", name)],
        );
        let mut desc = elem("description", NS_RTP, &[("media", name)]);
        append_sources(&mut desc, kind, owner, &view);
        content.append_child(desc);
        j.append_child(content);
    }
    j
}

/// Tells a receiver that `owner` started sending `sources`. Takes the
/// sender's full sources and applies `receiver_view` itself, like
/// [`session_initiate`], so the two can never disagree about what a
/// receiver was told.
pub fn source_add(sid: &str, owner: &str, sources: &EndpointSources) -> Element {
    source_change("source-add", sid, owner, sources)
}

/// Tells a receiver that `owner` stopped sending `sources`; applies
/// `receiver_view` itself, matching what [`source_add`] announced.
pub fn source_remove(sid: &str, owner: &str, sources: &EndpointSources) -> Element {
    source_change("source-remove", sid, owner, sources)
}

/// Ends a session from the focus's side (XEP-0166 §6.7): `reason` is a
/// condition of §7.4 (`success`, `gone`, ...).
pub fn session_terminate(sid: &str, reason: &str, text: &str) -> Element {
    let mut j = elem(
        "jingle",
        NS_JINGLE,
        &[("action", "session-terminate"), ("sid", sid)],
    );
    let mut r = Element::bare("reason", NS_JINGLE);
    r.append_child(Element::bare(reason, NS_JINGLE));
    r.append_child(Element::bare("text", NS_JINGLE).with_text(text));
    j.append_child(r);
    j
}

fn req<'a>(el: &'a Element, attr: &'a str) -> Result<&'a str, JingleError> {
    el.attr(attr)
        .ok_or_else(|| bad(format!("<{}> without {attr}", el.name())))
}

fn num<T: std::str::FromStr>(el: &Element, attr: &str) -> Result<T, JingleError> {
    req(el, attr)?
        .parse()
        .map_err(|_| bad(format!("<{}> {attr} is not a valid number", el.name())))
}

/// `None` for an mDNS candidate (RFC 8828, `<uuid>.local`): browsers hide
/// their local addresses behind such names by default, and the bridge
/// learns the address from the browser's own connectivity checks
/// (peer-reflexive), as Jitsi's bridge does; refusing the whole message
/// for one would fail every such call.
fn parse_candidate(c: &Element) -> Result<Option<Candidate>, JingleError> {
    let ip = req(c, "ip")?;
    if ip.len() > ".local".len() && ip.to_ascii_lowercase().ends_with(".local") {
        return Ok(None);
    }
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| bad("candidate ip is not an IP address"))?;
    Ok(Some(Candidate {
        foundation: req(c, "foundation")?.to_owned(),
        component: num(c, "component")?,
        protocol: req(c, "protocol")?.to_ascii_lowercase(),
        priority: num(c, "priority")?,
        ip,
        port: num(c, "port")?,
        typ: req(c, "type")?.to_owned(),
        generation: match c.attr("generation") {
            Some(_) => num(c, "generation")?,
            None => 0,
        },
    }))
}

pub(crate) fn parse_transport(t: &Element, into: &mut RemoteTransport) -> Result<(), JingleError> {
    if into.ufrag.is_empty()
        && let Some(u) = t.attr("ufrag")
    {
        into.ufrag = u.to_owned();
    }
    if into.pwd.is_empty()
        && let Some(p) = t.attr("pwd")
    {
        into.pwd = p.to_owned();
    }
    for child in t.children() {
        if child.is("fingerprint", NS_DTLS) {
            let fp = Fingerprint {
                hash: req(child, "hash")?.to_owned(),
                value: child.text().trim().to_owned(),
                setup: child.attr("setup").unwrap_or("actpass").to_owned(),
            };
            if fp.value.is_empty() {
                return Err(bad("empty fingerprint"));
            }
            if !into.fingerprints.contains(&fp) {
                into.fingerprints.push(fp);
            }
        } else if child.is("candidate", NS_ICE_UDP)
            && let Some(c) = parse_candidate(child)?
            && !into.candidates.contains(&c)
        {
            into.candidates.push(c);
        }
    }
    Ok(())
}

pub(crate) fn parse_description(
    d: &Element,
    kind: MediaKind,
    into: &mut EndpointSources,
) -> Result<(), JingleError> {
    for child in d.children() {
        if child.is("source", NS_SSMA) {
            let ssrc: u32 = num(child, "ssrc")?;
            let msid = child
                .children()
                .find(|p| p.is("parameter", NS_SSMA) && p.attr("name") == Some("msid"))
                .and_then(|p| p.attr("value"))
                .map(str::to_owned);
            into.sources.push(Source {
                ssrc,
                kind,
                name: child.attr("name").map(str::to_owned),
                msid,
                video_type: child.attr("videoType").map(str::to_owned),
            });
        } else if child.is("ssrc-group", NS_SSMA) {
            let semantics = req(child, "semantics")?.to_owned();
            let ssrcs = child
                .children()
                .filter(|s| s.is("source", NS_SSMA))
                .map(|s| num::<u32>(s, "ssrc"))
                .collect::<Result<Vec<_>, _>>()?;
            if ssrcs.is_empty() {
                return Err(bad("empty ssrc-group"));
            }
            into.groups.push(SsrcGroup {
                kind,
                semantics,
                ssrcs,
            });
        }
    }
    Ok(())
}

/// Parses a `<jingle/>` from a client. `max_sources` bounds what one
/// endpoint may announce in one element, so a client cannot make the focus
/// fan out an unbounded source-add to everyone.
pub fn parse(el: &Element, max_sources: usize) -> Result<Jingle, JingleError> {
    if !el.is("jingle", NS_JINGLE) {
        return Err(bad("not a jingle element"));
    }
    let action = Action::parse(req(el, "action")?)?;
    let sid = req(el, "sid")?;
    if sid.is_empty() {
        return Err(bad("empty sid"));
    }
    let mut transport: Option<RemoteTransport> = None;
    let mut sources = EndpointSources::default();
    for content in el.children().filter(|c| c.is("content", NS_JINGLE)) {
        if let Some(d) = content.get_child("description", NS_RTP) {
            let media = d.attr("media").or_else(|| content.attr("name"));
            let kind = match media {
                Some("audio") => Some(MediaKind::Audio),
                Some("video") => Some(MediaKind::Video),
                _ => None,
            };
            match kind {
                Some(kind) => parse_description(d, kind, &mut sources)?,
                None if d.children().any(|c| c.is("source", NS_SSMA)) => {
                    return Err(bad(
                        "sources in a description that is neither audio nor video",
                    ));
                }
                None => {}
            }
        }
        if let Some(t) = content.get_child("transport", NS_ICE_UDP) {
            parse_transport(t, transport.get_or_insert_with(RemoteTransport::default))?;
        }
    }
    check_sources(&sources, max_sources)?;
    let bridge_flag = |attr: &str| {
        el.get_child("bridge-session", NS_FOCUS)
            .and_then(|b| b.attr(attr))
            .is_some_and(|v| v == "true" || v == "1")
    };
    let ice_restart = action == Action::SessionInfo && bridge_flag("ice-restart");
    let restart = action == Action::SessionTerminate && bridge_flag("restart");
    Ok(Jingle {
        action,
        sid: sid.to_owned(),
        transport,
        sources,
        ice_restart,
        restart,
    })
}

/// The consistency the bridge relies on: SSRCs unique, groups only over
/// announced SSRCs, and a bound on the count.
pub(crate) fn check_sources(s: &EndpointSources, max: usize) -> Result<(), JingleError> {
    if s.sources.len() > max {
        return Err(JingleError::TooManySources { max });
    }
    let mut seen = HashSet::new();
    for src in &s.sources {
        if !seen.insert(src.ssrc) {
            return Err(bad(format!("ssrc {} listed twice", src.ssrc)));
        }
    }
    for g in &s.groups {
        if let Some(missing) = g.ssrcs.iter().find(|x| !seen.contains(x)) {
            return Err(bad(format!(
                "{} group names ssrc {missing}, which is not a listed source",
                g.semantics
            )));
        }
    }
    Ok(())
}

/// Jitsi clients and the bridge attribute sources by name prefix, so a
/// client naming its sources after another endpoint could hijack that
/// endpoint's tiles: names, when present, must be `<endpoint>-…`.
pub fn validate_owner(sources: &EndpointSources, endpoint: &str) -> Result<(), JingleError> {
    let prefix = format!("{endpoint}-");
    for s in &sources.sources {
        if let Some(n) = &s.name
            && !(n.starts_with(&prefix) && n.len() > prefix.len())
        {
            return Err(bad(format!("source name {n:?} is not {endpoint}'s")));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A bridge transport, for offers built in tests.
    pub(crate) fn transport() -> LocalTransport {
        LocalTransport {
            ufrag: "uf".into(),
            pwd: "pw".into(),
            fingerprint: Fingerprint {
                hash: "sha-256".into(),
                value: "AB:CD".into(),
                setup: "actpass".into(),
            },
            candidates: vec![
                Candidate {
                    foundation: "1".into(),
                    component: 1,
                    protocol: "udp".into(),
                    priority: 2130706431,
                    ip: "192.0.2.1".parse().unwrap(),
                    port: 10000,
                    typ: "host".into(),
                    generation: 0,
                },
                Candidate {
                    foundation: "2".into(),
                    component: 1,
                    protocol: "udp".into(),
                    priority: 1694498815,
                    ip: "2001:db8::1".parse().unwrap(),
                    port: 10000,
                    typ: "srflx".into(),
                    generation: 0,
                },
            ],
            websocket_url: "wss://example.org/colibri-ws/b/c/e?pwd=x".into(),
        }
    }

    pub(crate) fn src(ssrc: u32, kind: MediaKind, name: &str) -> Source {
        Source {
            ssrc,
            kind,
            name: Some(name.into()),
            msid: Some(format!("{name}-msid")),
            video_type: (kind == MediaKind::Video).then(|| "camera".into()),
        }
    }

    fn simulcast_sender() -> EndpointSources {
        let mut sources = vec![src(1, MediaKind::Audio, "bob-a0")];
        for s in [10, 11, 12, 20, 21, 22] {
            sources.push(src(s, MediaKind::Video, "bob-v0"));
        }
        let g = |sem: &str, ssrcs: &[u32]| SsrcGroup {
            kind: MediaKind::Video,
            semantics: sem.into(),
            ssrcs: ssrcs.to_vec(),
        };
        EndpointSources {
            sources,
            groups: vec![
                g("SIM", &[10, 11, 12]),
                g("FID", &[10, 20]),
                g("FID", &[11, 21]),
                g("FID", &[12, 22]),
            ],
        }
    }

    fn content<'a>(j: &'a Element, name: &str) -> &'a Element {
        j.children()
            .find(|c| c.is("content", NS_JINGLE) && c.attr("name") == Some(name))
            .unwrap()
    }

    #[test]
    fn session_initiate_has_codecs_transport_and_stripped_sources() {
        let others = vec![("bob".to_string(), simulcast_sender())];
        let j = session_initiate("s1", "focus@x/f", "bs1", &transport(), &others);
        assert!(j.is("jingle", NS_JINGLE));
        assert_eq!(j.attr("action"), Some("session-initiate"));
        assert_eq!(j.attr("sid"), Some("s1"));
        assert_eq!(j.attr("initiator"), Some("focus@x/f"));
        let names: Vec<_> = j
            .children()
            .filter(|c| c.is("content", NS_JINGLE))
            .map(|c| (c.attr("name"), c.attr("creator"), c.attr("senders")))
            .collect();
        assert_eq!(
            names,
            vec![
                (Some("audio"), Some("initiator"), Some("both")),
                (Some("video"), Some("initiator"), Some("both"))
            ]
        );

        let audio = content(&j, "audio")
            .get_child("description", NS_RTP)
            .unwrap();
        assert_eq!(audio.attr("media"), Some("audio"));
        let opus = audio.get_child("payload-type", NS_RTP).unwrap();
        assert_eq!(opus.attr("id"), Some("111"));
        assert_eq!(opus.attr("name"), Some("opus"));
        assert_eq!(opus.attr("clockrate"), Some("48000"));
        assert_eq!(opus.attr("channels"), Some("2"));
        assert!(opus.children().any(|p| p.is("parameter", NS_RTP)
            && p.attr("name") == Some("useinbandfec")
            && p.attr("value") == Some("1")));
        assert!(opus.children().any(|p| p.is("rtcp-fb", NS_RTCP_FB)
            && p.attr("type") == Some("transport-cc")
            && p.attr("subtype").is_none()));
        let ext_ids: Vec<_> = audio
            .children()
            .filter(|c| c.is("rtp-hdrext", NS_HDREXT))
            .map(|c| c.attr("id").unwrap().to_owned())
            .collect();
        // Jicofo's ids; mid (10) so that clients tag what they send
        assert_eq!(ext_ids, ["1", "3", "5", "10"]);
        assert!(audio.has_child("rtcp-mux", NS_RTP));
        let a_src: Vec<_> = audio
            .children()
            .filter(|c| c.is("source", NS_SSMA))
            .collect();
        assert_eq!(a_src.len(), 1);
        assert_eq!(a_src[0].attr("ssrc"), Some("1"));
        assert_eq!(a_src[0].attr("name"), Some("bob-a0"));
        assert_eq!(
            a_src[0]
                .get_child("ssrc-info", NS_JITMEET)
                .unwrap()
                .attr("owner"),
            Some("bob")
        );

        let video = content(&j, "video")
            .get_child("description", NS_RTP)
            .unwrap();
        let pts: Vec<_> = video
            .children()
            .filter(|c| c.is("payload-type", NS_RTP))
            .map(|c| (c.attr("id").unwrap(), c.attr("name").unwrap()))
            .collect();
        assert_eq!(&pts[..2], &[("100", "VP8"), ("96", "rtx")]);
        assert!(pts.contains(&("107", "H264")) && pts.contains(&("99", "rtx")));
        // AV1 last, with the dependency descriptor that names its layers,
        // and the two-byte header form that descriptor needs.
        assert_eq!(&pts[pts.len() - 2..], &[("41", "AV1"), ("42", "rtx")]);
        assert!(video.children().any(|c| c.is("rtp-hdrext", NS_HDREXT)
            && c.attr("id") == Some("11")
            && c.attr("uri") == Some(conclave_bridge::svc::DD_URI)));
        assert!(video.has_child("extmap-allow-mixed", NS_HDREXT));
        let vp8 = video.get_child("payload-type", NS_RTP).unwrap();
        assert!(vp8.attr("channels").is_none());
        assert!(vp8.children().any(|p| p.is("rtcp-fb", NS_RTCP_FB)
            && p.attr("type") == Some("nack")
            && p.attr("subtype") == Some("pli")));
        let rtx = video
            .children()
            .find(|c| c.attr("id") == Some("96"))
            .unwrap();
        assert_eq!(rtx.attr("clockrate"), Some("90000"));
        let apt = rtx.get_child("parameter", NS_RTP).unwrap();
        assert_eq!(
            (apt.attr("name"), apt.attr("value")),
            (Some("apt"), Some("100"))
        );
        // Simulcast stripped: the first layer and its RTX, one FID, no SIM.
        let v_src: Vec<_> = video
            .children()
            .filter(|c| c.is("source", NS_SSMA))
            .map(|c| c.attr("ssrc").unwrap())
            .collect();
        assert_eq!(v_src, ["10", "20"]);
        let v0 = video.get_child("source", NS_SSMA).unwrap();
        assert_eq!(v0.attr("videoType"), Some("camera"));
        let msid = v0.get_child("parameter", NS_SSMA).unwrap();
        assert_eq!(msid.attr("value"), Some("bob-v0-msid"));
        let groups: Vec<_> = video
            .children()
            .filter(|c| c.is("ssrc-group", NS_SSMA))
            .collect();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].attr("semantics"), Some("FID"));
        let gs: Vec<_> = groups[0]
            .children()
            .map(|s| s.attr("ssrc").unwrap())
            .collect();
        assert_eq!(gs, ["10", "20"]);

        let t = content(&j, "video")
            .get_child("transport", NS_ICE_UDP)
            .unwrap();
        assert_eq!((t.attr("ufrag"), t.attr("pwd")), (Some("uf"), Some("pw")));
        let fp = t.get_child("fingerprint", NS_DTLS).unwrap();
        assert_eq!(fp.text(), "AB:CD");
        assert_eq!(fp.attr("hash"), Some("sha-256"));
        assert_eq!(fp.attr("setup"), Some("actpass"));
        let cands: Vec<_> = t
            .children()
            .filter(|c| c.is("candidate", NS_ICE_UDP))
            .collect();
        assert_eq!(cands.len(), 2);
        assert_ne!(cands[0].attr("id"), cands[1].attr("id"));
        assert_eq!(cands[1].attr("ip"), Some("2001:db8::1"));
        assert_eq!(cands[0].attr("network"), Some("0"));
        assert_eq!(cands[0].attr("priority"), Some("2130706431"));
        assert_eq!(
            t.get_child("web-socket", NS_COLIBRI).unwrap().attr("url"),
            Some("wss://example.org/colibri-ws/b/c/e?pwd=x")
        );

        let group = j.get_child("group", NS_GROUPING).unwrap();
        assert_eq!(group.attr("semantics"), Some("BUNDLE"));
        assert_eq!(group.children().count(), 2);
        assert_eq!(
            j.get_child("bridge-session", NS_FOCUS).unwrap().attr("id"),
            Some("bs1")
        );
    }

    #[test]
    fn source_add_and_remove_round_trip_the_receiver_view() {
        let s = simulcast_sender();
        let add = source_add("s1", "bob", &s);
        assert_eq!(add.attr("action"), Some("source-add"));
        let parsed = parse(&add, 64).unwrap();
        assert_eq!(parsed.action, Action::SourceAdd);
        assert_eq!(parsed.sources, s.receiver_view());
        let rm = source_remove("s1", "bob", &s);
        let parsed = parse(&rm, 64).unwrap();
        assert_eq!(parsed.action, Action::SourceRemove);
        assert_eq!(parsed.sources, s.receiver_view());
        assert!(parsed.transport.is_none());
    }

    /// A session-accept shaped as lib-jitsi-meet writes one (BUNDLE, the
    /// same transport in both contents, simulcast with RTX).
    const ACCEPT: &str = r#"<jingle xmlns='urn:xmpp:jingle:1' action='session-accept' initiator='focus@auth.example.org/focus' responder='room@conference.example.org/alice' sid='s1'>
  <content creator='initiator' name='audio' senders='both'>
    <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio' ssrc='1111'>
      <payload-type id='111' name='opus' clockrate='48000' channels='2'><parameter name='minptime' value='10'/></payload-type>
      <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='1111' name='alice-a0'>
        <parameter name='msid' value='s-a a-track'/>
      </source>
      <rtcp-mux/>
    </description>
    <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='cU' pwd='cPWD'>
      <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='active' required='false'>01:02:03</fingerprint>
      <candidate foundation='842163049' component='1' protocol='udp' priority='1677729535' ip='198.51.100.7' port='53421' type='srflx' rel-addr='0.0.0.0' rel-port='0' generation='0' network-id='1' network-cost='10' id='x1'/>
      <candidate foundation='1' component='1' protocol='UDP' priority='2122260223' ip='10.0.0.5' port='50000' type='host' generation='0' id='x2'/>
    </transport>
  </content>
  <content creator='initiator' name='video' senders='both'>
    <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'>
      <payload-type id='100' name='VP8' clockrate='90000'/>
      <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2001' name='alice-v0' videoType='camera'><parameter name='msid' value='s-v v-track'/></source>
      <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2002' name='alice-v0' videoType='camera'><parameter name='msid' value='s-v v-track'/></source>
      <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2003' name='alice-v0' videoType='camera'><parameter name='msid' value='s-v v-track'/></source>
      <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='3001' name='alice-v0' videoType='camera'><parameter name='msid' value='s-v v-track'/></source>
      <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='3002' name='alice-v0' videoType='camera'><parameter name='msid' value='s-v v-track'/></source>
      <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='3003' name='alice-v0' videoType='camera'><parameter name='msid' value='s-v v-track'/></source>
      <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='SIM'><source ssrc='2001'/><source ssrc='2002'/><source ssrc='2003'/></ssrc-group>
      <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'><source ssrc='2001'/><source ssrc='3001'/></ssrc-group>
      <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'><source ssrc='2002'/><source ssrc='3002'/></ssrc-group>
      <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'><source ssrc='2003'/><source ssrc='3003'/></ssrc-group>
      <rtcp-mux/>
    </description>
    <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='cU' pwd='cPWD'>
      <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='active' required='false'>01:02:03</fingerprint>
      <candidate foundation='1' component='1' protocol='udp' priority='2122260223' ip='10.0.0.5' port='50000' type='host' generation='0' id='x3'/>
    </transport>
  </content>
  <group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'><content name='audio'/><content name='video'/></group>
</jingle>"#;

    #[test]
    fn parses_a_lib_jitsi_meet_session_accept() {
        let el: Element = ACCEPT.parse().unwrap();
        let j = parse(&el, 64).unwrap();
        assert_eq!(j.action, Action::SessionAccept);
        assert_eq!(j.sid, "s1");
        assert!(!j.ice_restart);
        let t = j.transport.unwrap();
        assert_eq!((t.ufrag.as_str(), t.pwd.as_str()), ("cU", "cPWD"));
        assert_eq!(
            t.fingerprints,
            vec![Fingerprint {
                hash: "sha-256".into(),
                value: "01:02:03".into(),
                setup: "active".into(),
            }]
        );
        assert_eq!(
            t.candidates,
            vec![
                Candidate {
                    foundation: "842163049".into(),
                    component: 1,
                    protocol: "udp".into(),
                    priority: 1677729535,
                    ip: "198.51.100.7".parse().unwrap(),
                    port: 53421,
                    typ: "srflx".into(),
                    generation: 0,
                },
                Candidate {
                    foundation: "1".into(),
                    component: 1,
                    protocol: "udp".into(),
                    priority: 2122260223,
                    ip: "10.0.0.5".parse().unwrap(),
                    port: 50000,
                    typ: "host".into(),
                    generation: 0,
                },
            ]
        );
        let s = &j.sources;
        assert_eq!(s.sources.len(), 7);
        assert_eq!(
            s.sources[0],
            Source {
                ssrc: 1111,
                kind: MediaKind::Audio,
                name: Some("alice-a0".into()),
                msid: Some("s-a a-track".into()),
                video_type: None,
            }
        );
        assert_eq!(
            s.sources[1],
            Source {
                ssrc: 2001,
                kind: MediaKind::Video,
                name: Some("alice-v0".into()),
                msid: Some("s-v v-track".into()),
                video_type: Some("camera".into()),
            }
        );
        let ssrcs: Vec<u32> = s.sources.iter().map(|x| x.ssrc).collect();
        assert_eq!(ssrcs, [1111, 2001, 2002, 2003, 3001, 3002, 3003]);
        let groups: Vec<_> = s
            .groups
            .iter()
            .map(|g| (g.kind, g.semantics.as_str(), g.ssrcs.clone()))
            .collect();
        assert_eq!(
            groups,
            vec![
                (MediaKind::Video, "SIM", vec![2001, 2002, 2003]),
                (MediaKind::Video, "FID", vec![2001, 3001]),
                (MediaKind::Video, "FID", vec![2002, 3002]),
                (MediaKind::Video, "FID", vec![2003, 3003]),
            ]
        );
        assert_eq!(validate_owner(s, "alice"), Ok(()));
        assert!(validate_owner(s, "bob").is_err());
        // The receiver view of what alice sends is what others are offered.
        assert_eq!(s.receiver_view().sources.len(), 3);
    }

    fn parse_str(xml: &str) -> Result<Jingle, JingleError> {
        parse(&xml.parse::<Element>().unwrap(), 4)
    }

    fn with_desc(body: &str) -> String {
        format!(
            "<jingle xmlns='urn:xmpp:jingle:1' action='source-add' sid='s'>\
             <content name='video'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'>{body}</description></content></jingle>"
        )
    }

    fn ssma_src(ssrc: &str) -> String {
        format!("<source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='{ssrc}' name='a-v0'/>")
    }

    #[test]
    fn legacy_action_names_and_ice_restart() {
        let j =
            parse_str("<jingle xmlns='urn:xmpp:jingle:1' action='addsource' sid='s'/>").unwrap();
        assert_eq!(j.action, Action::SourceAdd);
        let j =
            parse_str("<jingle xmlns='urn:xmpp:jingle:1' action='removesource' sid='s'/>").unwrap();
        assert_eq!(j.action, Action::SourceRemove);
        let j = parse_str(
            "<jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='s'>\
             <bridge-session xmlns='http://jitsi.org/protocol/focus' id='b' ice-restart='true'/></jingle>",
        )
        .unwrap();
        assert_eq!(j.action, Action::SessionInfo);
        assert!(j.ice_restart);
        let j =
            parse_str("<jingle xmlns='urn:xmpp:jingle:1' action='content-add' sid='s'/>").unwrap();
        assert_eq!(j.action, Action::Other("content-add".into()));
    }

    #[test]
    fn missing_sid_is_bad_request() {
        let e =
            parse_str("<jingle xmlns='urn:xmpp:jingle:1' action='session-accept'/>").unwrap_err();
        assert!(matches!(e, JingleError::BadRequest(_)));
        assert_eq!(e.condition(), "bad-request");
    }

    #[test]
    fn unknown_action_is_refused() {
        let e =
            parse_str("<jingle xmlns='urn:xmpp:jingle:1' action='dance' sid='s'/>").unwrap_err();
        assert_eq!(e, JingleError::UnknownAction("dance".into()));
        assert_eq!(e.condition(), "bad-request");
        assert_eq!(e.jingle_condition(), Some("unsupported-info"));
    }

    #[test]
    fn non_numeric_ssrc_is_bad_request() {
        let e = parse_str(&with_desc(&ssma_src("12x"))).unwrap_err();
        assert!(matches!(e, JingleError::BadRequest(_)));
        let e = parse_str(&with_desc(&ssma_src("4294967296"))).unwrap_err();
        assert!(matches!(e, JingleError::BadRequest(_)));
    }

    #[test]
    fn group_over_an_unlisted_ssrc_is_bad_request() {
        let body = format!(
            "{}<ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'><source ssrc='1'/><source ssrc='2'/></ssrc-group>",
            ssma_src("1")
        );
        assert!(matches!(
            parse_str(&with_desc(&body)),
            Err(JingleError::BadRequest(_))
        ));
    }

    #[test]
    fn too_many_sources_is_refused() {
        let body: String = (1..=5).map(|i| ssma_src(&i.to_string())).collect();
        let e = parse_str(&with_desc(&body)).unwrap_err();
        assert_eq!(e, JingleError::TooManySources { max: 4 });
        assert_eq!(e.condition(), "bad-request");
        let body: String = (1..=4).map(|i| ssma_src(&i.to_string())).collect();
        assert!(parse_str(&with_desc(&body)).is_ok());
    }

    #[test]
    fn duplicated_ssrc_is_bad_request() {
        let body = format!("{}{}", ssma_src("7"), ssma_src("7"));
        assert!(matches!(
            parse_str(&with_desc(&body)),
            Err(JingleError::BadRequest(_))
        ));
    }

    #[test]
    fn bad_candidate_ip_is_bad_request_and_mdns_names_are_skipped() {
        let mdns = "<jingle xmlns='urn:xmpp:jingle:1' action='transport-info' sid='s'><content name='audio'>\
                 <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='u' pwd='p'>\
                 <candidate foundation='1' component='1' protocol='udp' priority='1' ip='9b1c7e2a-0f4d-4c3e-8a55-1d2e3f4a5b6c.local' port='1' type='host'/>\
                 <candidate foundation='2' component='1' protocol='udp' priority='1' ip='10.0.0.1' port='2' type='srflx'/>\
                 </transport></content></jingle>";
        let t = parse_str(mdns).expect("mDNS candidate skipped").transport;
        let c = t.expect("transport").candidates;
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].port, 2);
        for ip in [".local", "300.1.1.1", ""] {
            let xml = format!(
                "<jingle xmlns='urn:xmpp:jingle:1' action='transport-info' sid='s'><content name='audio'>\
                 <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='u' pwd='p'>\
                 <candidate foundation='1' component='1' protocol='udp' priority='1' ip='{ip}' port='1' type='host'/>\
                 </transport></content></jingle>"
            );
            assert!(
                matches!(parse_str(&xml), Err(JingleError::BadRequest(_))),
                "{ip}"
            );
        }
        let xml = "<jingle xmlns='urn:xmpp:jingle:1' action='transport-info' sid='s'><content name='audio'>\
                 <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='u' pwd='p'>\
                 <candidate foundation='1' component='1' protocol='udp' priority='1' ip='10.0.0.1' port='70000' type='host'/>\
                 </transport></content></jingle>";
        assert!(matches!(parse_str(xml), Err(JingleError::BadRequest(_))));
    }

    #[test]
    fn source_names_must_carry_the_endpoint_prefix() {
        let mut s = EndpointSources {
            sources: vec![src(1, MediaKind::Audio, "alice-a0")],
            groups: vec![],
        };
        assert_eq!(validate_owner(&s, "alice"), Ok(()));
        assert!(validate_owner(&s, "ali").is_err());
        assert!(validate_owner(&s, "alice-a").is_err());
        s.sources[0].name = None;
        assert_eq!(validate_owner(&s, "alice"), Ok(()));
        s.sources[0].name = Some("alice-".into());
        assert!(validate_owner(&s, "alice").is_err());
    }
}
