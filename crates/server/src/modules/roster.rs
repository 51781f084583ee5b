//! RFC 6121 roster management and the subscription state machine (§2–3).
//!
//! Rosters of online users are cached in memory: presence broadcast reads
//! them for every presence, and must not go to the database for it. Every
//! change is written through to the store before it is acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use minidom::Element;
use xmpp_core::ns;
use xmpp_core::stanza::{self, ElementExt};

use conclave_store::{RosterItem, Subscription};

use crate::hub::{HandlerFuture, IqRoute, Module, Server, Session, Target};
use crate::modules::pep;
use crate::router::Router;

pub const MODULE: Module = Module {
    name: "roster",
    features: &[],
    account_features: &[],
    account_identities: &[],
    iq: &[IqRoute {
        target: Target::Account,
        ns: ns::ROSTER,
        handler: handle_iq,
    }],
    enabled: super::always,
};

#[derive(Debug, Default)]
pub struct RosterData {
    pub ver: u64,
    pub items: BTreeMap<String, RosterItem>,
}

pub type Shared = Arc<tokio::sync::Mutex<RosterData>>;

#[derive(Default)]
pub struct Rosters {
    cache: Mutex<HashMap<String, Shared>>,
}

impl Rosters {
    /// The user's roster, loaded once and then served from memory.
    pub async fn get(&self, srv: &Server, bare: &str) -> Option<Shared> {
        if let Some(r) = self.lock().get(bare) {
            return Some(r.clone());
        }
        let (ver, items) = match srv.store.roster(bare).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "roster load failed");
                return None;
            }
        };
        let data = RosterData {
            ver,
            items: items.into_iter().map(|i| (i.contact.clone(), i)).collect(),
        };
        Some(
            self.lock()
                .entry(bare.to_owned())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(data)))
                .clone(),
        )
    }

    /// The user's roster if it is in memory; never loads it.
    pub fn cached(&self, bare: &str) -> Option<Shared> {
        self.lock().get(bare).cloned()
    }

    pub fn evict_if_offline(&self, router: &Router, bare: &str) {
        if !router.is_online(bare) {
            self.lock().remove(bare);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Shared>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Contacts whose subscription state satisfies `pred`.
pub async fn contacts(srv: &Server, bare: &str, pred: fn(Subscription) -> bool) -> Vec<String> {
    let Some(r) = srv.rosters.get(srv, bare).await else {
        return Vec::new();
    };
    let r = r.lock().await;
    r.items
        .values()
        .filter(|i| pred(i.subscription))
        .map(|i| i.contact.clone())
        .collect()
}

/// The owner's subscription state with `contact`: from memory if the
/// owner's roster is loaded, else one item from the store (an offline
/// owner's roster is not loaded just for this).
pub async fn subscription(srv: &Server, owner: &str, contact: &str) -> Subscription {
    if let Some(r) = srv.rosters.cached(owner) {
        return r
            .lock()
            .await
            .items
            .get(contact)
            .map_or(Subscription::None, |i| i.subscription);
    }
    match srv.store.roster_item(owner, contact).await {
        Ok(i) => i.map_or(Subscription::None, |i| i.subscription),
        Err(e) => {
            tracing::error!(error = %e, "roster item read failed");
            Subscription::None
        }
    }
}

pub fn has_from(s: Subscription) -> bool {
    matches!(s, Subscription::From | Subscription::Both)
}

pub fn has_to(s: Subscription) -> bool {
    matches!(s, Subscription::To | Subscription::Both)
}

fn item_element(i: &RosterItem) -> Element {
    let mut e = Element::bare("item", ns::ROSTER)
        .with("jid", &i.contact)
        .with("subscription", i.subscription.as_str());
    if let Some(n) = &i.name {
        e.set("name", n);
    }
    if i.ask {
        e.set("ask", "subscribe");
    }
    for g in &i.groups {
        let mut ge = Element::bare("group", ns::ROSTER);
        ge.append_text(g.as_str());
        e.append_child(ge);
    }
    e
}

/// Sends a roster push (RFC 6121 §2.1.6) to every resource that asked
/// for the roster.
fn push(srv: &Server, owner: &str, ver: u64, item: Element) {
    for h in srv.router.sessions(owner) {
        if !h.state.lock().map(|s| s.interested).unwrap_or(false) {
            continue;
        }
        let mut q = Element::bare("query", ns::ROSTER).with("ver", &ver.to_string());
        q.append_child(item.clone());
        let mut iq = Element::bare("iq", ns::CLIENT)
            .with("type", "set")
            .with("id", &format!("push-{}", crate::session::random_id()))
            .with("to", &h.full);
        iq.append_child(q);
        h.send(stanza::to_bytes(&iq));
    }
}

/// Applies `f` to the owner's item for `contact` (created if missing when
/// `create`), writes it through, and pushes it if it changed.
async fn update(
    srv: &Server,
    owner: &str,
    contact: &str,
    create: bool,
    f: impl FnOnce(&mut RosterItem),
) -> Option<RosterItem> {
    let shared = srv.rosters.get(srv, owner).await?;
    let mut r = shared.lock().await;
    let before = r.items.get(contact).cloned();
    let mut item = match &before {
        Some(i) => i.clone(),
        None if create => RosterItem {
            contact: contact.to_owned(),
            name: None,
            subscription: Subscription::None,
            ask: false,
            groups: Vec::new(),
        },
        None => return None,
    };
    f(&mut item);
    if before.as_ref() == Some(&item) {
        return before;
    }
    match srv.store.put_item(owner, &item).await {
        Ok(ver) => {
            r.ver = ver;
            r.items.insert(contact.to_owned(), item.clone());
            drop(r);
            push(srv, owner, ver, item_element(&item));
            Some(item)
        }
        Err(e) => {
            tracing::error!(error = %e, "roster write failed");
            before
        }
    }
}

/// Subscribes two local accounts to each other at once, as an invitation
/// both accepted (XEP-0379, XEP-0401): each item `both`, pushed to their
/// interested resources, and each side's presence sent to the other.
pub async fn subscribe_mutually(srv: &Server, a: &str, b: &str) {
    for (owner, contact) in [(a, b), (b, a)] {
        if let Err(e) = srv.store.set_pending_in(owner, contact, false).await {
            tracing::error!(error = %e, "clearing a subscription request failed");
        }
        update(srv, owner, contact, true, |i| {
            i.subscription = Subscription::Both;
            i.ask = false;
        })
        .await;
    }
    for (from, to) in [(a, b), (b, a)] {
        send_current_presence(srv, from, to);
        pep::subscribed(srv, from, to).await;
    }
    srv.rosters.evict_if_offline(&srv.router, a);
    srv.rosters.evict_if_offline(&srv.router, b);
}

fn subscription_presence(ty: &str, from: &str, to: &str) -> Element {
    Element::bare("presence", ns::CLIENT)
        .with("type", ty)
        .with("from", from)
        .with("to", to)
}

/// Delivers to every available resource of a local user.
fn to_available(srv: &Server, bare: &str, el: &Element) {
    let targets: Vec<_> = srv
        .router
        .sessions(bare)
        .into_iter()
        .filter(|h| h.is_available())
        .collect();
    srv.deliver(&targets, el);
}

/// Sends the current presence of each of `from`'s available resources to
/// `to`'s available resources (after a subscription is approved).
fn send_current_presence(srv: &Server, from: &str, to: &str) {
    let targets: Vec<_> = srv
        .router
        .sessions(to)
        .into_iter()
        .filter(|h| h.is_available())
        .collect();
    for h in srv.router.sessions(from) {
        let last = h.state.lock().ok().and_then(|s| s.last.clone());
        if let Some(b) = last {
            srv.deliver_deferrable(&targets, &b);
        }
    }
}

/// Sends unavailable from each of `from`'s resources to `to` (after a
/// subscription ends).
fn send_unavailable(srv: &Server, from: &str, to: &str) {
    for h in srv.router.sessions(from) {
        if h.is_available() {
            let p = Element::bare("presence", ns::CLIENT)
                .with("type", "unavailable")
                .with("from", &h.full)
                .with("to", to);
            to_available(srv, to, &p);
        }
    }
}

/// A subscription-related presence from `user` (the session's bare JID)
/// to `contact` (RFC 6121 §3).
pub async fn outbound(srv: &Server, user: &str, contact: &str, ty: &str) {
    let contact_local = contact
        .split_once('@')
        .is_some_and(|(_, h)| srv.config.hosts.iter().any(|x| x == h));
    let contact_exists = contact_local && srv.user_exists(contact).await;
    match ty {
        "subscribe" => {
            update(srv, user, contact, true, |i| {
                if !has_to(i.subscription) {
                    i.ask = true;
                }
            })
            .await;
            if contact_exists {
                inbound_subscribe(srv, contact, user).await;
            } else {
                // §3.1.3: no such contact; answer for it.
                inbound_unsubscribed(srv, user, contact).await;
            }
        }
        "subscribed" => {
            let pending = srv
                .store
                .pending_in(user)
                .await
                .map(|p| p.iter().any(|c| c == contact))
                .unwrap_or(false);
            if !pending {
                // No request to approve; pre-approval is not offered.
                return;
            }
            let _ = srv.store.set_pending_in(user, contact, false).await;
            update(srv, user, contact, true, |i| {
                i.subscription = match i.subscription {
                    Subscription::None | Subscription::From => Subscription::From,
                    Subscription::To | Subscription::Both => Subscription::Both,
                };
            })
            .await;
            if contact_exists {
                inbound_subscribed(srv, contact, user).await;
                send_current_presence(srv, user, contact);
                pep::subscribed(srv, user, contact).await;
            }
        }
        "unsubscribe" => {
            update(srv, user, contact, false, |i| {
                i.ask = false;
                i.subscription = match i.subscription {
                    Subscription::To | Subscription::None => Subscription::None,
                    Subscription::Both | Subscription::From => Subscription::From,
                };
            })
            .await;
            if contact_exists {
                inbound_unsubscribe(srv, contact, user).await;
            }
        }
        "unsubscribed" => {
            let _ = srv.store.set_pending_in(user, contact, false).await;
            let before = update(srv, user, contact, false, |i| {
                i.subscription = match i.subscription {
                    Subscription::From | Subscription::None => Subscription::None,
                    Subscription::Both | Subscription::To => Subscription::To,
                };
            })
            .await;
            if contact_exists {
                inbound_unsubscribed(srv, contact, user).await;
                if before.is_some() {
                    send_unavailable(srv, user, contact);
                }
            }
        }
        _ => {}
    }
    srv.rosters.evict_if_offline(&srv.router, contact);
}

async fn inbound_subscribe(srv: &Server, contact: &str, user: &str) {
    let item = match srv.rosters.get(srv, contact).await {
        Some(r) => r.lock().await.items.get(user).cloned(),
        None => return,
    };
    if item.is_some_and(|i| has_from(i.subscription)) {
        // Already approved: answer on the contact's behalf (§3.1.3).
        inbound_subscribed(srv, user, contact).await;
        send_current_presence(srv, contact, user);
        pep::subscribed(srv, contact, user).await;
        return;
    }
    if let Err(e) = srv.store.set_pending_in(contact, user, true).await {
        tracing::error!(error = %e, "storing a subscription request failed");
    }
    to_available(
        srv,
        contact,
        &subscription_presence("subscribe", user, contact),
    );
}

async fn inbound_subscribed(srv: &Server, user: &str, contact: &str) {
    let mut changed = false;
    update(srv, user, contact, false, |i| {
        if i.ask {
            changed = true;
            i.ask = false;
            i.subscription = match i.subscription {
                Subscription::None | Subscription::To => Subscription::To,
                Subscription::From | Subscription::Both => Subscription::Both,
            };
        }
    })
    .await;
    if changed {
        to_available(
            srv,
            user,
            &subscription_presence("subscribed", contact, user),
        );
    }
}

async fn inbound_unsubscribe(srv: &Server, contact: &str, user: &str) {
    let _ = srv.store.set_pending_in(contact, user, false).await;
    let before = update(srv, contact, user, false, |i| {
        i.subscription = match i.subscription {
            Subscription::From | Subscription::None => Subscription::None,
            Subscription::Both | Subscription::To => Subscription::To,
        };
    })
    .await;
    if before.is_some() {
        to_available(
            srv,
            contact,
            &subscription_presence("unsubscribe", user, contact),
        );
        send_unavailable(srv, contact, user);
    }
}

async fn inbound_unsubscribed(srv: &Server, user: &str, contact: &str) {
    let before = update(srv, user, contact, false, |i| {
        i.ask = false;
        i.subscription = match i.subscription {
            Subscription::To | Subscription::None => Subscription::None,
            Subscription::Both | Subscription::From => Subscription::From,
        };
    })
    .await;
    if before.is_some() {
        to_available(
            srv,
            user,
            &subscription_presence("unsubscribed", contact, user),
        );
    }
}

fn handle_iq<'a>(
    srv: &'a Server,
    s: &'a Session,
    owner: &'a str,
    iq: Element,
) -> HandlerFuture<'a> {
    Box::pin(async move {
        if owner != s.bare() {
            s.send(&stanza::error_reply(&iq, "forbidden", None));
            return;
        }
        let Some(q) = stanza::iq_payload(&iq).filter(|q| q.name() == "query") else {
            s.send(&stanza::error_reply(&iq, "bad-request", None));
            return;
        };
        if s.anonymous {
            // Guests have no roster to keep.
            if iq.attr("type") == Some("get") {
                let mut r = stanza::iq_result(&iq);
                r.append_child(Element::bare("query", ns::ROSTER));
                s.send(&r);
            } else {
                s.send(&stanza::error_reply(&iq, "not-allowed", None));
            }
            return;
        }
        match iq.attr("type") {
            Some("get") => get(srv, s, &iq, q).await,
            Some("set") => set(srv, s, &iq, q).await,
            _ => s.send(&stanza::error_reply(&iq, "bad-request", None)),
        }
    })
}

async fn get(srv: &Server, s: &Session, iq: &Element, q: &Element) {
    if let Ok(mut st) = s.handle.state.lock() {
        st.interested = true;
    }
    let Some(shared) = srv.rosters.get(srv, s.bare()).await else {
        s.send(&stanza::error_reply(iq, "internal-server-error", None));
        return;
    };
    let r = shared.lock().await;
    let ver = r.ver.to_string();
    let mut reply = stanza::iq_result(iq);
    // §2.6.3: an up-to-date client gets an empty result, then pushes.
    if q.attr("ver") != Some(ver.as_str()) {
        let mut query = Element::bare("query", ns::ROSTER).with("ver", &ver);
        for i in r.items.values() {
            query.append_child(item_element(i));
        }
        reply.append_child(query);
    }
    s.send(&reply);
}

async fn set(srv: &Server, s: &Session, iq: &Element, q: &Element) {
    let items: Vec<&Element> = q.children().filter(|c| c.is("item", ns::ROSTER)).collect();
    let [item] = items.as_slice() else {
        s.send(&stanza::error_reply(
            iq,
            "bad-request",
            Some("exactly one item is allowed"),
        ));
        return;
    };
    let Some(contact) = item
        .attr("jid")
        .and_then(|j| jid::Jid::new(j).ok())
        .map(|j| j.as_str().to_owned())
    else {
        s.send(&stanza::error_reply(iq, "jid-malformed", None));
        return;
    };
    if contact == s.bare() {
        s.send(&stanza::error_reply(iq, "not-allowed", None));
        return;
    }
    if item.attr("subscription") == Some("remove") {
        remove(srv, s, iq, &contact).await;
        return;
    }
    let mut groups: Vec<String> = Vec::new();
    for g in item.children().filter(|c| c.is("group", ns::ROSTER)) {
        let t = g.text();
        if t.is_empty() {
            s.send(&stanza::error_reply(
                iq,
                "not-acceptable",
                Some("empty group name"),
            ));
            return;
        }
        if groups.contains(&t) {
            s.send(&stanza::error_reply(
                iq,
                "bad-request",
                Some("duplicate group"),
            ));
            return;
        }
        groups.push(t);
    }
    let name = item
        .attr("name")
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    update(srv, s.bare(), &contact, true, |i| {
        i.name = name;
        i.groups = groups;
    })
    .await;
    s.send(&stanza::iq_result(iq));
}

async fn remove(srv: &Server, s: &Session, iq: &Element, contact: &str) {
    let Some(shared) = srv.rosters.get(srv, s.bare()).await else {
        s.send(&stanza::error_reply(iq, "internal-server-error", None));
        return;
    };
    let Some(item) = shared.lock().await.items.get(contact).cloned() else {
        s.send(&stanza::error_reply(iq, "item-not-found", None));
        return;
    };
    // §2.5.2: cancel both directions before the item goes.
    if has_to(item.subscription) || item.ask {
        outbound(srv, s.bare(), contact, "unsubscribe").await;
    }
    if has_from(item.subscription) {
        outbound(srv, s.bare(), contact, "unsubscribed").await;
    }
    let _ = srv.store.set_pending_in(s.bare(), contact, false).await;
    match srv.store.remove_item(s.bare(), contact).await {
        Ok(ver) => {
            let mut r = shared.lock().await;
            r.items.remove(contact);
            r.ver = ver;
            drop(r);
            let gone = Element::bare("item", ns::ROSTER)
                .with("jid", contact)
                .with("subscription", "remove");
            push(srv, s.bare(), ver, gone);
            s.send(&stanza::iq_result(iq));
        }
        Err(e) => {
            tracing::error!(error = %e, "roster remove failed");
            s.send(&stanza::error_reply(iq, "internal-server-error", None));
        }
    }
}
