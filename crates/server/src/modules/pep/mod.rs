//! XEP-0163 Personal Eventing Protocol: every account's bare JID is a
//! XEP-0060 pubsub service for its owner's nodes (OMEMO keys, avatars,
//! vCard4, XEP-0402 bookmarks, XEP-0223 private data).
//!
//! The owner publishes (nodes are created on first publish, with
//! publish-options as preconditions), retracts, configures and deletes;
//! whoever the node's access model admits reads. Nobody subscribes
//! explicitly: a notification goes to every available resource, of the
//! owner and of the contacts who may read the node, whose client asked for
//! `<node>+notify` in its XEP-0115 caps, serialised once for all of them.
//! A resource becoming available (or a contact newly subscribed) gets the
//! last published item of each node it wants.
//!
//! The rules (configuration, access, preconditions, request and answer
//! shapes) are the sans-IO [`node`] core; this file reads and writes the
//! store and routes.

pub mod bookmarks;
pub mod node;

use std::sync::Arc;

use minidom::Element;
use xmpp_core::framing::parse_element;
use xmpp_core::stanza;
use xmpp_core::{ns, time};

use conclave_store::{PubsubItem, PubsubNode, StoreError};

use crate::hub::{HandlerFuture, IqRoute, Module, Server, Session, Target};
use crate::modules::roster;
use crate::router::SessionHandle;
use node::{
    AccessModel, BAD_REQUEST, Error, Event, FORBIDDEN, INTERNAL, NOT_FOUND, NodeConfig, OVER_QUOTA,
    OwnerRequest, PRECONDITION, Reader, Request, SendLast, TOO_BIG, TOO_MANY_NODES,
};

macro_rules! pubsub_features {
    ($($f:literal),* $(,)?) => {
        &[$(concat!("http://jabber.org/protocol/pubsub#", $f)),*]
    };
}

pub const MODULE: Module = Module {
    name: "pep",
    features: &[],
    account_features: pubsub_features!(
        "access-open",
        "access-presence",
        "access-whitelist",
        "auto-create",
        "auto-subscribe",
        "config-node",
        "create-and-configure",
        "create-nodes",
        "delete-items",
        "delete-nodes",
        "filtered-notifications",
        "item-ids",
        "last-published",
        "persistent-items",
        "presence-notifications",
        "publish",
        "publish-options",
        "purge-nodes",
        "retract-items",
        "retrieve-default",
        "retrieve-items",
    ),
    account_identities: &[("pubsub", "pep")],
    iq: &[
        IqRoute {
            target: Target::Account,
            ns: ns::PUBSUB,
            handler: handle,
        },
        IqRoute {
            target: Target::Account,
            ns: ns::PUBSUB_OWNER,
            handler: handle,
        },
    ],
    enabled: super::always,
};

const STRIPES: usize = 64;

/// Writes to one owner's nodes happen one at a time, so that a
/// precondition checked is still true when the item is written. Owners
/// share a fixed set of locks by hash, so there is nothing to clean up.
pub struct Pep {
    locks: [tokio::sync::Mutex<()>; STRIPES],
}

impl Default for Pep {
    fn default() -> Self {
        Pep {
            locks: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
        }
    }
}

impl Pep {
    async fn lock(&self, owner: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        owner.hash(&mut h);
        self.locks[(h.finish() as usize) % STRIPES].lock().await
    }
}

/// What a request did: the answer's payload, and the notification to send
/// once the requester has its answer.
#[derive(Default)]
struct Outcome {
    reply: Option<Element>,
    notify: Option<(NodeConfig, String, Event)>,
}

impl Outcome {
    fn reply(el: Element) -> Outcome {
        Outcome {
            reply: Some(el),
            notify: None,
        }
    }
}

async fn answer(srv: &Server, s: &Session, owner: &str, iq: &Element, r: Result<Outcome, Error>) {
    match r {
        Ok(o) => {
            let mut reply = stanza::iq_result(iq);
            if let Some(p) = o.reply {
                reply.append_child(p);
            }
            s.send(&reply);
            if let Some((cfg, node, event)) = o.notify {
                notify(srv, owner, &node, &cfg, event).await;
            }
        }
        Err(e) => s.send(&e.reply(iq)),
    }
}

/// Both namespaces: `pubsub` (publish, retract, items, create) and
/// `pubsub#owner` (configure, default, delete, purge).
fn handle<'a>(srv: &'a Server, s: &'a Session, owner: &'a str, iq: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        let ty = iq.attr("type").unwrap_or("");
        let Some(p) = stanza::iq_payload(&iq).filter(|p| p.name() == "pubsub") else {
            return s.send(&BAD_REQUEST.reply(&iq));
        };
        let avatar = p
            .children()
            .any(|c| c.attr("node") == Some(super::avatar::METADATA));
        let r = if p.ns() == ns::PUBSUB_OWNER {
            match node::parse_owner_request(ty, p) {
                Err(e) => Err(e),
                Ok(_) if owner != s.bare() => Err(FORBIDDEN),
                Ok(req) => owner_request(srv, owner, req).await,
            }
        } else {
            match node::parse_request(ty, p) {
                Err(e) => Err(e),
                Ok(Request::Publish {
                    node,
                    id,
                    payload,
                    options,
                }) => publish(srv, s, owner, node, id, payload, &options).await,
                Ok(Request::Retract { node, id, notify }) => {
                    retract(srv, s, owner, node, id, notify).await
                }
                Ok(Request::Items { node, ids, max }) => {
                    items(srv, s, owner, node, &ids, max).await
                }
                Ok(Request::Create { node, config }) => create(srv, s, owner, node, &config).await,
            }
        };
        if avatar {
            srv.avatars.forget(owner);
        }
        answer(srv, s, owner, &iq, r).await;
    })
}

fn limit(srv: &Server) -> usize {
    srv.config.pep.max_items
}

fn is_guest(srv: &Server, bare: &str) -> bool {
    bare.split_once('@')
        .is_some_and(|(_, h)| srv.config.is_guest_host(h))
}

/// Only the owner writes, and guests keep nothing.
fn writable(s: &Session, owner: &str) -> Result<(), Error> {
    if owner != s.bare() {
        return Err(FORBIDDEN);
    }
    if s.anonymous {
        return Err(Error::new("not-allowed", None));
    }
    Ok(())
}

fn store_error(e: StoreError) -> Error {
    match e {
        StoreError::Quota => TOO_MANY_NODES,
        StoreError::Conflict => Error::new("conflict", None),
        StoreError::NotFound => NOT_FOUND,
        e => {
            tracing::error!(error = %e, "pep store failed");
            INTERNAL
        }
    }
}

async fn load(srv: &Server, owner: &str, node: &str) -> Result<Option<NodeConfig>, Error> {
    let n = srv.store.node(owner, node).await.map_err(store_error)?;
    Ok(n.map(|n| NodeConfig::from_pairs(&n.config, limit(srv))))
}

fn stored(node: &str, cfg: &NodeConfig) -> PubsubNode {
    PubsubNode {
        node: node.to_owned(),
        config: cfg.to_pairs(),
    }
}

/// Refuses an item that would take the owner's items past `pep.quota_bytes`
/// (counting the item it replaces as gone).
async fn within_quota(
    srv: &Server,
    owner: &str,
    node: &str,
    item: &PubsubItem,
) -> Result<(), Error> {
    let used = srv
        .store
        .pubsub_bytes(owner, (node, &item.id))
        .await
        .map_err(store_error)?;
    if used.saturating_add(item.payload.len() as u64) > srv.config.pep.quota_bytes {
        return Err(OVER_QUOTA);
    }
    Ok(())
}

fn serialise(payload: &Element, max: usize) -> Result<String, Error> {
    let xml = stanza::to_bytes(payload);
    if xml.len() > max {
        return Err(TOO_BIG);
    }
    Ok(String::from_utf8_lossy(&xml).into_owned())
}

async fn publish(
    srv: &Server,
    s: &Session,
    owner: &str,
    node: &str,
    id: Option<&str>,
    payload: &Element,
    options: &[(String, Vec<String>)],
) -> Result<Outcome, Error> {
    writable(s, owner)?;
    let xml = serialise(payload, srv.config.pep.max_item_bytes)?;
    let id = id
        .map(str::to_owned)
        .unwrap_or_else(crate::session::random_id);
    let _g = srv.pep.lock(owner).await;
    let existing = load(srv, owner, node).await?;
    let cfg = NodeConfig::preconditions(existing.as_ref(), options, limit(srv))
        .map_err(|_| PRECONDITION)?;
    let create = existing.is_none().then(|| stored(node, &cfg));
    let max_nodes = srv.config.pep.max_nodes;
    let written = if cfg.persist {
        let item = PubsubItem {
            id: id.clone(),
            publisher: s.full().to_owned(),
            stamp: time::now_unix(),
            payload: xml,
        };
        within_quota(srv, owner, node, &item).await?;
        let keep = cfg.max_items.effective(limit(srv));
        srv.store
            .publish_item(owner, node, create.as_ref(), &item, keep, max_nodes)
            .await
    } else if let Some(c) = &create {
        srv.store.create_node(owner, c, max_nodes).await
    } else {
        Ok(())
    };
    written.map_err(store_error)?;
    Ok(Outcome {
        reply: Some(node::publish_result(node, &id)),
        notify: Some((
            cfg,
            node.to_owned(),
            Event::Items(vec![(id, payload.clone(), None)]),
        )),
    })
}

async fn retract(
    srv: &Server,
    s: &Session,
    owner: &str,
    node: &str,
    id: &str,
    notify: Option<bool>,
) -> Result<Outcome, Error> {
    writable(s, owner)?;
    let _g = srv.pep.lock(owner).await;
    let cfg = load(srv, owner, node).await?.ok_or(NOT_FOUND)?;
    if !srv
        .store
        .retract_item(owner, node, id)
        .await
        .map_err(store_error)?
    {
        return Err(NOT_FOUND);
    }
    let notify = notify
        .unwrap_or(cfg.notify_retract)
        .then(|| (cfg, node.to_owned(), Event::Retract(id.to_owned())));
    Ok(Outcome {
        reply: None,
        notify,
    })
}

async fn items(
    srv: &Server,
    s: &Session,
    owner: &str,
    node: &str,
    ids: &[String],
    max: Option<usize>,
) -> Result<Outcome, Error> {
    let cfg = load(srv, owner, node).await?.ok_or(NOT_FOUND)?;
    node::may_read(cfg.access, reader(srv, owner, s.bare()).await)?;
    // Asked-for ids that do not exist are simply not in the answer
    // (XEP-0060 §6.5.9.12: an empty <items/> if none does).
    let list = published(srv, owner, node, ids, max.unwrap_or(usize::MAX)).await?;
    let items = list
        .iter()
        .map(|i| node::item(ns::PUBSUB, &i.id, parse_payload(i)))
        .collect();
    Ok(Outcome::reply(node::items_result(node, items)))
}

/// The `max` newest items (or those with `ids`), in publication order,
/// oldest first, as XEP-0060 §13.1's model and Prosody give them.
async fn published(
    srv: &Server,
    owner: &str,
    node: &str,
    ids: &[String],
    max: usize,
) -> Result<Vec<PubsubItem>, Error> {
    let mut list = srv
        .store
        .items(owner, node, ids, max)
        .await
        .map_err(store_error)?;
    list.reverse();
    Ok(list)
}

fn parse_payload(i: &PubsubItem) -> Option<Element> {
    match parse_element(i.payload.as_bytes(), usize::MAX) {
        Ok(el) => Some(el),
        Err(e) => {
            tracing::error!(error = ?e, "stored pep item does not parse");
            None
        }
    }
}

async fn create(
    srv: &Server,
    s: &Session,
    owner: &str,
    node: &str,
    config: &[(String, Vec<String>)],
) -> Result<Outcome, Error> {
    writable(s, owner)?;
    let cfg = NodeConfig::default()
        .configure(config, limit(srv))
        .map_err(|_| Error::new("not-acceptable", None))?;
    let _g = srv.pep.lock(owner).await;
    srv.store
        .create_node(owner, &stored(node, &cfg), srv.config.pep.max_nodes)
        .await
        .map_err(store_error)?;
    Ok(Outcome::default())
}

async fn owner_request(srv: &Server, owner: &str, req: OwnerRequest<'_>) -> Result<Outcome, Error> {
    let limit = limit(srv);
    match req {
        OwnerRequest::Default => Ok(Outcome::reply(node::config_result(
            "default",
            None,
            NodeConfig::default().form(limit),
        ))),
        OwnerRequest::GetConfig { node } => {
            let cfg = load(srv, owner, node).await?.ok_or(NOT_FOUND)?;
            Ok(Outcome::reply(node::config_result(
                "configure",
                Some(node),
                cfg.form(limit),
            )))
        }
        OwnerRequest::SetConfig { node, fields } => {
            let _g = srv.pep.lock(owner).await;
            let cfg = load(srv, owner, node).await?.ok_or(NOT_FOUND)?;
            let Some(fields) = fields else {
                return Ok(Outcome::default());
            };
            let new = cfg
                .configure(&fields, limit)
                .map_err(|_| Error::new("not-acceptable", None))?;
            // A node that no longer persists keeps no items.
            let keep = if new.persist {
                new.max_items.effective(limit)
            } else {
                0
            };
            srv.store
                .configure_node(owner, &stored(node, &new), keep)
                .await
                .map_err(store_error)?;
            Ok(Outcome::default())
        }
        OwnerRequest::Delete { node } | OwnerRequest::Purge { node } => {
            let delete = matches!(req, OwnerRequest::Delete { .. });
            let _g = srv.pep.lock(owner).await;
            let cfg = load(srv, owner, node).await?.ok_or(NOT_FOUND)?;
            let (done, event) = if delete {
                (
                    srv.store.delete_node(owner, node).await.map(drop),
                    Event::Delete,
                )
            } else {
                (srv.store.purge_node(owner, node).await, Event::Purge)
            };
            done.map_err(store_error)?;
            Ok(Outcome {
                reply: None,
                notify: Some((cfg, node.to_owned(), event)),
            })
        }
    }
}

/// The owner's own publication on the server's initiative (XEP-0398's
/// conversions), as if from the owner's session `s`: the node is created
/// with `access` if it does not exist yet, and notifications go out.
pub(crate) async fn publish_for_owner(
    srv: &Server,
    s: &Session,
    node: &str,
    id: &str,
    payload: &Element,
    access: AccessModel,
) -> Result<(), Error> {
    let owner = s.bare();
    let options = match load(srv, owner, node).await? {
        Some(_) => Vec::new(),
        None => vec![(
            "pubsub#access_model".to_owned(),
            vec![access.as_str().to_owned()],
        )],
    };
    let o = publish(srv, s, owner, node, Some(id), payload, &options).await?;
    if let Some((cfg, node, event)) = o.notify {
        notify(srv, owner, &node, &cfg, event).await;
    }
    Ok(())
}

/// The last item of `owner`'s `node` (or item `id`) as `who` may see it:
/// `None` if there is no such node, `Some(Err)` if `who` may not read it.
pub(crate) async fn item_for(
    srv: &Server,
    owner: &str,
    node: &str,
    id: Option<&str>,
    who: Option<&str>,
) -> Option<Result<Option<(String, Element)>, ()>> {
    let cfg = load(srv, owner, node).await.ok()??;
    let allowed = match who {
        Some(w) => node::may_read(cfg.access, reader(srv, owner, w).await).is_ok(),
        // Anyone with presence: what an open or presence node may show.
        None => cfg.access != AccessModel::Whitelist,
    };
    if !allowed {
        return Some(Err(()));
    }
    let ids: Vec<String> = id.map(str::to_owned).into_iter().collect();
    let item = published(srv, owner, node, &ids, 1).await.ok()?.pop();
    Some(Ok(item.and_then(|i| parse_payload(&i).map(|p| (i.id, p)))))
}

/// How `who` stands with the owner's nodes.
async fn reader(srv: &Server, owner: &str, who: &str) -> Reader {
    if owner == who {
        Reader::Owner
    } else if roster::has_from(roster::subscription(srv, owner, who).await) {
        Reader::Subscriber
    } else {
        Reader::Other
    }
}

fn wants(h: &SessionHandle, node: &str) -> bool {
    h.state
        .lock()
        .map(|st| st.available && st.caps.as_ref().is_some_and(|c| c.notify(node)))
        .unwrap_or(false)
}

/// Every available resource that asked for the node's notifications: the
/// owner's, and those of contacts the access model lets read it.
async fn recipients(
    srv: &Server,
    owner: &str,
    node: &str,
    cfg: &NodeConfig,
) -> Vec<Arc<SessionHandle>> {
    let mut bares = vec![owner.to_owned()];
    if cfg.access != AccessModel::Whitelist && !is_guest(srv, owner) {
        bares.extend(roster::contacts(srv, owner, roster::has_from).await);
    }
    bares
        .iter()
        .flat_map(|b| srv.router.sessions(b))
        .filter(|h| wants(h, node))
        .collect()
}

async fn notify(srv: &Server, owner: &str, node: &str, cfg: &NodeConfig, event: Event) {
    let targets = recipients(srv, owner, node, cfg).await;
    srv.deliver_addressed(&targets, &node::notification(owner, node, event));
}

/// A resource now wants notifications from `nodes` (it became available,
/// or its caps changed): it gets the last published item of each such
/// node, its own account's and its contacts', that it may read.
pub async fn interest(srv: &Server, h: &Arc<SessionHandle>, nodes: &[String]) {
    if nodes.is_empty() {
        return;
    }
    let mut owners = vec![h.bare.clone()];
    if !is_guest(srv, &h.bare) {
        owners.extend(roster::contacts(srv, &h.bare, roster::has_to).await);
    }
    for owner in owners {
        send_last(srv, h, &owner, nodes, true).await;
    }
}

/// The owner approved `contact`'s presence subscription: the contact's
/// resources get the last items they want of nodes sent "on subscription".
pub async fn subscribed(srv: &Server, owner: &str, contact: &str) {
    for h in srv.router.sessions(contact) {
        let nodes: Vec<String> = h
            .state
            .lock()
            .ok()
            .filter(|st| st.available)
            .and_then(|st| st.caps.clone())
            .map(|c| c.notify_nodes().map(str::to_owned).collect())
            .unwrap_or_default();
        if !nodes.is_empty() {
            send_last(srv, &h, owner, &nodes, false).await;
        }
    }
}

/// Sends `h` the last item of each of `owner`'s nodes in `nodes` that it
/// may read and whose `send_last_published_item` covers the occasion.
async fn send_last(
    srv: &Server,
    h: &SessionHandle,
    owner: &str,
    nodes: &[String],
    on_presence: bool,
) {
    let list = match srv.store.nodes(owner).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "pep nodes read failed");
            return;
        }
    };
    let mut who: Option<Reader> = None;
    for (n, item) in list {
        let Some(item) = item else { continue };
        if !nodes.contains(&n.node) {
            continue;
        }
        let cfg = NodeConfig::from_pairs(&n.config, limit(srv));
        let due = match cfg.send_last {
            SendLast::Never => false,
            SendLast::OnSub => !on_presence,
            SendLast::OnSubAndPresence => true,
        };
        if !due {
            continue;
        }
        let r = match who {
            Some(r) => r,
            None => *who.insert(reader(srv, owner, &h.bare).await),
        };
        if node::may_read(cfg.access, r).is_err() {
            continue;
        }
        let Some(payload) = parse_payload(&item) else {
            continue;
        };
        let msg = node::notification(
            owner,
            &n.node,
            Event::Items(vec![(item.id, payload, Some(item.stamp))]),
        );
        h.send_addressed(stanza::to_bytes(&msg));
    }
}

/// XEP-0402 bookmarks as XEP-0048's `<storage/>`, for XEP-0049 clients.
pub async fn legacy_bookmarks(srv: &Server, owner: &str) -> Result<Element, Error> {
    let list = published(srv, owner, ns::BOOKMARKS, &[], usize::MAX).await?;
    let marks: Vec<bookmarks::Bookmark> = list
        .iter()
        .filter_map(|i| {
            let p = parse_payload(i)?;
            p.is("conference", ns::BOOKMARKS)
                .then(|| bookmarks::from_item(&i.id, &p))
        })
        .collect();
    Ok(bookmarks::to_storage(&marks))
}

/// A XEP-0049 client stored XEP-0048 bookmarks: the XEP-0402 node is made
/// to hold the same rooms. Unchanged rooms are left alone (with their
/// extensions); changed and new ones are published, missing ones
/// retracted, each notified as a XEP-0402 client would have.
pub async fn set_legacy_bookmarks(
    srv: &Server,
    s: &Session,
    storage: &Element,
) -> Result<(), Error> {
    let owner = s.bare();
    writable(s, owner)?;
    let wanted = bookmarks::from_storage(storage);
    let max_bytes = srv.config.pep.max_item_bytes;
    let payloads_ok = wanted
        .iter()
        .all(|b| serialise(&bookmarks::to_payload(b, None), max_bytes).is_ok());
    if !payloads_ok {
        return Err(TOO_BIG);
    }
    let limit = limit(srv);
    let mut events = Vec::new();
    let cfg = {
        let _g = srv.pep.lock(owner).await;
        let existing = load(srv, owner, ns::BOOKMARKS).await?;
        let cfg = existing.unwrap_or_else(bookmarks::node_config);
        let mut create = existing.is_none().then(|| stored(ns::BOOKMARKS, &cfg));
        let current: Vec<(String, Option<Element>)> = srv
            .store
            .items(owner, ns::BOOKMARKS, &[], usize::MAX)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|i| {
                let p = parse_payload(&i);
                (i.id, p)
            })
            .collect();
        for b in &wanted {
            let old = current
                .iter()
                .find(|(id, _)| *id == b.jid)
                .and_then(|(_, p)| p.as_ref());
            if old.is_some_and(|p| bookmarks::from_item(&b.jid, p) == *b) {
                continue;
            }
            let payload = bookmarks::to_payload(b, old);
            let item = PubsubItem {
                id: b.jid.clone(),
                publisher: s.full().to_owned(),
                stamp: time::now_unix(),
                payload: serialise(&payload, max_bytes)?,
            };
            within_quota(srv, owner, ns::BOOKMARKS, &item).await?;
            srv.store
                .publish_item(
                    owner,
                    ns::BOOKMARKS,
                    create.take().as_ref(),
                    &item,
                    cfg.max_items.effective(limit),
                    srv.config.pep.max_nodes,
                )
                .await
                .map_err(store_error)?;
            events.push(Event::Items(vec![(b.jid.clone(), payload, None)]));
        }
        for (id, _) in &current {
            if wanted.iter().any(|b| &b.jid == id) {
                continue;
            }
            srv.store
                .retract_item(owner, ns::BOOKMARKS, id)
                .await
                .map_err(store_error)?;
            if cfg.notify_retract {
                events.push(Event::Retract(id.clone()));
            }
        }
        cfg
    };
    for e in events {
        notify(srv, owner, ns::BOOKMARKS, &cfg, e).await;
    }
    Ok(())
}
