//! XEP-0280 Message Carbons: every resource that asks sees its account's
//! one-to-one chats, sent and received. A copy is serialised once and
//! addressed by each receiving session's writer.

use std::sync::Arc;

use minidom::Element;
use xmpp_core::ns;
use xmpp_core::stanza::{self, ElementExt};

use crate::hub::{HandlerFuture, IqRoute, Module, Server, Session, Target};
use crate::router::SessionHandle;

pub const MODULE: Module = Module {
    name: "carbons",
    features: &[ns::CARBONS, ns::CARBONS_RULES],
    account_features: &[],
    account_identities: &[],
    iq: &[IqRoute {
        target: Target::Server,
        ns: ns::CARBONS,
        handler: handle,
    }],
    enabled: super::always,
};

fn handle<'a>(_: &'a Server, s: &'a Session, _: &'a str, iq: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        let on = match stanza::iq_payload(&iq).map(Element::name) {
            Some("enable") => true,
            Some("disable") => false,
            _ => return s.send(&stanza::error_reply(&iq, "bad-request", None)),
        };
        if iq.attr("type") != Some("set") {
            return s.send(&stanza::error_reply(&iq, "bad-request", None));
        }
        if let Ok(mut st) = s.handle.state.lock() {
            st.carbons = on;
        }
        s.send(&stanza::iq_result(&iq));
    })
}

/// XEP-0280 §6 (rules:0): chats and normal messages with a body are copied,
/// and so are normal messages that are part of a conversation without one
/// (a reaction, a retraction: what the archive keeps too), the rules' intent
/// being "the messages used for instant messaging"; a sender can opt out
/// with `<private/>` plus a no-copy hint, and private messages from a room
/// stay with the resource that is in the room.
pub fn eligible(el: &Element) -> bool {
    let ty = el.attr("type").unwrap_or("normal");
    let kind_ok = ty == "chat"
        || (ty == "normal"
            && (el.has_child("body", ns::CLIENT) || super::mam::conversation_payload(el)));
    kind_ok
        && !el.has_child("private", ns::CARBONS)
        && !el.has_child("no-copy", ns::HINTS)
        && !el.has_child("received", ns::CARBONS)
        && !el.has_child("sent", ns::CARBONS)
}

fn enabled(h: &SessionHandle) -> bool {
    h.state.lock().map(|s| s.carbons).unwrap_or(false)
}

fn wrap(direction: &str, account: &str, el: &Element) -> Element {
    let mut fwd = Element::bare("forwarded", ns::FORWARD);
    fwd.append_child(el.clone());
    let mut d = Element::bare(direction, ns::CARBONS);
    d.append_child(fwd);
    let mut m = Element::bare("message", ns::CLIENT)
        .with("from", account)
        .with("type", el.attr("type").unwrap_or("normal"));
    m.append_child(d);
    m
}

/// Copies to the account's carbon-enabled sessions, except `skip`.
fn copy(srv: &Server, account: &str, direction: &str, el: &Element, skip: &[u64]) {
    let targets: Vec<Arc<SessionHandle>> = srv.router.with_sessions(account, |list| {
        list.iter()
            .filter(|h| !skip.contains(&h.id) && enabled(h))
            .cloned()
            .collect()
    });
    // Most messages have no carbon-enabled resource to go to: don't build
    // and serialise a copy nobody receives.
    if targets.is_empty() {
        return;
    }
    srv.deliver_addressed(&targets, &wrap(direction, account, el));
}

/// The sender's other resources see what it sent.
pub fn sent(srv: &Server, s: &Session, el: &Element) {
    if eligible(el) {
        copy(srv, s.bare(), "sent", el, &[s.handle.id]);
    }
}

/// The recipient's other resources see what one of them received.
pub fn received(srv: &Server, account: &str, delivered_to: &[u64], el: &Element) {
    if eligible(el) && !el.has_child("x", ns::MUC_USER) {
        copy(srv, account, "received", el, delivered_to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_core::framing::parse_element;

    fn eligible_xml(x: &str) -> bool {
        eligible(&parse_element(x.as_bytes(), 1 << 16).unwrap())
    }

    #[test]
    fn which_messages_are_copied() {
        assert!(eligible_xml(
            "<message xmlns='jabber:client' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        ));
        assert!(eligible_xml(
            "<message xmlns='jabber:client'><body>hi</body></message>"
        ));
        // a reaction as clients send it: type normal, no body
        assert!(eligible_xml(
            "<message xmlns='jabber:client'><reactions xmlns='urn:xmpp:reactions:0' id='m1'><reaction>\u{1f44d}</reaction></reactions><store xmlns='urn:xmpp:hints'/></message>"
        ));
        assert!(!eligible_xml(
            "<message xmlns='jabber:client'><x xmlns='jabber:x:conference' jid='r@conference.localhost'/></message>"
        ));
        assert!(!eligible_xml(
            "<message xmlns='jabber:client' type='headline'><body>news</body></message>"
        ));
        assert!(!eligible_xml(
            "<message xmlns='jabber:client' type='chat'><body>x</body><private xmlns='urn:xmpp:carbons:2'/><no-copy xmlns='urn:xmpp:hints'/></message>"
        ));
    }
}
