//! XEP-0114 (Jabber Component Protocol), the accepting side, sans IO.
//!
//! A component (a bot, a gateway) connects, opens a stream in
//! `jabber:component:accept` naming the domain it wants to serve, and
//! proves it knows that domain's shared secret by sending
//! `<handshake>hex(SHA-1(stream id + secret))</handshake>`. The server
//! answers `<handshake/>` or closes the stream (`not-authorized`).
//!
//! On the wire a component's stanzas are in the component namespace; inside
//! the server they are `jabber:client` stanzas like any other. [`to_client_ns`]
//! converts what comes in, and [`client_ns_span`] finds the one declaration
//! to rewrite in what goes out, so a stanza serialised once for clients can be
//! sent to a component as is, with only its root's namespace spliced.

use aws_lc_rs::{constant_time, digest};
use minidom::{Element, Node};

use crate::framing::StreamHeader;
use crate::ns;
use crate::stanza;

/// The component stream's default namespace.
pub const NS: &str = "jabber:component:accept";

/// The server's stream header in reply to a component's (XEP-0114 §3:
/// `from` is the component's domain, `id` the nonce the handshake hashes).
pub fn header(from: &str, id: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS}' xmlns:stream='{}' id='{}' from='{}'>",
        ns::STREAM,
        stanza::escape(id),
        stanza::escape(from)
    )
}

/// Checks a component's stream header. `Ok` is the (normalised) domain it
/// asks to serve, which the caller must still look up; `Err` is the stream
/// error to close with: `invalid-namespace` for a stream that is not a
/// component stream, `host-unknown` for a missing or malformed `to`.
pub fn check_header(h: &StreamHeader) -> Result<String, &'static str> {
    if h.ns != ns::STREAM || h.default_ns.as_deref() != Some(NS) {
        return Err("invalid-namespace");
    }
    h.to.as_deref()
        .and_then(|t| jid::BareJid::new(t).ok())
        .filter(|j| j.node().is_none())
        .map(|j| j.as_str().to_owned())
        .ok_or("host-unknown")
}

/// `hex(SHA-1(stream_id ‖ secret))`, lowercase (XEP-0114 §3).
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(stream_id.as_bytes());
    ctx.update(secret.as_bytes());
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `el` is a `<handshake/>` proving knowledge of `secret` for the
/// stream `stream_id`. The comparison takes the same time wherever the
/// first wrong digit is; hex digits are accepted in either case.
pub fn verify_handshake(el: &Element, stream_id: &str, secret: &str) -> bool {
    if !el.is("handshake", NS) {
        return false;
    }
    let given = el.text().trim().to_ascii_lowercase();
    let expected = handshake_digest(stream_id, secret);
    constant_time::verify_slices_are_equal(given.as_bytes(), expected.as_bytes()).is_ok()
}

/// What the server sends when the handshake succeeded.
pub const HANDSHAKE_OK: &str = "<handshake/>";

/// A stanza from a component, moved into `jabber:client`: every element in
/// the component namespace (the stanza and the children that inherit the
/// stream's default, `<body/>` say) is renamed; foreign payloads are kept.
pub fn to_client_ns(mut el: Element) -> Element {
    if !has_component_ns(&el) {
        return el;
    }
    let nodes = el.take_nodes();
    let mut out = if el.has_ns(NS) {
        let mut e = Element::bare(el.name(), ns::CLIENT);
        *e.attrs_mut() = el.attrs().clone();
        e.prefixes = el.prefixes.clone();
        e
    } else {
        el
    };
    for n in nodes {
        match n {
            Node::Element(c) => {
                out.append_child(to_client_ns(c));
            }
            Node::Text(t) => out.append_text_node(t),
        }
    }
    out
}

fn has_component_ns(el: &Element) -> bool {
    el.has_ns(NS) || el.children().any(has_component_ns)
}

/// Where, in a stanza serialised by [`stanza::to_bytes`], the root's
/// namespace name stands (`<message xmlns='|jabber:client|' …`), so that a
/// writer to a component can splice [`NS`] in its place. Children that
/// inherit the default follow it; explicitly declared ones (a forwarded
/// message) stay. `None` unless the declaration directly follows the name,
/// as the serialiser writes it: nothing inside an attribute value can match.
pub fn client_ns_span(xml: &[u8]) -> Option<(usize, usize)> {
    const DECL: &[u8] = b" xmlns='jabber:client'";
    let at = stanza::name_end(xml);
    if !xml.get(at..)?.starts_with(DECL) {
        return None;
    }
    let start = at + b" xmlns='".len();
    Some((start, start + ns::CLIENT.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::{Frame, StreamParser, parse_element};

    // Independent vectors, from Python:
    //   hashlib.sha1(b'3BF96D32' + b'wonderillusion').hexdigest()
    //   hashlib.sha1(b'abc123' + 's3crét'.encode()).hexdigest()
    const VECTORS: &[(&str, &str, &str)] = &[
        (
            "3BF96D32",
            "wonderillusion",
            "053482e7b576c597bf633b79b47ce5d30ad0d29a",
        ),
        (
            "abc123",
            "s3crét",
            "ec2c093a78b4a60b157c45e3a9cb12de6d496e33",
        ),
    ];

    fn handshake(text: &str) -> Element {
        parse_element(
            format!("<handshake xmlns='{NS}'>{text}</handshake>").as_bytes(),
            4096,
        )
        .unwrap()
    }

    #[test]
    fn digest_matches_independent_vectors() {
        for (id, secret, hex) in VECTORS {
            assert_eq!(handshake_digest(id, secret), *hex);
            assert!(verify_handshake(&handshake(hex), id, secret));
            assert!(verify_handshake(
                &handshake(&hex.to_ascii_uppercase()),
                id,
                secret
            ));
        }
    }

    #[test]
    fn wrong_handshakes_fail() {
        let (id, secret, hex) = VECTORS[0];
        assert!(!verify_handshake(&handshake(hex), id, "other"));
        assert!(!verify_handshake(&handshake(hex), "other-id", secret));
        assert!(!verify_handshake(&handshake(&hex[..39]), id, secret));
        assert!(!verify_handshake(&handshake(""), id, secret));
        let wrong_ns = parse_element(
            format!("<handshake xmlns='jabber:client'>{hex}</handshake>").as_bytes(),
            4096,
        )
        .unwrap();
        assert!(!verify_handshake(&wrong_ns, id, secret));
    }

    fn header_of(xml: &str) -> StreamHeader {
        let mut p = StreamParser::new(4096);
        let mut out = Vec::new();
        p.feed(xml.as_bytes(), &mut out).unwrap();
        match out.pop() {
            Some(Frame::Open(h)) => h,
            f => panic!("{f:?}"),
        }
    }

    #[test]
    fn header_checks() {
        let ok = header_of(
            "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='Bot.Localhost'>",
        );
        assert_eq!(check_header(&ok).as_deref(), Ok("bot.localhost"));
        let client = header_of(
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='bot.localhost'>",
        );
        assert_eq!(check_header(&client), Err("invalid-namespace"));
        let no_to = header_of(
            "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>",
        );
        assert_eq!(check_header(&no_to), Err("host-unknown"));
        let user = header_of(
            "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='a@bot.localhost'>",
        );
        assert_eq!(check_header(&user), Err("host-unknown"));
        let h = header("bot.localhost", "x'y");
        assert!(h.contains("xmlns='jabber:component:accept'") && h.contains("id='x&apos;y'"));
    }

    #[test]
    fn stanzas_in_and_out_of_the_component_namespace() {
        let mut p = StreamParser::new(65536);
        let mut out = Vec::new();
        p.feed(
            b"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='bot.localhost'>\
              <message to='a@localhost' from='echo@bot.localhost'><body>hi</body><x xmlns='urn:x'><body/></x></message>",
            &mut out,
        )
        .unwrap();
        let Some(Frame::Stanza(m)) = out.pop() else {
            panic!()
        };
        assert!(m.is("message", NS));
        let m = to_client_ns(m);
        assert!(m.is("message", ns::CLIENT));
        assert_eq!(m.attr("to"), Some("a@localhost"));
        assert_eq!(m.get_child("body", ns::CLIENT).unwrap().text(), "hi");
        assert!(
            m.get_child("x", "urn:x")
                .unwrap()
                .has_child("body", "urn:x")
        );

        // Out: one declaration changes; the rest reads the same.
        let bytes = stanza::to_bytes(&m);
        let (a, b) = client_ns_span(&bytes).expect("root declares jabber:client");
        let spliced = [&bytes[..a], NS.as_bytes(), &bytes[b..]].concat();
        let back = parse_element(&spliced, 65536).unwrap();
        assert!(back.is("message", NS));
        assert_eq!(back.get_child("body", NS).unwrap().text(), "hi");
        assert!(back.get_child("x", "urn:x").is_some());
        assert_eq!(to_client_ns(back), m);
    }

    #[test]
    fn span_needs_a_declaration_in_the_start_tag() {
        assert_eq!(
            client_ns_span(b"<message xmlns='jabber:client' to='x'/>"),
            Some((16, 29))
        );
        for other in [
            &b"<message to='x'><body xmlns='jabber:client'/></message>"[..],
            b"<message to=' xmlns=&#39;jabber:client&#39;'/>",
            b"<message xmlns='urn:other'/>",
            b"<message",
            b"",
        ] {
            assert_eq!(client_ns_span(other), None);
        }
    }
}
