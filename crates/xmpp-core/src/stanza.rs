//! Small helpers over minidom elements for the three stanza kinds, and the
//! error replies RFC 6120 §8.3 prescribes.

use minidom::Element;
use rxml::{Namespace, NcName};

use crate::ns;

/// Attribute access by plain names. minidom wants validated names and a
/// namespace for every write; the server only ever sets unprefixed
/// attributes whose names it chose itself.
pub trait ElementExt {
    fn set(&mut self, name: &str, value: &str);
    fn unset(&mut self, name: &str);
    fn with(self, name: &str, value: &str) -> Self;
    fn text_child(self, name: &str, ns: &str, text: &str) -> Self;
    /// The `xml:lang` attribute.
    fn lang(&self) -> Option<&str>;
    /// Appends a text node.
    fn with_text(self, text: &str) -> Self;
}

impl ElementExt for Element {
    fn set(&mut self, name: &str, value: &str) {
        if let Ok(n) = NcName::try_from(name) {
            self.attrs_mut()
                .insert(Namespace::NONE, n, value.to_owned());
        }
    }

    fn unset(&mut self, name: &str) {
        if let Ok(n) = NcName::try_from(name) {
            self.attrs_mut().remove(&Namespace::NONE, &n);
        }
    }

    fn with(mut self, name: &str, value: &str) -> Self {
        self.set(name, value);
        self
    }

    fn text_child(mut self, name: &str, ns: &str, text: &str) -> Self {
        let mut c = Element::bare(name, ns);
        c.append_text(text);
        self.append_child(c);
        self
    }

    fn lang(&self) -> Option<&str> {
        self.attr_ns(&Namespace::XML, "lang")
    }

    fn with_text(mut self, text: &str) -> Self {
        self.append_text(text);
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Message,
    Presence,
    Iq,
}

pub fn kind(el: &Element) -> Option<Kind> {
    if el.ns() != ns::CLIENT {
        return None;
    }
    match el.name() {
        "message" => Some(Kind::Message),
        "presence" => Some(Kind::Presence),
        "iq" => Some(Kind::Iq),
        _ => None,
    }
}

/// Stanza error types (RFC 6120 §8.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// The usual type for each defined condition (RFC 6120 §8.3.3).
pub fn default_type(condition: &str) -> ErrorType {
    match condition {
        "bad-request" | "jid-malformed" | "not-acceptable" | "policy-violation" | "redirect"
        | "gone" => ErrorType::Modify,
        "forbidden" | "not-authorized" | "registration-required" | "subscription-required" => {
            ErrorType::Auth
        }
        "resource-constraint" | "unexpected-request" | "remote-server-timeout" => ErrorType::Wait,
        _ => ErrorType::Cancel,
    }
}

/// Builds the error reply to `orig`: addresses swapped, payload kept for
/// messages and presences (so the sender can tell which one failed), the
/// `<error/>` appended.
pub fn error_reply(orig: &Element, condition: &str, text: Option<&str>) -> Element {
    let mut reply = reply_to(orig, "error");
    if orig.name() != "iq" {
        for child in orig.children() {
            if child.name() != "error" {
                reply.append_child(child.clone());
            }
        }
    }
    let mut err = Element::bare("error", ns::CLIENT).with("type", default_type(condition).as_str());
    err.append_child(Element::bare(condition, ns::STANZAS_ERR));
    if let Some(t) = text {
        let mut te = Element::bare("text", ns::STANZAS_ERR);
        te.append_text(t);
        err.append_child(te);
    }
    reply.append_child(err);
    reply
}

/// A reply of the same kind with the same id, addressed back.
fn reply_to(orig: &Element, ty: &str) -> Element {
    let mut reply = Element::bare(orig.name(), ns::CLIENT);
    if let Some(id) = orig.attr("id") {
        reply.set("id", id);
    }
    if let Some(from) = orig.attr("from") {
        reply.set("to", from);
    }
    if let Some(to) = orig.attr("to") {
        reply.set("from", to);
    }
    reply.set("type", ty);
    reply
}

/// An empty `type='result'` reply to an IQ.
pub fn iq_result(orig: &Element) -> Element {
    reply_to(orig, "result")
}

/// The first element child of an IQ: the one that names what it is about.
pub fn iq_payload(iq: &Element) -> Option<&Element> {
    iq.children().next()
}

/// Serialises an element once; callers share the bytes among recipients.
///
/// This writes the tree directly instead of through minidom's writer: that
/// one runs rxml's encoder, which re-validates every name and tracks prefixes,
/// and cost about 40,000 instructions for a 400-byte chat message, a third of
/// the whole 1:1 path. Names here were validated when they were parsed or
/// built. Every element whose namespace differs from its parent's gets a
/// default `xmlns` declaration (the root always does, right after its name,
/// which `component::client_ns_span` relies on); `xml:` attributes keep their
/// prefix. Anything else (an attribute in another namespace, a control
/// character no XML may carry) goes to minidom's writer, which declares
/// prefixes or refuses.
pub fn to_bytes(el: &Element) -> bytes::Bytes {
    bytes::Bytes::from(write_vec(el))
}

/// The same as text, for the store. Both writers emit UTF-8, so the check
/// never fails; it is the fast one, not the lossy one.
pub fn to_string(el: &Element) -> String {
    String::from_utf8(write_vec(el))
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn write_vec(el: &Element) -> Vec<u8> {
    let mut buf = Vec::with_capacity(384);
    match write_element(el, None, &mut buf) {
        Ok(()) => {}
        Err(Unwritable::Prefixed) => {
            buf.clear();
            // Writing into a Vec cannot fail for I/O reasons; an error would
            // mean an element built with a name XML cannot carry.
            if el.write_to(&mut buf).is_err() {
                buf.clear();
            }
        }
        // minidom's writer panics on these: an empty frame is the safe
        // outcome for an element that no XML can carry.
        Err(Unwritable::ControlChar) => buf.clear(),
    }
    buf
}

enum Unwritable {
    /// An attribute in a namespace other than `xml:`, which needs a prefix.
    Prefixed,
    /// A C0 control character other than tab, newline and carriage return.
    ControlChar,
}

fn write_element(
    el: &Element,
    parent_ns: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<(), Unwritable> {
    out.push(b'<');
    out.extend_from_slice(el.name().as_bytes());
    let own: String;
    let ns = match parent_ns {
        Some(p) if el.has_ns(p) => p,
        _ => {
            own = el.ns();
            out.extend_from_slice(b" xmlns='");
            escape_into(&own, true, out)?;
            out.push(b'\'');
            &own
        }
    };
    for ((attr_ns, name), value) in el.attrs().iter() {
        if attr_ns.is_none() {
            out.push(b' ');
        } else if **attr_ns == *Namespace::XML {
            out.extend_from_slice(b" xml:");
        } else {
            return Err(Unwritable::Prefixed);
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"='");
        escape_into(value, true, out)?;
        out.push(b'\'');
    }
    let mut nodes = el.nodes().peekable();
    if nodes.peek().is_none() {
        out.extend_from_slice(b"/>");
        return Ok(());
    }
    out.push(b'>');
    for node in nodes {
        match node {
            minidom::Node::Element(child) => write_element(child, Some(ns), out)?,
            minidom::Node::Text(text) => escape_into(text, false, out)?,
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(el.name().as_bytes());
    out.push(b'>');
    Ok(())
}

/// Copies `s` with XML's special characters as references; in attribute
/// values also quotes and the whitespace that attribute normalisation would
/// otherwise turn into spaces. XML 1.0 cannot carry the other C0 controls.
fn escape_into(s: &str, attr: bool, out: &mut Vec<u8>) -> Result<(), Unwritable> {
    let bytes = s.as_bytes();
    // Most names, addresses and bodies need no escaping: one branch-free
    // pass says so, and they are copied whole.
    let plain = !bytes.iter().fold(false, |acc, &c| {
        acc | (c < 0x20)
            | (c == b'&')
            | (c == b'<')
            | (c == b'>')
            | (attr & ((c == b'\'') | (c == b'"')))
    });
    if plain {
        out.extend_from_slice(bytes);
        return Ok(());
    }
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let rep: &[u8] = match c {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'\r' => b"&#xd;",
            b'\'' if attr => b"&apos;",
            b'"' if attr => b"&quot;",
            b'\n' if attr => b"&#xa;",
            b'\t' if attr => b"&#x9;",
            b'\n' | b'\t' => continue,
            0..=0x1f => return Err(Unwritable::ControlChar),
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(rep);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    Ok(())
}

/// Where the element name of a serialised stanza ends, so that an attribute
/// can be spliced in there (`<message` | ` from='…'…`).
pub fn name_end(xml: &[u8]) -> usize {
    xml.iter()
        .skip(1)
        .position(|b| matches!(b, b' ' | b'>' | b'/' | b'\t' | b'\n' | b'\r'))
        .map(|p| p + 1)
        .unwrap_or(xml.len())
}

/// A stream error in the `stream:` prefix form that every client parses.
pub fn stream_error(condition: &str, text: Option<&str>) -> String {
    let mut s = format!(
        "<stream:error xmlns:stream='{}'><{} xmlns='{}'/>",
        ns::STREAM,
        condition,
        ns::STREAMS_ERR
    );
    if let Some(t) = text {
        s.push_str(&format!(
            "<text xmlns='{}'>{}</text>",
            ns::STREAMS_ERR,
            escape(t)
        ));
    }
    s.push_str("</stream:error>");
    s
}

/// Escapes text for an attribute value or a text node.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::parse_element;

    /// The direct writer must give back the same tree, whatever the
    /// namespaces, escapes and whitespace; and minidom's own output of it
    /// must parse to the same tree too (the two writers agree on meaning).
    #[test]
    fn to_bytes_round_trips() {
        let cases: &[&[u8]] = &[
            b"<message xmlns='jabber:client' to='bob@localhost' type='chat' id='a&amp;b&apos;c&quot;d'><body>1 &lt; 2 &amp;&amp; 3 &gt; 2 ]]&gt; \xc3\xa9\xf0\x9f\x98\x80</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
            b"<message xmlns='jabber:client' xml:lang='de' to='a@b'><body xml:lang='en'>line1\nline2\r\n\ttab</body></message>",
            b"<iq xmlns='jabber:client' type='set' id='x'><query xmlns='urn:a'><item xmlns='urn:b' v='a\nb\tc'><deep xmlns='urn:a'>t</deep></item><empty/></query></iq>",
            b"<message xmlns='jabber:client'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='x@y'><body>in</body></message></forwarded>mixed<b xmlns=''>no ns</b></message>",
            b"<presence xmlns='jabber:client'><x xmlns:p='urn:p' xmlns='urn:x' p:attr='v'/></presence>",
        ];
        for case in cases {
            let el = parse_element(case, 65536).unwrap();
            let ours = to_bytes(&el);
            assert_eq!(
                parse_element(&ours, 65536).unwrap(),
                el,
                "{}",
                String::from_utf8_lossy(&ours)
            );
            let mut theirs = Vec::new();
            el.write_to(&mut theirs).unwrap();
            assert_eq!(parse_element(&theirs, 65536).unwrap(), el);
        }
    }

    #[test]
    fn to_bytes_declares_the_root_namespace_first() {
        let el = Element::bare("message", ns::CLIENT).with("to", "a@b");
        assert_eq!(
            &to_bytes(&el)[..],
            b"<message xmlns='jabber:client' to='a@b'/>"
        );
    }

    #[test]
    fn to_bytes_refuses_control_characters() {
        let el = Element::bare("body", ns::CLIENT).with_text("bell\u{7}");
        assert!(to_bytes(&el).is_empty());
    }

    #[test]
    fn error_reply_swaps_and_keeps_payload() {
        let m = parse_element(
            b"<message xmlns='jabber:client' from='a@b/c' to='d@e' id='7' type='chat'><body>x</body></message>",
            4096,
        )
        .unwrap();
        let e = error_reply(&m, "service-unavailable", None);
        assert_eq!(e.attr("to"), Some("a@b/c"));
        assert_eq!(e.attr("from"), Some("d@e"));
        assert_eq!(e.attr("type"), Some("error"));
        assert!(e.has_child("body", ns::CLIENT));
        let err = e.get_child("error", ns::CLIENT).unwrap();
        assert_eq!(err.attr("type"), Some("cancel"));
        assert!(err.has_child("service-unavailable", ns::STANZAS_ERR));
        let bytes = to_bytes(&e);
        let back = parse_element(&bytes, 4096).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn splicing_an_address_keeps_the_stanza_well_formed() {
        let m = parse_element(
            b"<message xmlns='jabber:client' from='r@c/n'><body>x</body></message>",
            4096,
        )
        .unwrap();
        let b = to_bytes(&m);
        let at = name_end(&b);
        let spliced = [&b[..at], b" to='a@b/c'", &b[at..]].concat();
        let back = parse_element(&spliced, 4096).unwrap();
        assert_eq!(back.attr("to"), Some("a@b/c"));
        assert_eq!(back.get_child("body", ns::CLIENT).unwrap().text(), "x");
        let empty = to_bytes(&Element::bare("presence", ns::CLIENT));
        let at = name_end(&empty);
        let spliced = [&empty[..at], b" to='x@y'", &empty[at..]].concat();
        assert_eq!(
            parse_element(&spliced, 4096).unwrap().attr("to"),
            Some("x@y")
        );
    }

    #[test]
    fn iq_errors_drop_payload() {
        let iq = parse_element(
            b"<iq xmlns='jabber:client' type='get' id='1'><q xmlns='urn:unknown'/></iq>",
            4096,
        )
        .unwrap();
        let e = error_reply(&iq, "feature-not-implemented", Some("no"));
        assert!(!e.has_child("q", "urn:unknown"));
    }
}
