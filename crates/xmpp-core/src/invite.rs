//! Invitation tokens and the URIs that carry them: XEP-0379 (pre-authenticated
//! roster subscription), XEP-0401 (easy user onboarding) and XEP-0445
//! (pre-authenticated in-band registration), over RFC 5122 / XEP-0147 URIs.
//!
//! A token is a credential: only its SHA-256 is stored, and the short id an
//! operator sees in listings is derived from that hash, never the token.

use aws_lc_rs::{digest, rand};

/// The `<preauth/>` element's namespace (XEP-0379).
pub const NS_PARS: &str = "urn:xmpp:pars:0";
/// XEP-0401's namespace: its stream feature and the commands' node prefix.
pub const NS_INVITE: &str = "urn:xmpp:invite";
/// XEP-0445's stream feature.
pub const NS_IBR_TOKEN: &str = "urn:xmpp:ibr-token:0";
/// The FORM_TYPE of an invitation command's result (XEP-0401).
pub const FORM_INVITATION: &str = "urn:xmpp:invite#invitation";
pub const NODE_INVITE: &str = "urn:xmpp:invite#invite";
pub const NODE_CREATE_ACCOUNT: &str = "urn:xmpp:invite#create-account";

/// Characters in a token: 128 random bits as lower-case hex (the XEPs ask
/// for an alphanumeric string; hex also survives every URI and path).
const TOKEN_LEN: usize = 32;
/// Hex digits of the hash shown as an invite's id.
pub const ID_LEN: usize = 16;

/// A fresh token, or `None` if the system RNG fails (then no invite is made).
pub fn new_token() -> Option<String> {
    let mut b = [0u8; TOKEN_LEN / 2];
    rand::fill(&mut b).ok()?;
    Some(hex(&b))
}

/// Whether `s` has a token's shape. Anything else is refused before a
/// lookup, so odd input never reaches the store or a log line.
pub fn is_token(s: &str) -> bool {
    s.len() == TOKEN_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What the store keeps for a token.
pub fn token_hash(token: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// The id an invite is listed and revoked by: a prefix of its hash, so
/// that listings never show a usable token.
pub fn token_id(hash: &[u8]) -> String {
    let mut h = hex(hash);
    h.truncate(ID_LEN);
    h
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Percent-encodes everything but RFC 3986's unreserved characters: safe
/// in a URL path segment and in the node and query parts of an XMPP URI.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An account invitation (XEP-0445 §2.1/2.2):
/// `xmpp:juliet@example.com?register;preauth=TOKEN`, or without a node when
/// the invitee chooses the name.
pub fn account_uri(host: &str, user: Option<&str>, token: &str) -> String {
    match user {
        Some(u) => format!("xmpp:{}@{host}?register;preauth={token}", percent_encode(u)),
        None => format!("xmpp:{host}?register;preauth={token}"),
    }
}

/// A contact invitation (XEP-0379 §3.2, XEP-0401 §5.1):
/// `xmpp:romeo@example.com?roster;preauth=TOKEN;ibr=y`. `ibr` says the token
/// also registers an account here (XEP-0445 §2.3).
pub fn contact_uri(inviter_user: &str, host: &str, token: &str, ibr: bool) -> String {
    let mut u = format!(
        "xmpp:{}@{host}?roster;preauth={token}",
        percent_encode(inviter_user)
    );
    if ibr {
        u.push_str(";ibr=y");
    }
    u
}

/// The landing page for a token under `base` (no trailing slash).
pub fn landing_url(base: &str, token: &str) -> String {
    format!("{}/invite/{token}", base.trim_end_matches('/'))
}

/// The `preauth` token of an XMPP URI's query, if it has one of a token's
/// shape (for clients handing back what they were given).
pub fn uri_token(uri: &str) -> Option<&str> {
    let (_, query) = uri.split_once('?')?;
    query
        .split(';')
        .find_map(|kv| kv.strip_prefix("preauth="))
        .filter(|t| is_token(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_checked() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert!(is_token(&a) && is_token(&b));
        assert_ne!(a, b);
        assert!(!is_token(&a[1..]));
        assert!(!is_token(&a.to_uppercase()));
        assert!(!is_token(&format!("{}'", &a[1..])));
        assert!(!is_token(""));
    }

    #[test]
    fn ids_come_from_the_hash_not_the_token() {
        let t = "0123456789abcdef0123456789abcdef";
        let h = token_hash(t);
        assert_eq!(h.len(), 32);
        let id = token_id(&h);
        assert_eq!(id.len(), ID_LEN);
        assert!(!t.contains(&id));
        assert_eq!(id, hex(&h)[..ID_LEN]);
    }

    #[test]
    fn uris_follow_the_xeps() {
        let t = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            account_uri("example.com", None, t),
            format!("xmpp:example.com?register;preauth={t}")
        );
        assert_eq!(
            account_uri("example.com", Some("juliet"), t),
            format!("xmpp:juliet@example.com?register;preauth={t}")
        );
        assert_eq!(
            contact_uri("romeo", "example.com", t, true),
            format!("xmpp:romeo@example.com?roster;preauth={t};ibr=y")
        );
        assert_eq!(
            contact_uri("romeo", "example.com", t, false),
            format!("xmpp:romeo@example.com?roster;preauth={t}")
        );
        // A localpart with URI delimiters stays one node.
        assert_eq!(
            account_uri("example.com", Some("a&b?c"), t),
            format!("xmpp:a%26b%3Fc@example.com?register;preauth={t}")
        );
        assert_eq!(
            landing_url("https://example.com:8443/", t),
            format!("https://example.com:8443/invite/{t}")
        );
    }

    #[test]
    fn tokens_are_read_back_from_uris() {
        let t = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            uri_token(&contact_uri("romeo", "example.com", t, true)),
            Some(t)
        );
        assert_eq!(uri_token(&account_uri("example.com", None, t)), Some(t));
        assert_eq!(uri_token("xmpp:example.com?register;preauth=x"), None);
        assert_eq!(uri_token("xmpp:example.com"), None);
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(percent_encode("a b/é~"), "a%20b%2F%C3%A9~");
    }
}
