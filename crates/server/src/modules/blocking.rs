//! XEP-0191 Blocking Command: a user's block list, enforced on routing in
//! both directions. Lists are cached in memory, so checking a stanza costs
//! no database round trip.

use std::sync::{Arc, Mutex};

use jid::Jid;
use minidom::Element;
use xmpp_core::ns;
use xmpp_core::stanza::{self, ElementExt};

use crate::hub::{HandlerFuture, IqRoute, Module, Server, Session, Target};

pub const MODULE: Module = Module {
    name: "blocking",
    // XEP-0191 §2: clients discover blocking on their server's domain.
    features: &[ns::BLOCKING],
    account_features: &[ns::BLOCKING, ns::REPORTING],
    account_identities: &[],
    iq: &[IqRoute {
        target: Target::Account,
        ns: ns::BLOCKING,
        handler: handle,
    }],
    enabled: super::always,
};

#[derive(Default)]
pub struct Blocklists {
    cache: Mutex<crate::FastMap<String, Arc<Vec<String>>>>,
    /// Sessions (ids) that asked for the list and so get pushes.
    interested: Mutex<std::collections::HashSet<u64>>,
}

impl Blocklists {
    async fn list(&self, srv: &Server, owner: &str) -> Arc<Vec<String>> {
        if let Some(l) = self.cache.lock().ok().and_then(|c| c.get(owner).cloned()) {
            return l;
        }
        let list = Arc::new(srv.store.blocklist(owner).await.unwrap_or_default());
        if let Ok(mut c) = self.cache.lock() {
            if c.len() > 100_000 {
                c.clear();
            }
            c.insert(owner.to_owned(), list.clone());
        }
        list
    }

    fn forget(&self, owner: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(owner);
        }
    }

    /// Whether `owner` blocks `other` (a full JID, a bare JID, or its
    /// domain may be on the list).
    pub async fn blocks(&self, srv: &Server, owner: &str, other: &Jid) -> bool {
        self.blocks_parts(
            srv,
            owner,
            other.as_str(),
            crate::hub::bare_of(other),
            other.domain().as_str(),
        )
        .await
    }

    /// The same for an address given in its parts, so that the per-message
    /// path parses nothing for the common empty list.
    async fn blocks_parts(
        &self,
        srv: &Server,
        owner: &str,
        full: &str,
        bare: &str,
        domain: &str,
    ) -> bool {
        let list = self.list(srv, owner).await;
        list.iter().any(|b| b == full || b == bare || b == domain)
    }
}

/// Checks a stanza between a local user and another local entity. `Some`
/// is the error condition to answer the sender with (`None` inside means
/// drop silently).
pub async fn check(srv: &Server, s: &Session, to: &Jid, el: &Element) -> Option<Option<Element>> {
    // Only accounts block and are blocked, never a server or service.
    to.node()?;
    if let Some(refusal) = outbound(srv, s, to, el).await {
        return Some(refusal);
    }
    let blocked = srv
        .blocking
        .blocks_parts(srv, crate::hub::bare_of(to), s.full(), s.bare(), &s.host)
        .await;
    blocked.then(|| refusal(el))
}

/// The sender blocked the recipient (XEP-0191 §3.5): `not-acceptable`
/// with `<blocked/>`, presence and errors dropped. `to` may be any address,
/// a component's domain included.
pub async fn outbound(
    srv: &Server,
    s: &Session,
    to: &Jid,
    el: &Element,
) -> Option<Option<Element>> {
    if !srv.blocking.blocks(srv, s.bare(), to).await {
        return None;
    }
    if el.name() == "presence" || el.attr("type") == Some("error") {
        return Some(None);
    }
    let mut e = stanza::error_reply(el, "not-acceptable", None);
    if let Some(err) = e.get_child_mut("error", ns::CLIENT) {
        err.append_child(Element::bare("blocked", ns::BLOCKING_ERRORS));
    }
    Some(Some(e))
}

/// The local account `to` blocked `from` (a user or a component's
/// address): nothing reaches it, and the sender learns no more than that
/// the user is unavailable (XEP-0191 §3.5): `service-unavailable` for
/// messages and requests, silence for presence and the rest.
pub async fn inbound(srv: &Server, from: &Jid, to: &Jid, el: &Element) -> Option<Option<Element>> {
    to.node()?;
    if !srv
        .blocking
        .blocks(srv, crate::hub::bare_of(to), from)
        .await
    {
        return None;
    }
    Some(refusal(el))
}

fn refusal(el: &Element) -> Option<Element> {
    let ty = el.attr("type");
    let answer = match el.name() {
        "message" => ty != Some("error"),
        "iq" => matches!(ty, Some("get" | "set")),
        _ => false,
    };
    answer.then(|| stanza::error_reply(el, "service-unavailable", None))
}

fn items(el: &Element) -> Result<Vec<String>, &'static str> {
    el.children()
        .filter(|c| c.is("item", ns::BLOCKING))
        .map(|c| {
            c.attr("jid")
                .and_then(|j| Jid::new(j).ok())
                .map(|j| j.as_str().to_owned())
                .ok_or("jid-malformed")
        })
        .collect()
}

fn push(srv: &Server, owner: &str, payload: Element) {
    let interested = srv
        .blocking
        .interested
        .lock()
        .map(|i| i.clone())
        .unwrap_or_default();
    for h in srv.router.sessions(owner) {
        if !interested.contains(&h.id) {
            continue;
        }
        let mut iq = Element::bare("iq", ns::CLIENT)
            .with("type", "set")
            .with("id", &format!("block-{}", crate::session::random_id()))
            .with("to", &h.full);
        iq.append_child(payload.clone());
        h.send(stanza::to_bytes(&iq));
    }
}

/// XEP-0377: a block may carry a report; the server's administrators hear
/// of it (who reported whom, why), and nothing else is kept.
fn report_to_admins(srv: &Server, s: &Session, block: &Element) {
    for item in block.children().filter(|c| c.is("item", ns::BLOCKING)) {
        let Some(report) = item.get_child("report", ns::REPORTING) else {
            continue;
        };
        let about = item.attr("jid").unwrap_or("?");
        let reason = report
            .attr("reason")
            .and_then(|r| r.rsplit(':').next())
            .unwrap_or("unspecified");
        let text = report
            .get_child("text", ns::REPORTING)
            .map(Element::text)
            .unwrap_or_default();
        tracing::info!(reporter = s.bare(), about, reason, "abuse report");
        let mut body = format!("{} reported {about} ({reason}).", s.bare());
        if !text.is_empty() {
            body.push('\n');
            body.push_str(&text);
        }
        for admin in &srv.config.admins {
            let Ok(j) = Jid::new(admin) else { continue };
            let mut m = Element::bare("message", ns::CLIENT)
                .with("from", &s.host)
                .with("to", j.as_str())
                .with("type", "normal")
                .with("id", &crate::session::random_id());
            let mut b = Element::bare("body", ns::CLIENT);
            b.append_text(body.clone());
            m.append_child(b);
            m.append_child(report.clone());
            let targets: Vec<_> = srv
                .router
                .sessions(j.to_bare().as_str())
                .into_iter()
                .filter(|h| h.is_available())
                .collect();
            srv.deliver(&targets, &m);
        }
    }
}

fn handle<'a>(srv: &'a Server, s: &'a Session, owner: &'a str, iq: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        if owner != s.bare() || s.anonymous {
            return s.send(&stanza::error_reply(&iq, "forbidden", None));
        }
        let Some(p) = stanza::iq_payload(&iq).cloned() else {
            return s.send(&stanza::error_reply(&iq, "bad-request", None));
        };
        match (iq.attr("type"), p.name()) {
            (Some("get"), "blocklist") => {
                if let Ok(mut i) = srv.blocking.interested.lock() {
                    i.insert(s.handle.id);
                }
                let list = srv.blocking.list(srv, owner).await;
                let mut out = Element::bare("blocklist", ns::BLOCKING);
                for j in list.iter() {
                    out.append_child(Element::bare("item", ns::BLOCKING).with("jid", j));
                }
                let mut res = stanza::iq_result(&iq);
                res.append_child(out);
                s.send(&res);
            }
            (Some("set"), "block" | "unblock") => {
                let jids = match items(&p) {
                    Ok(j) => j,
                    Err(c) => return s.send(&stanza::error_reply(&iq, c, None)),
                };
                let block = p.name() == "block";
                if block && jids.is_empty() {
                    return s.send(&stanza::error_reply(&iq, "bad-request", None));
                }
                let r = if block {
                    srv.store.block(owner, &jids).await
                } else {
                    srv.store.unblock(owner, &jids).await
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "block list write failed");
                    return s.send(&stanza::error_reply(&iq, "internal-server-error", None));
                }
                srv.blocking.forget(owner);
                s.send(&stanza::iq_result(&iq));
                if block {
                    report_to_admins(srv, s, &p);
                }
                if block {
                    // §3.3: the blocked contacts no longer see the user.
                    for j in &jids {
                        for h in srv.router.sessions(owner) {
                            if !h.is_available() {
                                continue;
                            }
                            let p = Element::bare("presence", ns::CLIENT)
                                .with("type", "unavailable")
                                .with("from", &h.full)
                                .with("to", j);
                            if let Ok(to) = Jid::new(j) {
                                let targets: Vec<_> = srv
                                    .router
                                    .sessions(to.to_bare().as_str())
                                    .into_iter()
                                    .filter(|t| t.is_available())
                                    .collect();
                                srv.deliver(&targets, &p);
                            }
                        }
                    }
                }
                push(srv, owner, p);
            }
            _ => s.send(&stanza::error_reply(&iq, "bad-request", None)),
        }
    })
}
