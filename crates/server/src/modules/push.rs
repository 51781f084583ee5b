//! XEP-0357 Push Notifications: clients register an app server (a JID,
//! typically a component that talks to a phone vendor's push service); when
//! a message waits offline for the account, the app server is told.
//!
//! Privacy: the notification carries the message count and the sender's
//! bare JID, never the body (XEP-0357 §7 leaves this to the server; the
//! body would cross to a third party).

use jid::Jid;
use minidom::Element;
use xmpp_core::framing::parse_element;
use xmpp_core::ns;
use xmpp_core::stanza::{self, ElementExt};

use crate::hub::{HandlerFuture, IqRoute, Module, Server, Session, Target};

pub const MODULE: Module = Module {
    name: "push",
    features: &[],
    account_features: &[ns::PUSH],
    account_identities: &[],
    iq: &[IqRoute {
        target: Target::Account,
        ns: ns::PUSH,
        handler: handle,
    }],
    enabled: super::always,
};

fn handle<'a>(srv: &'a Server, s: &'a Session, owner: &'a str, iq: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        if owner != s.bare() || s.anonymous || iq.attr("type") != Some("set") {
            return s.send(&stanza::error_reply(&iq, "bad-request", None));
        }
        let Some(p) = stanza::iq_payload(&iq) else {
            return s.send(&stanza::error_reply(&iq, "bad-request", None));
        };
        let Some(app) = p.attr("jid").and_then(|j| Jid::new(j).ok()) else {
            return s.send(&stanza::error_reply(&iq, "jid-malformed", None));
        };
        let r = match p.name() {
            "enable" => {
                let Some(node) = p.attr("node").filter(|n| !n.is_empty()) else {
                    return s.send(&stanza::error_reply(&iq, "bad-request", None));
                };
                let options = p
                    .get_child("x", ns::DATA_FORMS)
                    .map(stanza::to_string)
                    .unwrap_or_default();
                srv.store
                    .add_push(owner, app.as_str(), node, &options)
                    .await
            }
            "disable" => {
                srv.store
                    .remove_push(owner, app.as_str(), p.attr("node"))
                    .await
            }
            _ => return s.send(&stanza::error_reply(&iq, "bad-request", None)),
        };
        match r {
            Ok(()) => s.send(&stanza::iq_result(&iq)),
            Err(e) => {
                tracing::error!(error = %e, "push registration failed");
                s.send(&stanza::error_reply(&iq, "internal-server-error", None));
            }
        }
    })
}

/// A message was stored offline for `owner`: tell its app servers.
pub async fn notify(srv: &Server, owner: &str, message: &Element) {
    let Ok(regs) = srv.store.push_registrations(owner).await else {
        return;
    };
    let sender = message
        .attr("from")
        .and_then(|f| Jid::new(f).ok())
        .map(|j| j.to_bare().as_str().to_owned())
        .unwrap_or_default();
    for (app, node, options) in regs {
        let Ok(app_jid) = Jid::new(&app) else {
            continue;
        };
        let mut summary = Element::bare("x", ns::DATA_FORMS).with("type", "submit");
        summary.append_child(xmpp_core::forms::form_type(ns::PUSH_SUMMARY));
        summary.append_child(xmpp_core::forms::field("message-count", None, None, &["1"]));
        summary.append_child(xmpp_core::forms::field(
            "last-message-sender",
            None,
            None,
            &[&sender],
        ));
        let mut notification = Element::bare("notification", ns::PUSH);
        notification.append_child(summary);
        let mut item = Element::bare("item", ns::PUBSUB);
        item.append_child(notification);
        let mut publish = Element::bare("publish", ns::PUBSUB).with("node", &node);
        publish.append_child(item);
        let mut pubsub = Element::bare("pubsub", ns::PUBSUB);
        pubsub.append_child(publish);
        if let Ok(x) = parse_element(options.as_bytes(), usize::MAX) {
            let mut po = Element::bare("publish-options", ns::PUBSUB);
            po.append_child(x);
            pubsub.append_child(po);
        }
        let mut iq = Element::bare("iq", ns::CLIENT)
            .with("type", "set")
            .with("from", owner)
            .with("to", app_jid.as_str())
            .with("id", &format!("push-{}", crate::session::random_id()));
        iq.append_child(pubsub);
        let domain = app_jid.domain().as_str();
        if let Some(conn) = srv.component(domain).and_then(|c| c.connection()) {
            conn.send(stanza::to_bytes(&iq));
        } else if srv.config.is_local_host(domain) {
            let targets: Vec<_> = srv.router.sessions(app_jid.to_bare().as_str());
            srv.deliver(&targets, &iq);
        } else {
            tracing::debug!(app = %app_jid, "push app server unreachable (no federation)");
        }
    }
}
