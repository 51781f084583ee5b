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
use crate::modules::carbons;

pub const MODULE: Module = Module {
    name: "offline",
    features: &[ns::OFFLINE],
    account_features: &[],
    account_identities: &[],
    iq: &[],
    enabled: super::always,
};

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
        s.bounce(&el, "remote-server-not-found");
        return;
    }
    if to.node().is_none() {
        s.bounce(&el, "service-unavailable");
        return;
    }
    let ty = el.attr("type").unwrap_or("normal").to_owned();
    let bare = crate::hub::bare_of(&to);
    let serialised = if ty != "groupchat" && ty != "error" && srv.user_exists(bare).await {
        let bytes = super::mam::archive_chat(srv, s.full(), bare, &mut el).await;
        if let Some(id) = el
            .get_child("retract", ns::RETRACT)
            .and_then(|r| r.attr("id"))
        {
            let id = id.to_owned();
            let own = el.attr("id").map(str::to_owned);
            super::retraction::retract_chat(srv, s.bare(), bare, &id, own.as_deref()).await;
        }
        bytes
    } else {
        None
    };
    let send_to = |targets: &[std::sync::Arc<crate::router::SessionHandle>]| match &serialised {
        Some(bytes) => srv.deliver_bytes(targets, bytes),
        None => deliver(srv, targets, &el),
    };
    carbons::sent(srv, s, &el);
    if to.is_full() {
        if let Some(h) = srv.router.session(bare, to.as_str()) {
            send_to(std::slice::from_ref(&h));
            carbons::received(srv, bare, &[h.id], &el);
            return;
        }
        match ty.as_str() {
            "groupchat" => return s.bounce(&el, "service-unavailable"),
            "headline" | "error" => return,
            _ => {}
        }
    }
    if ty == "groupchat" {
        return s.bounce(&el, "service-unavailable");
    }
    let targets: Vec<_> = srv.router.with_sessions(bare, |list| {
        list.iter()
            .filter(|h| h.is_available() && h.priority() >= 0)
            .cloned()
            .collect()
    });
    if !targets.is_empty() {
        send_to(&targets);
        let ids: Vec<u64> = targets.iter().map(|h| h.id).collect();
        carbons::received(srv, bare, &ids, &el);
        return;
    }
    if !matches!(ty.as_str(), "chat" | "normal") {
        return;
    }
    if !srv.user_exists(bare).await {
        return s.bounce(&el, "service-unavailable");
    }
    let xml = serialised.unwrap_or_else(|| stanza::to_bytes(&el));
    let xml = String::from_utf8_lossy(&xml);
    match srv
        .store
        .push(
            bare,
            time::now_unix(),
            &xml,
            srv.config.limits.max_offline_messages,
        )
        .await
    {
        Ok(()) => {
            metrics::counter!("conclave_offline_stored_total").increment(1);
            super::push::notify(srv, bare, &el).await;
            // The recipient may have become available while this was being
            // written, after its login fetched the queue: hand it over now.
            let ready = srv
                .router
                .sessions(bare)
                .into_iter()
                .find(|h| h.is_available() && h.priority() >= 0);
            if let Some(h) = ready {
                deliver_offline_to(srv, &h, to.domain().as_str()).await;
            }
        }
        Err(StoreError::Quota) => s.bounce(&el, "service-unavailable"),
        Err(e) => {
            tracing::error!(error = %e, "offline store failed");
            s.bounce(&el, "internal-server-error");
        }
    }
}

/// A stanza a session never confirmed it received (XEP-0198: unacked when
/// the session ended). A message someone wrote (chat or normal, with a
/// body) is kept offline for the account: a duplicate on a device that
/// did get it beats a loss. Copies are not: MAM results and carbons have
/// their original elsewhere. A message that was itself delivered from
/// offline storage goes back with its first stamp. An IQ request is
/// answered `service-unavailable` (RFC 6120 §8.4); anything else dropped.
pub async fn undelivered(srv: &Server, s: &Session, mut el: Element) {
    match el.name() {
        "iq" if matches!(el.attr("type"), Some("get" | "set")) => {
            let reply = stanza::error_reply(&el, "service-unavailable", None);
            let _ = Box::pin(srv.handle_stanza(s, reply)).await;
        }
        "message" => {
            let ty = el.attr("type").unwrap_or("normal");
            let written = matches!(ty, "chat" | "normal")
                && el.has_child("body", ns::CLIENT)
                && !el.has_child("result", ns::MAM)
                && !el.has_child("sent", ns::CARBONS)
                && !el.has_child("received", ns::CARBONS);
            if !written {
                return;
            }
            let host = s.host.as_str();
            let ours = el
                .get_child("delay", ns::DELAY)
                .is_some_and(|d| d.attr("from") == Some(host));
            let stamp = ours
                .then(|| el.remove_child("delay", ns::DELAY))
                .flatten()
                .and_then(|d| d.attr("stamp").and_then(time::parse_datetime_us))
                .and_then(|us| u64::try_from(us / 1_000_000).ok())
                .unwrap_or_else(time::now_unix);
            let xml = stanza::to_bytes(&el);
            let xml = String::from_utf8_lossy(&xml);
            let stored = srv
                .store
                .push(
                    s.bare(),
                    stamp,
                    &xml,
                    srv.config.limits.max_offline_messages,
                )
                .await;
            match stored {
                Ok(()) => {
                    metrics::counter!("conclave_offline_stored_total").increment(1);
                    super::push::notify(srv, s.bare(), &el).await;
                }
                Err(e) => {
                    // Past the recipient's offline quota (or a store
                    // failure): the sender is told, never left to believe
                    // it was delivered (RFC 6121 §8.5.2.1.1).
                    tracing::debug!(error = %e, "undelivered message bounced");
                    metrics::counter!("conclave_undelivered_bounced_total").increment(1);
                    let reply = stanza::error_reply(&el, "service-unavailable", None);
                    let _ = Box::pin(srv.handle_stanza(s, reply)).await;
                }
            }
        }
        _ => {}
    }
}

/// A message that carries nothing but a chat state may wait for an
/// inactive client (XEP-0352); anything else goes at once.
fn deliver(srv: &Server, targets: &[std::sync::Arc<crate::router::SessionHandle>], el: &Element) {
    let only_state = el.attr("type") != Some("error")
        && el.children().next().is_some()
        && el.children().all(|c| c.ns() == ns::CHATSTATES);
    if only_state {
        srv.deliver_deferrable(targets, &stanza::to_bytes(el));
    } else {
        srv.deliver(targets, el);
    }
}

/// Delivers stored messages, with a delay stamp, to one session.
pub async fn deliver_offline(srv: &Server, s: &Session) {
    deliver_offline_to(srv, &s.handle, &s.host).await;
}

async fn deliver_offline_to(srv: &Server, h: &crate::router::SessionHandle, host: &str) {
    let msgs = match srv.store.take(&h.bare).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "offline read failed");
            return;
        }
    };
    for m in &msgs {
        let Ok(mut el) = parse_element(m.stanza.as_bytes(), usize::MAX) else {
            continue;
        };
        let mut delay = Element::bare("delay", ns::DELAY)
            .with("from", host)
            .with("stamp", &time::datetime(m.stamp));
        delay.append_text("Offline Storage");
        el.append_child(delay);
        h.send(stanza::to_bytes(&el));
    }
}
