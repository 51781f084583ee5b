//! RFC 6121 §8.5 message delivery and XEP-0160 offline storage. Delivery to
//! an online user is a router lookup and a queue push; only a message for
//! someone with no available resource touches the database, and the
//! sender's next stanza is not handled before that write is durable.

use jid::Jid;
use minidom::Element;
use xmpp_core::framing::parse_element;
use xmpp_core::stanza::{self, ElementExt};
use xmpp_core::{ns, time};

use conclave_store::StoreError;

use crate::hub::{Module, Server, Session};

pub const MODULE: Module = Module {
    name: "offline",
    features: &[ns::OFFLINE],
    account_features: &[],
    iq: &[],
    enabled: super::always,
};

fn bounce(s: &Session, el: &Element, condition: &str) {
    if el.attr("type") != Some("error") {
        s.send(&stanza::error_reply(el, condition, None));
    }
}

pub async fn from_client(srv: &Server, s: &Session, to: Option<Jid>, mut el: Element) {
    // §10.3.1 of RFC 6120: no `to` means the sender's own account.
    let to = match to {
        Some(t) => t,
        None => match Jid::new(s.bare()) {
            Ok(j) => {
                el.set("to", s.bare());
                j
            }
            Err(_) => return,
        },
    };
    if !srv.config.is_local_host(to.domain().as_str()) {
        bounce(s, &el, "remote-server-not-found");
        return;
    }
    if to.node().is_none() {
        bounce(s, &el, "service-unavailable");
        return;
    }
    let ty = el.attr("type").unwrap_or("normal").to_owned();
    let bare = to.to_bare();
    if to.is_full() {
        if let Some(h) = srv.router.session(bare.as_str(), to.as_str()) {
            srv.deliver(&[h], &el);
            return;
        }
        match ty.as_str() {
            "groupchat" => return bounce(s, &el, "service-unavailable"),
            "headline" | "error" => return,
            _ => {}
        }
    }
    if ty == "groupchat" {
        return bounce(s, &el, "service-unavailable");
    }
    let targets: Vec<_> = srv
        .router
        .sessions(bare.as_str())
        .into_iter()
        .filter(|h| h.is_available() && h.priority() >= 0)
        .collect();
    if !targets.is_empty() {
        srv.deliver(&targets, &el);
        return;
    }
    if !matches!(ty.as_str(), "chat" | "normal") {
        return;
    }
    if !srv.user_exists(bare.as_str()).await {
        return bounce(s, &el, "service-unavailable");
    }
    let xml = stanza::to_bytes(&el);
    let xml = String::from_utf8_lossy(&xml);
    match srv
        .store
        .push(
            bare.as_str(),
            time::now_unix(),
            &xml,
            srv.config.limits.max_offline_messages,
        )
        .await
    {
        Ok(()) => metrics::counter!("conclave_offline_stored_total").increment(1),
        Err(StoreError::Quota) => bounce(s, &el, "service-unavailable"),
        Err(e) => {
            tracing::error!(error = %e, "offline store failed");
            bounce(s, &el, "internal-server-error");
        }
    }
}

/// Delivers stored messages with a delay stamp, then deletes them: a crash
/// in between may deliver twice but never loses one.
pub async fn deliver_offline(srv: &Server, s: &Session) {
    let msgs = match srv.store.list(s.bare()).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "offline read failed");
            return;
        }
    };
    let Some(last) = msgs.last().map(|m| m.id) else {
        return;
    };
    for m in &msgs {
        let Ok(mut el) = parse_element(m.stanza.as_bytes(), usize::MAX) else {
            continue;
        };
        let delay = Element::bare("delay", ns::DELAY)
            .with("from", &s.host)
            .with("stamp", &time::datetime(m.stamp));
        let mut delay = delay;
        delay.append_text("Offline Storage");
        el.append_child(delay);
        s.send(&el);
    }
    if let Err(e) = srv.store.delete_upto(s.bare(), last).await {
        tracing::error!(error = %e, "offline delete failed");
    }
}
