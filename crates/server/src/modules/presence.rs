//! RFC 6121 §4: presence broadcast, probes, directed presence and
//! unavailable on disconnect. A broadcast presence carries no `to`, so it
//! is serialised once for every recipient.

use std::sync::Arc;

use jid::Jid;
use minidom::Element;
use xmpp_core::ns;
use xmpp_core::stanza::{self, ElementExt};

use crate::hub::{Server, Session};
use crate::modules::{caps, message, roster};
use crate::router::SessionHandle;

pub async fn from_client(srv: &Server, s: &Session, to: Option<Jid>, mut el: Element) {
    let ty = el.attr("type").map(str::to_owned);
    match ty.as_deref() {
        Some(t @ ("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")) => {
            let Some(to) = to else {
                s.send(&stanza::error_reply(&el, "bad-request", None));
                return;
            };
            if s.anonymous {
                s.send(&stanza::error_reply(&el, "not-allowed", None));
                return;
            }
            roster::outbound(srv, s.bare(), to.to_bare().as_str(), t).await;
        }
        None | Some("unavailable") => match to {
            None => {
                el.unset("to");
                broadcast(srv, s, el, ty.is_none()).await;
            }
            Some(to) => directed(srv, s, &to, &el),
        },
        Some("error") => {
            if let Some(to) = to {
                directed(srv, s, &to, &el);
            }
        }
        // Probes are the server's business (§4.3); clients' are ignored.
        Some("probe") => {}
        Some(_) => s.send(&stanza::error_reply(&el, "bad-request", None)),
    }
}

fn available_sessions(srv: &Server, bare: &str) -> Vec<Arc<SessionHandle>> {
    srv.router
        .sessions(bare)
        .into_iter()
        .filter(|h| h.is_available())
        .collect()
}

async fn broadcast(srv: &Server, s: &Session, el: Element, available: bool) {
    let priority = el
        .get_child("priority", ns::CLIENT)
        .and_then(|p| p.text().trim().parse::<i8>().ok())
        .unwrap_or(0);
    let bytes = stanza::to_bytes(&el);
    let (initial, directed) = {
        let Ok(mut st) = s.handle.state.lock() else {
            return;
        };
        let initial = available && !st.available;
        st.available = available;
        st.priority = priority;
        st.last = available.then(|| bytes.clone());
        let directed = if available {
            Vec::new()
        } else {
            std::mem::take(&mut st.directed)
        };
        (initial, directed)
    };
    let mut targets: Vec<Arc<SessionHandle>> = Vec::new();
    if !s.anonymous {
        for c in roster::contacts(srv, s.bare(), roster::has_from).await {
            targets.extend(available_sessions(srv, &c));
        }
    }
    // The user's own resources hear it too, this one included (§4.2.2).
    targets.extend(available_sessions(srv, s.bare()));
    if !available {
        targets.push(s.handle.clone());
        for d in &directed {
            if let Ok(j) = Jid::new(d) {
                targets.extend(local_targets(srv, &j, false));
            }
        }
        leave_services(srv, s, &directed).await;
    }
    targets.sort_by_key(|h| h.id);
    targets.dedup_by_key(|h| h.id);
    srv.deliver_deferrable(&targets, &bytes);
    if initial {
        initial_presence(srv, s, priority).await;
    }
    if available {
        caps::on_presence(srv, s, &el).await;
    } else {
        caps::unavailable(&s.handle);
    }
}

/// What a newly available resource is owed: its contacts' presence (the
/// probe, answered from memory), its other resources' presence, pending
/// subscription requests and offline messages.
async fn initial_presence(srv: &Server, s: &Session, priority: i8) {
    let mut contacts = if s.anonymous {
        Vec::new()
    } else {
        roster::contacts(srv, s.bare(), roster::has_to).await
    };
    contacts.push(s.bare().to_owned());
    for c in contacts {
        for h in srv.router.sessions(&c) {
            if h.id == s.handle.id {
                continue;
            }
            let last = h.state.lock().ok().and_then(|st| st.last.clone());
            if let Some(b) = last {
                s.handle.send(b);
            }
        }
    }
    if s.anonymous {
        return;
    }
    if let Ok(pending) = srv.store.pending_in(s.bare()).await {
        for c in pending {
            let p = Element::bare("presence", ns::CLIENT)
                .with("type", "subscribe")
                .with("from", &c)
                .with("to", s.bare());
            s.send(&p);
        }
    }
    // XEP-0160: offline messages go to the first resource with a
    // non-negative priority.
    if priority >= 0 {
        message::deliver_offline(srv, s).await;
    }
}

/// Local sessions a stanza for `to` reaches: one resource, or every
/// available one of a bare JID (`all`: every bound one).
fn local_targets(srv: &Server, to: &Jid, all: bool) -> Vec<Arc<SessionHandle>> {
    let bare = to.to_bare();
    if to.is_full() {
        return srv
            .router
            .session(bare.as_str(), to.as_str())
            .into_iter()
            .collect();
    }
    srv.router
        .sessions(bare.as_str())
        .into_iter()
        .filter(|h| all || h.is_available())
        .collect()
}

fn directed(srv: &Server, s: &Session, to: &Jid, el: &Element) {
    if !srv.config.is_local_host(to.domain().as_str()) || to.node().is_none() {
        return;
    }
    let unavailable = el.attr("type") == Some("unavailable");
    let targets = local_targets(srv, to, unavailable);
    if el.attr("type").is_none() {
        track_directed(s, to);
    }
    srv.deliver_deferrable(&targets, &stanza::to_bytes(el));
}

/// Remembers an entity that got available presence from this session, so
/// that it hears unavailable when the session goes (§4.6.3).
pub fn track_directed(s: &Session, to: &Jid) {
    if let Ok(mut st) = s.handle.state.lock()
        && !st.directed.iter().any(|d| d == to.as_str())
    {
        st.directed.push(to.as_str().to_owned());
    }
}

/// Presence from a component (any address in its domain) to a local user:
/// directed presence and errors reach the user's sessions. Subscription
/// requests and probes from components are not handled (the component
/// keeps its own idea of who may see it).
pub fn from_component(srv: &Server, c: &Session, to: &Jid, el: Element) {
    match el.attr("type") {
        None | Some("unavailable") | Some("error") => {
            if srv.config.is_local_host(to.domain().as_str()) && to.node().is_some() {
                let all = el.attr("type") == Some("unavailable");
                srv.deliver_deferrable(&local_targets(srv, to, all), &stanza::to_bytes(&el));
            }
        }
        Some("probe") => {}
        Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed") => {
            c.bounce(&el, "feature-not-implemented");
        }
        Some(_) => c.bounce(&el, "bad-request"),
    }
}

/// Directed presence to services (rooms joined) and components ends with
/// unavailable.
async fn leave_services(srv: &Server, s: &Session, directed: &[String]) {
    for d in directed {
        let Ok(j) = Jid::new(d) else { continue };
        let unavailable = || {
            Element::bare("presence", ns::CLIENT)
                .with("type", "unavailable")
                .with("from", s.full())
                .with("to", d)
        };
        if let Some(svc) = srv.service(j.domain().as_str()) {
            (svc.handle)(srv, s, j, unavailable()).await;
        } else if let Some(slot) = srv.component(j.domain().as_str()) {
            slot.deliver(s, &unavailable());
        }
    }
}

/// Unavailable on disconnect (§4.5.2): to contacts if the session had been
/// available, and to every room it had joined in any case.
pub async fn went_offline(srv: &Server, s: &Session) {
    if !s.handle.is_available() {
        let directed = s
            .handle
            .state
            .lock()
            .map(|mut st| std::mem::take(&mut st.directed))
            .unwrap_or_default();
        leave_services(srv, s, &directed).await;
        return;
    }
    let el = Element::bare("presence", ns::CLIENT)
        .with("type", "unavailable")
        .with("from", s.full());
    broadcast(srv, s, el, false).await;
}
