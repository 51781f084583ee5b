//! Turns the bytes of a never-ending XMPP stream into stream events and
//! whole stanzas.
//!
//! `lexer` tokenises (and refuses DTDs, entities and processing
//! instructions, as RFC 6120 §11 restricts); `tree` assembles elements. A
//! depth counter tells stanza boundaries apart, and a byte budget per stanza
//! stops a peer from growing a tree without bound before it is complete.

use std::cell::Cell;

use minidom::Element;
use rxml::RawEvent;

use crate::lexer::Lexer;
use crate::ns;
use crate::tree::{Builder, Declarations};

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
    /// The stream id, which the receiving side's header carries (a
    /// component hashes it into its handshake).
    pub id: Option<String>,
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

/// No name or attribute value in XMPP comes near it (rxml's default too).
pub const DEFAULT_MAX_TOKEN: usize = 8192;

/// Element nesting a stanza may have by default (the stanza is level 1).
/// Real stanzas stay under 20; a wrapped one (a carbon of a MAM result)
/// adds a handful.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// The deepest nesting any parser here accepts. Serialising, copying and
/// dropping an element recurse once per level, so this bounds their stack
/// use far inside a worker thread's 2 MiB whatever a peer sends; stored
/// stanzas (archives, offline messages) are read back under it.
pub const MAX_DEPTH_CEILING: usize = 256;

/// Incremental parser for one stream (TCP). A new one is made at every
/// stream restart (after STARTTLS and SASL), as RFC 6120 requires.
pub struct StreamParser {
    lexer: Lexer,
    /// No byte has reached the lexer yet (see `feed_one`).
    fresh: bool,
    state: Assembly,
}

/// What the events build: the header, then one stanza at a time.
struct Assembly {
    /// Namespace declarations on the stream element; every stanza is
    /// resolved against them. The stream element itself is not kept as a
    /// tree: an idle stream holds only this list.
    stream_prefixes: Declarations,
    root_name: Option<(Option<String>, String)>,
    root_attrs: Vec<(Option<String>, String, String)>,
    /// The stanza being assembled (a stanza's element carries only the
    /// prefixes it declares itself, not the stream's).
    tree: Builder,
    in_stanza: bool,
    /// The stream header has been read.
    depth: usize,
    max_stanza: usize,
    /// Bytes that the stanza being assembled has used so far.
    stanza_bytes: usize,
    closed: bool,
}

impl StreamParser {
    pub fn new(max_stanza: usize) -> Self {
        Self::with_token_limit(max_stanza, DEFAULT_MAX_TOKEN)
    }

    /// `max_token` caps one name or attribute value (a longer one is a
    /// policy violation). An unfinished tag is held for at most a stanza's
    /// worth of bytes.
    pub fn with_token_limit(max_stanza: usize, max_token: usize) -> Self {
        Self::with_limits(max_stanza, max_token, DEFAULT_MAX_DEPTH)
    }

    /// `max_depth` bounds a stanza's nesting (the stanza is level 1,
    /// capped at `MAX_DEPTH_CEILING`); deeper is a policy violation as soon
    /// as the start tag that crosses it is read.
    pub fn with_limits(max_stanza: usize, max_token: usize, max_depth: usize) -> Self {
        let max_token = max_token.clamp(256, max_stanza.max(256));
        // The stream element is one more level.
        let depth = max_depth.clamp(1, MAX_DEPTH_CEILING) + 1;
        StreamParser {
            lexer: Lexer::new(max_token, max_stanza).with_max_depth(depth),
            fresh: true,
            state: Assembly {
                stream_prefixes: Vec::new(),
                root_name: None,
                root_attrs: Vec::new(),
                tree: Builder::default(),
                in_stanza: false,
                depth: 0,
                max_stanza,
                stanza_bytes: 0,
                closed: false,
            },
        }
    }

    /// Feeds bytes and appends any complete frames to `out`. On error the
    /// stream is beyond repair and must be closed with the returned
    /// condition; the frames before the error are in `out`. `out` is any
    /// collection, so that a reader can queue frames without a second copy.
    pub fn feed(&mut self, data: &[u8], out: &mut impl Extend<Frame>) -> Result<(), FramingError> {
        if self.state.closed {
            return Ok(());
        }
        let state = &mut self.state;
        self.lexer.feed(data, &mut |ev| {
            if let Some(frame) = state.event(ev)? {
                if matches!(frame, Frame::Close) {
                    state.closed = true;
                }
                out.extend(std::iter::once(frame));
            }
            Ok(())
        })
    }

    /// Like `feed`, but stops after the first complete frame and advances
    /// `data` past the bytes it used, leaving the rest to the caller.
    ///
    /// Negotiation reads this way because a client may pipeline the new
    /// stream header right after its last SASL element, before our
    /// `<success/>` (tsung does, and so do some mobile clients to save a
    /// round trip). Those bytes open a new document (RFC 6120 §4.3.3) and
    /// must go to a fresh parser; this one would reject the XML
    /// declaration. Bytes after `<starttls/>` stay with the caller too, so
    /// that it can refuse them rather than let plaintext reach the TLS
    /// stream.
    pub fn feed_one(&mut self, data: &mut &[u8]) -> Result<Option<Frame>, FramingError> {
        if self.state.closed {
            *data = &[];
            return Ok(None);
        }
        if self.fresh {
            // Whitespace the client sent after its last element of the old
            // stream (go-xmpp ends every element with a newline) would put
            // the new XML declaration out of place: it belongs to the old
            // stream, where it was a keep-alive.
            let skip = data.iter().take_while(|b| b.is_ascii_whitespace()).count();
            *data = &data[skip..];
            self.fresh = data.is_empty();
        }
        let stop = Cell::new(false);
        let mut got = None;
        let state = &mut self.state;
        let used = self.lexer.feed_until(data, &stop, &mut |ev| {
            if let Some(frame) = state.event(ev)? {
                state.closed = matches!(frame, Frame::Close);
                got = Some(frame);
                stop.set(true);
            }
            Ok(())
        })?;
        *data = &data[used..];
        Ok(got)
    }

    /// Gives back the memory of an unfinished token and of the stanza
    /// builder, where they hold nothing. Worth calling whenever the stream
    /// waits: thousands of idle sessions would otherwise each keep about a
    /// kilobyte grown by their last stanza.
    pub fn release_temporaries(&mut self) {
        self.lexer.release_temporaries();
        self.state.tree.release_temporaries();
    }
}

impl Assembly {
    fn event(&mut self, ev: RawEvent) -> Result<Option<Frame>, FramingError> {
        if self.depth == 0 {
            return self.root_event(ev);
        }
        if !self.in_stanza {
            match ev {
                // Whitespace keep-alives between stanzas.
                RawEvent::Text(..) => return Ok(None),
                RawEvent::ElementFoot(_) => return Ok(Some(Frame::Close)),
                RawEvent::ElementHeadOpen(..) => {
                    self.in_stanza = true;
                    self.stanza_bytes = 0;
                }
                _ => return Err(FramingError::NotWellFormed),
            }
        }
        self.stanza_bytes += event_len(&ev);
        if self.stanza_bytes > self.max_stanza {
            return Err(FramingError::PolicyViolation);
        }
        let is_foot = matches!(ev, RawEvent::ElementFoot(_));
        self.tree.event(ev, &self.stream_prefixes)?;
        if is_foot && self.tree.depth() == 0 {
            self.in_stanza = false;
            let stanza = self.tree.root.take().ok_or(FramingError::NotWellFormed)?;
            return Ok(Some(Frame::Stanza(stanza)));
        }
        Ok(None)
    }

    /// The stream element is read by hand, so that it is never kept as a
    /// tree with children.
    fn root_event(&mut self, ev: RawEvent) -> Result<Option<Frame>, FramingError> {
        match ev {
            RawEvent::XmlDeclaration(..) => Ok(None),
            RawEvent::ElementHeadOpen(_, (prefix, name)) => {
                self.root_name = Some((prefix.map(|p| p.to_string()), name.to_string()));
                Ok(None)
            }
            RawEvent::Attribute(_, (prefix, name), value) => {
                let (prefix, name) = (prefix.map(|p| p.to_string()), name.to_string());
                match prefix.as_deref() {
                    None if name == "xmlns" => {
                        self.stream_prefixes.push((None, value.to_string()));
                    }
                    Some("xmlns") => {
                        self.stream_prefixes.push((Some(name), value.to_string()));
                    }
                    _ => self.root_attrs.push((prefix, name, value.to_string())),
                }
                Ok(None)
            }
            RawEvent::ElementHeadClose(_) => {
                let (prefix, _) = self.root_name.take().ok_or(FramingError::NotWellFormed)?;
                let find = |p: &Option<String>| {
                    self.stream_prefixes
                        .iter()
                        .rev()
                        .find(|(q, _)| q == p)
                        .map(|(_, ns)| ns.clone())
                };
                let ns = find(&prefix).ok_or(FramingError::InvalidNamespace)?;
                let mut h = StreamHeader {
                    ns,
                    default_ns: find(&None),
                    ..Default::default()
                };
                for (p, n, v) in self.root_attrs.drain(..) {
                    match (p.as_deref(), n.as_str()) {
                        (None, "to") => h.to = Some(v),
                        (None, "from") => h.from = Some(v),
                        (None, "id") => h.id = Some(v),
                        (None, "version") => h.version = Some(v),
                        (Some("xml"), "lang") => h.lang = Some(v),
                        _ => {}
                    }
                }
                self.root_attrs = Vec::new();
                self.depth = 1;
                Ok(Some(Frame::Open(h)))
            }
            _ => Err(FramingError::NotWellFormed),
        }
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
        id: get("id"),
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
pub fn parse_ws_message(
    data: &[u8],
    max_stanza: usize,
    max_depth: usize,
) -> Result<Frame, FramingError> {
    if data.len() > max_stanza {
        return Err(FramingError::PolicyViolation);
    }
    let el = parse_element_within(data, max_stanza, max_depth)?;
    if el.ns() == ns::FRAMING {
        return match el.name() {
            "open" => Ok(Frame::Open(header_of(&el))),
            "close" => Ok(Frame::Close),
            _ => Err(FramingError::NotWellFormed),
        };
    }
    Ok(Frame::Stanza(el))
}

/// Parses a complete standalone element (stored stanzas, and what the
/// server built itself), nested at most `MAX_DEPTH_CEILING` deep.
pub fn parse_element(data: &[u8], max_bytes: usize) -> Result<Element, FramingError> {
    parse_element_within(data, max_bytes, MAX_DEPTH_CEILING)
}

/// Parses a complete standalone element from a peer (a WebSocket message,
/// a BOSH body), nested at most `max_depth` deep (the root is level 1;
/// capped at `MAX_DEPTH_CEILING`).
pub fn parse_element_within(
    data: &[u8],
    max_bytes: usize,
    max_depth: usize,
) -> Result<Element, FramingError> {
    if data.len() > max_bytes {
        return Err(FramingError::PolicyViolation);
    }
    let mut lexer = Lexer::new(max_bytes.clamp(256, 64 * 1024), max_bytes)
        .with_max_depth(max_depth.clamp(1, MAX_DEPTH_CEILING));
    let mut tree = Builder::default();
    let outer = Declarations::new();
    lexer.feed_all(data, &mut |ev| tree.event(ev, &outer))?;
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
            // The reader releases between reads: mid-stanza it must keep
            // what it holds.
            p.release_temporaries();
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
    fn stanzas_keep_their_own_declarations_only() {
        let mut p = StreamParser::new(65536);
        frames(&mut p, HEADER).unwrap();
        let f = frames(
            &mut p,
            b"<message xmlns:x='urn:x' to='a@b'><x:y x:z='1'/></message>",
        )
        .unwrap();
        let [Frame::Stanza(m)] = f.as_slice() else {
            panic!("{f:?}")
        };
        let out = String::from_utf8(crate::stanza::to_bytes(m).to_vec()).unwrap();
        assert!(!out.contains("etherx"), "{out}");
        let back = parse_element(out.as_bytes(), 65536).unwrap();
        assert_eq!(
            back.get_child("y", "urn:x").unwrap().attr_ns("urn:x", "z"),
            Some("1")
        );
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

    /// Frames `feed_one` yields from `data` until it needs more, and what
    /// it left over.
    fn one_by_one<'a>(p: &mut StreamParser, mut data: &'a [u8]) -> (Vec<Frame>, &'a [u8]) {
        let mut out = Vec::new();
        while let Some(f) = p.feed_one(&mut data).unwrap() {
            let sasl_done = matches!(&f, Frame::Stanza(e) if e.name() == "auth");
            out.push(f);
            if sasl_done {
                break;
            }
        }
        (out, data)
    }

    const PIPELINED: &[u8] = b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth><?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>";

    #[test]
    fn pipelined_restart_goes_to_a_fresh_parser() {
        let input = [HEADER, PIPELINED].concat();
        // Fed greedily, the new XML declaration is an error inside the old
        // stream: the restricted-xml that closed pipelining clients.
        let mut p = StreamParser::new(65536);
        assert_eq!(
            frames(&mut p, &input).unwrap_err(),
            FramingError::RestrictedXml
        );

        let mut p = StreamParser::new(65536);
        let (got, rest) = one_by_one(&mut p, &input);
        assert!(
            matches!(got.as_slice(), [Frame::Open(_), Frame::Stanza(a)] if a.is("auth", ns::SASL))
        );
        assert!(
            rest.starts_with(b"<?xml version='1.0'?><stream:stream"),
            "{rest:?}"
        );

        let mut fresh = StreamParser::new(65536);
        let mut rest = rest;
        let open = fresh.feed_one(&mut rest).unwrap();
        assert!(matches!(open, Some(Frame::Open(h)) if h.to.as_deref() == Some("localhost")));
        let bind = fresh.feed_one(&mut rest).unwrap();
        assert!(
            matches!(bind, Some(Frame::Stanza(iq)) if iq.is("iq", ns::CLIENT) && iq.attr("id") == Some("b"))
        );
        assert!(rest.is_empty());
        assert!(fresh.feed_one(&mut rest).unwrap().is_none());
    }

    #[test]
    fn whitespace_left_from_the_old_stream_is_skipped() {
        let mut p = StreamParser::new(65536);
        for chunk in [&b"\n"[..], b" \r\n", HEADER] {
            let mut d = chunk;
            let f = p.feed_one(&mut d).unwrap();
            assert_eq!(f.is_some(), chunk == HEADER, "{chunk:?}");
        }
        // Only before the first byte: inside the header a space is syntax.
        let mut p = StreamParser::new(65536);
        let at = HEADER.windows(4).position(|w| w == b" to=").unwrap();
        let (head, tail) = HEADER.split_at(at);
        assert!(p.feed_one(&mut &head[..]).unwrap().is_none());
        assert!(matches!(
            p.feed_one(&mut &tail[..]),
            Ok(Some(Frame::Open(_)))
        ));
    }

    #[test]
    fn feed_one_stops_at_the_frame_whatever_the_chunking() {
        let input = [HEADER, PIPELINED].concat();
        let auth_end =
            HEADER.len() + PIPELINED.windows(7).position(|w| w == b"</auth>").unwrap() + 7;
        for size in [1, 2, 7, 100] {
            let mut p = StreamParser::new(65536);
            let mut used = 0;
            let mut got = Vec::new();
            'outer: for chunk in input.chunks(size) {
                let mut rest = chunk;
                while let Some(f) = p.feed_one(&mut rest).unwrap() {
                    let done = matches!(&f, Frame::Stanza(_));
                    got.push(f);
                    if done {
                        used += chunk.len() - rest.len();
                        break 'outer;
                    }
                }
                used += chunk.len();
            }
            assert_eq!(got.len(), 2, "chunks of {size}");
            assert_eq!(used, auth_end, "chunks of {size}");
        }
    }

    #[test]
    fn feed_one_reports_errors_and_close() {
        let mut p = StreamParser::new(1000);
        let mut d = HEADER;
        assert!(matches!(p.feed_one(&mut d), Ok(Some(Frame::Open(_)))));
        let mut d = &b"<message></iq>"[..];
        assert_eq!(p.feed_one(&mut d).unwrap_err(), FramingError::NotWellFormed);

        let mut p = StreamParser::new(1000);
        let mut d = &[HEADER, b" </stream:stream><junk"].concat()[..];
        assert!(matches!(p.feed_one(&mut d), Ok(Some(Frame::Open(_)))));
        assert!(matches!(p.feed_one(&mut d), Ok(Some(Frame::Close))));
        assert!(p.feed_one(&mut d).unwrap().is_none());
        assert!(d.is_empty());
    }

    /// What cannot begin an XML document is refused at its first bytes,
    /// however few: nothing waits for more input (or for a timeout).
    #[test]
    fn junk_before_the_header_is_refused_at_once() {
        let client_hello: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03];
        for junk in [
            client_hello,
            b"GET / HTTP/1.1\r\n",
            b"hello",
            b"  \nx",
            b"\x16",
        ] {
            let mut p = StreamParser::new(65536);
            let mut d = junk;
            assert_eq!(
                p.feed_one(&mut d).unwrap_err(),
                FramingError::NotWellFormed,
                "{junk:?}"
            );
            let mut p = StreamParser::new(65536);
            assert_eq!(
                frames(&mut p, junk).unwrap_err(),
                FramingError::NotWellFormed,
                "{junk:?}"
            );
        }
        // White space, and the start of a header, still wait for more.
        let mut p = StreamParser::new(65536);
        assert!(p.feed_one(&mut &b"\n  "[..]).unwrap().is_none());
        assert!(p.feed_one(&mut &b"<?xml versi"[..]).unwrap().is_none());
    }

    /// Text between stanzas means nothing; it is passed over as it comes
    /// (as far as it is complete) instead of being held for a `<`.
    #[test]
    fn text_between_stanzas_is_not_held() {
        let mut p = StreamParser::new(65536);
        frames(&mut p, HEADER).unwrap();
        assert!(frames(&mut p, b"hello").unwrap().is_empty());
        assert_eq!(p.lexer.held(), 0);
        // An unfinished character or reference waits for the rest.
        assert!(
            frames(&mut p, "caf\u{e9}".as_bytes().split_last().unwrap().1)
                .unwrap()
                .is_empty()
        );
        assert_eq!(p.lexer.held(), 1);
        assert!(
            frames(&mut p, &[0xa9, b'&', b'a', b'm'])
                .unwrap()
                .is_empty()
        );
        assert_eq!(p.lexer.held(), 3);
        let f = frames(&mut p, b"p; <message><body>x</body></message>").unwrap();
        assert!(matches!(f.as_slice(), [Frame::Stanza(m)] if m.name() == "message"));
        assert_eq!(p.lexer.held(), 0);
        // Broken text there is still refused.
        assert_eq!(
            frames(&mut p, b"a &bogus; b").unwrap_err(),
            FramingError::RestrictedXml
        );
    }

    /// Nesting past the limit is refused while parsing, at the start tag
    /// that crosses it, however the bytes arrive; at the limit it passes.
    #[test]
    fn nesting_past_the_limit_is_policy_violation() {
        let nested = |n: usize| {
            let mut x = String::from("<message xmlns='jabber:client' to='a@b'>");
            x.push_str(&"<a>".repeat(n - 1));
            x.push_str(&"</a>".repeat(n - 1));
            x.push_str("</message>");
            x
        };
        let mut p = StreamParser::with_limits(1 << 20, 8192, 8);
        frames(&mut p, HEADER).unwrap();
        assert_eq!(frames(&mut p, nested(8).as_bytes()).unwrap().len(), 1);
        assert_eq!(
            frames(&mut p, nested(9).as_bytes()).unwrap_err(),
            FramingError::PolicyViolation
        );
        // 10,000 levels, a byte at a time: refused at level 9, having
        // held no more than one tag.
        let mut p = StreamParser::with_limits(1 << 20, 8192, 8);
        frames(&mut p, HEADER).unwrap();
        let deep = "<a>".repeat(10_000);
        let mut err = None;
        for (i, b) in deep.as_bytes().chunks(1).enumerate() {
            if let Err(e) = frames(&mut p, b) {
                err = Some((i, e));
                break;
            }
        }
        assert_eq!(err, Some((3 * 8 + 1, FramingError::PolicyViolation)));
        // WebSocket messages and standalone documents alike.
        assert_eq!(
            parse_ws_message(nested(9).as_bytes(), 1 << 20, 8).unwrap_err(),
            FramingError::PolicyViolation
        );
        assert!(parse_ws_message(nested(8).as_bytes(), 1 << 20, 8).is_ok());
        assert_eq!(
            parse_element(nested(MAX_DEPTH_CEILING + 1).as_bytes(), 1 << 20).unwrap_err(),
            FramingError::PolicyViolation
        );
    }

    #[test]
    fn websocket_messages() {
        let open = parse_ws_message(
            b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
            1000,
            8,
        )
        .unwrap();
        assert!(matches!(open, Frame::Open(h) if h.to.as_deref() == Some("localhost")));
        let m = parse_ws_message(b"<message xmlns='jabber:client' to='x@y'/>", 1000, 8).unwrap();
        assert!(matches!(m, Frame::Stanza(e) if e.is("message", ns::CLIENT)));
        assert!(matches!(
            parse_ws_message(
                b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
                1000,
                8
            )
            .unwrap(),
            Frame::Close
        ));
        assert_eq!(
            parse_ws_message(b"<message xmlns='jabber:client'>", 1000, 8).unwrap_err(),
            FramingError::NotWellFormed
        );
    }
}
