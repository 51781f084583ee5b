//! Turns the bytes of a never-ending XMPP stream into stream events and
//! whole stanzas.
//!
//! rxml's raw parser tokenises (and refuses DTDs, entities and processing
//! instructions by design); minidom's tree builder assembles elements. A depth
//! counter tells stanza boundaries apart, and a byte budget per stanza stops a
//! peer from growing a tree without bound before it is complete.

use minidom::Element;
use minidom::tree_builder::TreeBuilder;
use rxml::error::EndOrError;
use rxml::parser::WithOptions;
use rxml::{Parse, RawEvent, RawParser};

use crate::ns;

/// What the transport-independent session sees of the wire.
#[derive(Debug)]
pub enum Frame {
    /// The stream header (TCP) or `<open/>` (WebSocket).
    Open(StreamHeader),
    /// One complete top-level element.
    Stanza(Element),
    /// `</stream:stream>` or `<close/>`.
    Close,
}

/// The attributes of a stream header that the server acts on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    pub to: Option<String>,
    pub from: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
    /// The element's namespace: `http://etherx.jabber.org/streams` on TCP,
    /// the framing namespace on WebSocket.
    pub ns: String,
    /// The declared default namespace (`jabber:client` for a client).
    pub default_ns: Option<String>,
}

/// Why a stream must be closed; each maps to the RFC 6120 §4.9.3 condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    NotWellFormed,
    RestrictedXml,
    /// A stanza exceeded the byte budget.
    PolicyViolation,
    InvalidNamespace,
}

impl FramingError {
    pub fn condition(self) -> &'static str {
        match self {
            FramingError::NotWellFormed => "not-well-formed",
            FramingError::RestrictedXml => "restricted-xml",
            FramingError::PolicyViolation => "policy-violation",
            FramingError::InvalidNamespace => "invalid-namespace",
        }
    }
}

fn map_rxml_error(e: &rxml::Error, recent: &[u8]) -> FramingError {
    match e {
        rxml::Error::RestrictedXml(what) if what.contains("long") => FramingError::PolicyViolation,
        rxml::Error::RestrictedXml(_) | rxml::Error::UndeclaredEntity => {
            FramingError::RestrictedXml
        }
        // rxml reports DTD markup and processing instructions as plain
        // syntax errors; RFC 6120 §11.1 names them restricted-xml.
        _ if has_restricted_markup(recent) => FramingError::RestrictedXml,
        _ => FramingError::NotWellFormed,
    }
}

/// `<!DOCTYPE`, `<!ENTITY`, ... or a `<?` that is not the XML declaration.
fn has_restricted_markup(recent: &[u8]) -> bool {
    recent.windows(3).enumerate().any(|(i, w)| {
        (w[0] == b'<' && w[1] == b'!' && w[2].is_ascii_uppercase())
            || (w[0] == b'<' && w[1] == b'?' && !recent[i + 2..].starts_with(b"xml "))
    })
}

/// Incremental parser for one stream (TCP). A new one is made at every
/// stream restart (after STARTTLS and SASL), as RFC 6120 requires.
pub struct StreamParser {
    parser: RawParser,
    tree: TreeBuilder,
    max_stanza: usize,
    /// Bytes that the stanza being assembled has used so far.
    stanza_bytes: usize,
    opened: bool,
    closed: bool,
}

impl StreamParser {
    pub fn new(max_stanza: usize) -> Self {
        let opts = rxml::Options {
            // A single name or attribute value may not approach the stanza
            // cap on its own; text is split into chunks and counted below.
            max_token_length: max_stanza.clamp(1024, 64 * 1024),
            ..Default::default()
        };
        StreamParser {
            parser: RawParser::with_options(opts),
            tree: TreeBuilder::new(),
            max_stanza,
            stanza_bytes: 0,
            opened: false,
            closed: false,
        }
    }

    /// Feeds bytes and appends any complete frames to `out`. On error the
    /// stream is beyond repair and must be closed with the returned
    /// condition.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<Frame>) -> Result<(), FramingError> {
        if self.closed {
            return Ok(());
        }
        let chunk = data;
        loop {
            let ev = match self.parser.parse(&mut data, false) {
                Ok(Some(ev)) => ev,
                Ok(None) => return Ok(()),
                // rxml caps every token (name, attribute value, text chunk)
                // at max_token_length, so what it buffers is bounded too.
                Err(EndOrError::NeedMoreData) => return Ok(()),
                Err(EndOrError::Error(e)) => return Err(map_rxml_error(&e, chunk)),
            };
            if let Some(frame) = self.event(ev)? {
                let close = matches!(frame, Frame::Close);
                out.push(frame);
                if close {
                    self.closed = true;
                    return Ok(());
                }
            }
        }
    }

    fn event(&mut self, ev: RawEvent) -> Result<Option<Frame>, FramingError> {
        let depth = self.tree.depth();
        let len = event_len(&ev);
        if depth >= 1 {
            // Whitespace keep-alives between stanzas are not kept: they
            // would pile up as text children of the stream element.
            if depth == 1 && matches!(ev, RawEvent::Text(..)) {
                return Ok(None);
            }
            self.stanza_bytes += len;
            if self.stanza_bytes > self.max_stanza {
                return Err(FramingError::PolicyViolation);
            }
        }
        let is_foot = matches!(ev, RawEvent::ElementFoot(_));
        let is_head_close = matches!(ev, RawEvent::ElementHeadClose(_));
        if depth == 1 && is_foot {
            self.tree
                .process_event(ev)
                .map_err(|_| FramingError::NotWellFormed)?;
            return Ok(Some(Frame::Close));
        }
        self.tree.process_event(ev).map_err(|e| match e {
            minidom::Error::MissingNamespace => FramingError::InvalidNamespace,
            _ => FramingError::NotWellFormed,
        })?;
        if depth == 0 && is_head_close {
            self.opened = true;
            let root = self.tree.top().ok_or(FramingError::NotWellFormed)?;
            return Ok(Some(Frame::Open(header_of(root))));
        }
        if depth == 2 && is_foot {
            self.stanza_bytes = 0;
            let stanza = self
                .tree
                .unshift_child()
                .ok_or(FramingError::NotWellFormed)?;
            return Ok(Some(Frame::Stanza(stanza)));
        }
        Ok(None)
    }
}

fn event_len(ev: &RawEvent) -> usize {
    match ev {
        RawEvent::XmlDeclaration(m, _)
        | RawEvent::ElementHeadOpen(m, _)
        | RawEvent::Attribute(m, _, _)
        | RawEvent::ElementHeadClose(m)
        | RawEvent::ElementFoot(m)
        | RawEvent::Text(m, _) => m.len(),
    }
}

fn header_of(root: &Element) -> StreamHeader {
    let get = |k: &str| root.attr(k).map(str::to_owned);
    StreamHeader {
        to: get("to"),
        from: get("from"),
        version: get("version"),
        lang: root
            .attrs()
            .get(rxml::Namespace::xml(), "lang")
            .map(|v| v.to_string()),
        ns: root.ns(),
        default_ns: root.prefixes.get(&None).cloned(),
    }
}

/// Parses one self-contained WebSocket message (RFC 7395 §3.3: each message
/// is exactly one complete element). `<open/>` and `<close/>` in the framing
/// namespace become stream events.
pub fn parse_ws_message(data: &[u8], max_stanza: usize) -> Result<Frame, FramingError> {
    if data.len() > max_stanza {
        return Err(FramingError::PolicyViolation);
    }
    let el = parse_element(data, max_stanza)?;
    if el.ns() == ns::FRAMING {
        return match el.name() {
            "open" => Ok(Frame::Open(header_of(&el))),
            "close" => Ok(Frame::Close),
            _ => Err(FramingError::NotWellFormed),
        };
    }
    Ok(Frame::Stanza(el))
}

/// Parses a complete standalone element (WebSocket messages, BOSH bodies,
/// stored stanzas).
pub fn parse_element(data: &[u8], max_bytes: usize) -> Result<Element, FramingError> {
    if data.len() > max_bytes {
        return Err(FramingError::PolicyViolation);
    }
    let opts = rxml::Options {
        max_token_length: max_bytes.clamp(1024, 64 * 1024),
        ..Default::default()
    };
    let mut parser = RawParser::with_options(opts);
    let mut tree = TreeBuilder::new();
    let mut buf = data;
    loop {
        match parser.parse(&mut buf, true) {
            Ok(Some(ev)) => tree.process_event(ev).map_err(|e| match e {
                minidom::Error::MissingNamespace => FramingError::InvalidNamespace,
                _ => FramingError::NotWellFormed,
            })?,
            Ok(None) => break,
            Err(EndOrError::NeedMoreData) => return Err(FramingError::NotWellFormed),
            Err(EndOrError::Error(e)) => return Err(map_rxml_error(&e, data)),
        }
    }
    tree.root.ok_or(FramingError::NotWellFormed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xml:lang='en' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

    fn frames(p: &mut StreamParser, data: &[u8]) -> Result<Vec<Frame>, FramingError> {
        let mut out = Vec::new();
        p.feed(data, &mut out)?;
        Ok(out)
    }

    #[test]
    fn header_then_stanzas_byte_by_byte() {
        let mut p = StreamParser::new(65536);
        let mut all = Vec::new();
        let mut input = HEADER.to_vec();
        input.extend_from_slice(b" <message to='a@b'><body>hi &amp; bye</body><x xmlns='urn:x'><y/></x></message>\n<iq type='get' id='1'/></stream:stream>");
        for b in input.chunks(1) {
            p.feed(b, &mut all).unwrap();
        }
        assert_eq!(all.len(), 4);
        match &all[0] {
            Frame::Open(h) => {
                assert_eq!(h.to.as_deref(), Some("localhost"));
                assert_eq!(h.version.as_deref(), Some("1.0"));
                assert_eq!(h.lang.as_deref(), Some("en"));
                assert_eq!(h.ns, ns::STREAM);
                assert_eq!(h.default_ns.as_deref(), Some(ns::CLIENT));
            }
            f => panic!("{f:?}"),
        }
        match &all[1] {
            Frame::Stanza(m) => {
                assert!(m.is("message", ns::CLIENT));
                assert_eq!(m.get_child("body", ns::CLIENT).unwrap().text(), "hi & bye");
                assert!(m.get_child("x", "urn:x").unwrap().has_child("y", "urn:x"));
            }
            f => panic!("{f:?}"),
        }
        assert!(matches!(&all[2], Frame::Stanza(i) if i.name() == "iq"));
        assert!(matches!(all[3], Frame::Close));
    }

    #[test]
    fn oversized_stanza_is_policy_violation() {
        let mut p = StreamParser::new(1000);
        frames(&mut p, HEADER).unwrap();
        let big = format!("<message><body>{}</body></message>", "a".repeat(2000));
        assert_eq!(
            frames(&mut p, big.as_bytes()).unwrap_err(),
            FramingError::PolicyViolation
        );
    }

    #[test]
    fn stanza_budget_resets_between_stanzas() {
        let mut p = StreamParser::new(1000);
        frames(&mut p, HEADER).unwrap();
        let msg = format!("<message><body>{}</body></message>", "a".repeat(600));
        for _ in 0..5 {
            assert_eq!(frames(&mut p, msg.as_bytes()).unwrap().len(), 1);
        }
    }

    #[test]
    fn restricted_constructs() {
        for bad in [
            &b"<!DOCTYPE foo [<!ENTITY x 'y'>]><stream:stream/>"[..],
            b"<?xml version='1.0'?><?pi something?><stream:stream/>",
        ] {
            let mut p = StreamParser::new(1000);
            assert_eq!(
                frames(&mut p, bad).unwrap_err(),
                FramingError::RestrictedXml,
                "{bad:?}"
            );
        }
        let mut p = StreamParser::new(1000);
        frames(&mut p, HEADER).unwrap();
        assert_eq!(
            frames(&mut p, b"<message><body>&xxe;</body></message>").unwrap_err(),
            FramingError::RestrictedXml
        );
        let mut p = StreamParser::new(1000);
        frames(&mut p, HEADER).unwrap();
        assert_eq!(
            frames(&mut p, b"<message><?pi x?></message>").unwrap_err(),
            FramingError::RestrictedXml
        );
    }

    #[test]
    fn malformed_is_not_well_formed() {
        let mut p = StreamParser::new(1000);
        frames(&mut p, HEADER).unwrap();
        assert_eq!(
            frames(&mut p, b"<message></iq>").unwrap_err(),
            FramingError::NotWellFormed
        );
        let mut p = StreamParser::new(1000);
        frames(&mut p, HEADER).unwrap();
        assert_eq!(
            frames(&mut p, b"<<<").unwrap_err(),
            FramingError::NotWellFormed
        );
    }

    #[test]
    fn undeclared_prefix_is_invalid_namespace() {
        let mut p = StreamParser::new(1000);
        frames(&mut p, HEADER).unwrap();
        assert_eq!(
            frames(&mut p, b"<foo:bar/>").unwrap_err(),
            FramingError::InvalidNamespace
        );
    }

    #[test]
    fn websocket_messages() {
        let open = parse_ws_message(
            b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
            1000,
        )
        .unwrap();
        assert!(matches!(open, Frame::Open(h) if h.to.as_deref() == Some("localhost")));
        let m = parse_ws_message(b"<message xmlns='jabber:client' to='x@y'/>", 1000).unwrap();
        assert!(matches!(m, Frame::Stanza(e) if e.is("message", ns::CLIENT)));
        assert!(matches!(
            parse_ws_message(
                b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
                1000
            )
            .unwrap(),
            Frame::Close
        ));
        assert_eq!(
            parse_ws_message(b"<message xmlns='jabber:client'>", 1000).unwrap_err(),
            FramingError::NotWellFormed
        );
    }
}
