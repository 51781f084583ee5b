//! XEP-0215: External Service Discovery. Hands out time-limited TURN
//! credentials in coturn's REST-secret scheme: the username is
//! `<expiry>:<bare JID>` and the password base64(HMAC-SHA1(secret, username)),
//! so coturn checks them with nothing but the shared secret.

use aws_lc_rs::hmac;
use base64::Engine;
use minidom::Element;
use xmpp_core::stanza::{self, ElementExt};
use xmpp_core::{ns, time};

use crate::hub::{HandlerFuture, IqRoute, Module, Server, Session, Target};

pub const MODULE: Module = Module {
    name: "extdisco",
    features: &[ns::EXTDISCO],
    account_features: &[],
    account_identities: &[],
    iq: &[IqRoute {
        target: Target::Server,
        ns: ns::EXTDISCO,
        handler: handle,
    }],
    enabled: super::always,
};

pub fn turn_credentials(secret: &str, who: &str, expires: u64) -> (String, String) {
    let username = format!("{expires}:{who}");
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = hmac::sign(&key, username.as_bytes());
    (
        username,
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref()),
    )
}

fn services(srv: &Server, s: &Session, wanted_type: Option<&str>) -> Vec<Element> {
    let t = &srv.config.turn;
    let mut out = Vec::new();
    let port = t.port.to_string();
    let stun = Element::bare("service", ns::EXTDISCO)
        .with("type", "stun")
        .with("transport", "udp")
        .with("host", &t.host)
        .with("port", &port);
    out.push(stun);
    if !t.secret.is_empty() {
        let expires = time::now_unix() + t.ttl_secs;
        let (username, password) = turn_credentials(&t.secret, s.bare(), expires);
        for transport in ["udp", "tcp"] {
            out.push(
                Element::bare("service", ns::EXTDISCO)
                    .with("type", "turn")
                    .with("transport", transport)
                    .with("host", &t.host)
                    .with("port", &port)
                    .with("username", &username)
                    .with("password", &password)
                    .with("expires", &time::datetime(expires))
                    .with("restricted", "1"),
            );
        }
    }
    out.retain(|e| wanted_type.is_none_or(|w| e.attr("type") == Some(w)));
    out
}

fn handle<'a>(srv: &'a Server, s: &'a Session, _: &'a str, iq: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        let Some(payload) = stanza::iq_payload(&iq) else {
            s.send(&stanza::error_reply(&iq, "bad-request", None));
            return;
        };
        if iq.attr("type") != Some("get") || !matches!(payload.name(), "services" | "credentials") {
            s.send(&stanza::error_reply(&iq, "bad-request", None));
            return;
        }
        let wanted = match payload.name() {
            "services" => payload.attr("type").map(str::to_owned),
            _ => payload
                .get_child("service", ns::EXTDISCO)
                .and_then(|c| c.attr("type"))
                .map(str::to_owned),
        };
        let mut list = services(srv, s, wanted.as_deref());
        if payload.name() == "credentials" {
            list.retain(|e| e.attr("username").is_some());
            if list.is_empty() {
                s.send(&stanza::error_reply(&iq, "item-not-found", None));
                return;
            }
        }
        let mut query = Element::bare(payload.name(), ns::EXTDISCO);
        for e in list {
            query.append_child(e);
        }
        let mut reply = stanza::iq_result(&iq);
        reply.append_child(query);
        s.send(&reply);
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn coturn_rest_scheme() {
        // RFC 2202 test case 2 as the HMAC: key "Jefe", data "what do ya want for nothing?".
        let key =
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"Jefe");
        let tag = aws_lc_rs::hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(
            tag.as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        let (u, p) = super::turn_credentials("s3cret", "alice@localhost", 1000);
        assert_eq!(u, "1000:alice@localhost");
        assert_eq!(p.len(), 28);
    }
}
