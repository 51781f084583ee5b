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
pub const NS_JITMEET: &str = "http://jitsi.org/jitmeet";
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

fn bad(why: impl Into<String>) -> JingleError {
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
    /// `<bridge-session ice-restart='true'/>` in a session-info: the client
    /// lost connectivity and wants a fresh offer.
    pub ice_restart: bool,
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

/// Attribute names here are compile-time literals, all valid NCNames; one
/// that were not would be a bug here, so it is dropped rather than
/// panicking on a live server.
fn elem(name: &str, ns: &str, attrs: &[(&str, &str)]) -> Element {
    let mut el = Element::bare(name, ns);
    for (k, v) in attrs {
        if let Ok(k) = minidom::rxml::NcName::try_from(*k) {
            el.set_attr(minidom::rxml::Namespace::NONE, k, *v);
        }
    }
    el
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
            p.append_child(elem("parameter", NS_RTP, &[("name", name), ("value", value)]));
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
            r.append_child(elem("parameter", NS_RTP, &[("name", "apt"), ("value", &pt)]));
            desc.append_child(r);
        }
    }
}

/// Appends the sources and groups of one kind; the owner goes in
/// `<ssrc-info>` because receivers map tracks to participants by it.
fn append_sources(desc: &mut Element, kind: MediaKind, owner: &str, s: &EndpointSources) {
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
            e.append_child(elem("parameter", NS_SSMA, &[("name", "msid"), ("value", m)]));
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

fn transport_el(content: &str, t: &LocalTransport) -> Element {
    let mut tr = elem("transport", NS_ICE_UDP, &[("ufrag", &t.ufrag), ("pwd", &t.pwd)]);
    let mut fp = elem(
        "fingerprint",
        NS_DTLS,
        &[("hash", &t.fingerprint.hash), ("setup", &t.fingerprint.setup)],
    );
    fp.append_text_node(t.fingerprint.value.clone());
    tr.append_child(fp);
    for (i, c) in t.candidates.iter().enumerate() {
        tr.append_child(elem(
            "candidate",
            NS_ICE_UDP,
            &[
                ("component", &c.component.to_string()),
                ("foundation", &c.foundation),
                ("generation", &c.generation.to_string()),
                ("id", &format!("{content}-c{i}")),
                ("ip", &c.ip.to_string()),
                ("port", &c.port.to_string()),
                ("priority", &c.priority.to_string()),
                ("protocol", &c.protocol),
                ("type", &c.typ),
                ("network", "0"),
            ],
        ));
    }
    tr.append_child(elem("web-socket", NS_COLIBRI, &[("url", &t.websocket_url)]));
    tr
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
            &[("creator", "initiator"), ("name", name), ("senders", "both")],
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
        let mut content = elem("content", NS_JINGLE, &[("creator", "initiator"), ("name", name)]);
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

fn req<'a>(el: &'a Element, attr: &'a str) -> Result<&'a str, JingleError> {
    el.attr(attr)
        .ok_or_else(|| bad(format!("<{}> without {attr}", el.name())))
}

fn num<T: std::str::FromStr>(el: &Element, attr: &str) -> Result<T, JingleError> {
    req(el, attr)?
        .parse()
        .map_err(|_| bad(format!("<{}> {attr} is not a valid number", el.name())))
}

fn parse_candidate(c: &Element) -> Result<Candidate, JingleError> {
    let ip: IpAddr = req(c, "ip")?
        .parse()
        .map_err(|_| bad("candidate ip is not an IP address"))?;
    Ok(Candidate {
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
    })
}

fn parse_transport(t: &Element, into: &mut RemoteTransport) -> Result<(), JingleError> {
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
        } else if child.is("candidate", NS_ICE_UDP) {
            let c = parse_candidate(child)?;
            if !into.candidates.contains(&c) {
                into.candidates.push(c);
            }
        }
    }
    Ok(())
}

fn parse_description(
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
                    return Err(bad("sources in a description that is neither audio nor video"));
                }
                None => {}
            }
        }
        if let Some(t) = content.get_child("transport", NS_ICE_UDP) {
            parse_transport(t, transport.get_or_insert_with(RemoteTransport::default))?;
        }
    }
    check_sources(&sources, max_sources)?;
    let ice_restart = action == Action::SessionInfo
        && el
            .get_child("bridge-session", NS_FOCUS)
            .and_then(|b| b.attr("ice-restart"))
            .is_some_and(|v| v == "true" || v == "1");
    Ok(Jingle {
        action,
        sid: sid.to_owned(),
        transport,
        sources,
        ice_restart,
    })
}

/// The consistency the bridge relies on: SSRCs unique, groups only over
/// announced SSRCs, and a bound on the count.
fn check_sources(s: &EndpointSources, max: usize) -> Result<(), JingleError> {
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
