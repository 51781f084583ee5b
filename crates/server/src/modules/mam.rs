//! XEP-0313 Message Archive Management (v2) for accounts and rooms, with
//! stanza ids (XEP-0359), RSM paging (XEP-0059), archiving preferences and
//! full-text search through the `{urn:xmpp:fulltext:0}fulltext` field
//! (XEP-0431).
//!
//! Archiving never delays delivery: a message gets its stanza-id in
//! memory and the row goes to a background writer that commits in batches.
//! A query first waits for that writer, so a user always finds what was
//! archived before the query. End-to-end encrypted messages are archived
//! as the ciphertext they are and are not indexed for search.

use std::sync::{Arc, Mutex, OnceLock};

use minidom::Element;
use tokio::sync::{mpsc, oneshot};
use xmpp_core::framing::parse_element;
use xmpp_core::stanza::{self, ElementExt};
use xmpp_core::{ns, time};

use conclave_store::{ArchiveQuery, ArchiveRow, Store, StoreError};

use crate::hub::{HandlerFuture, IqRoute, Module, Server, Session, Target};

pub const MODULE: Module = Module {
    name: "mam",
    features: &[ns::SID],
    account_features: &[ns::MAM, ns::MAM_EXTENDED, ns::SID, ns::FULLTEXT],
    account_identities: &[],
    iq: &[IqRoute {
        target: Target::Account,
        ns: ns::MAM,
        handler: handle,
    }],
    enabled: |c| c.archive.enabled,
};

enum Cmd {
    Put(ArchiveRow),
    Sync(oneshot::Sender<()>),
}

/// The background archive writer and the preferences cache.
#[derive(Default)]
pub struct Archiver {
    tx: OnceLock<mpsc::UnboundedSender<Cmd>>,
    prefs: Mutex<crate::FastMap<String, Arc<Prefs>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefs {
    pub default: String,
    pub always: Vec<String>,
    pub never: Vec<String>,
}

const BATCH: usize = 512;

impl Archiver {
    fn sender(&self, store: &Arc<dyn Store>) -> &mpsc::UnboundedSender<Cmd> {
        self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(write_batches(store.clone(), rx));
            tx
        })
    }

    fn put(&self, store: &Arc<dyn Store>, row: ArchiveRow) {
        let _ = self.sender(store).send(Cmd::Put(row));
    }

    /// Waits until everything archived so far is committed.
    pub async fn sync(&self, store: &Arc<dyn Store>) {
        let (tx, rx) = oneshot::channel();
        if self.sender(store).send(Cmd::Sync(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn write_batches(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let mut rows = Vec::with_capacity(BATCH);
    let mut waiters = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Cmd::Put(r) => rows.push(r),
                Cmd::Sync(w) => waiters.push(w),
            }
            if rows.len() >= BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = store.archive(&rows).await {
            tracing::error!(error = %e, rows = rows.len(), "archiving failed");
        }
        rows.clear();
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

pub fn new_id() -> String {
    // A thread-local ChaCha generator (seeded from the OS): ids must be
    // unique and unguessable, and one is made per archived copy, so a
    // call into the system CSPRNG each time is too dear on the hot path.
    let b: [u8; 12] = rand::random();
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b)
}

/// What is worth archiving (XEP-0313 §5.1.1 leaves it to the server):
/// chats and normal messages with content a person reads or acts on.
pub fn archivable(el: &Element) -> bool {
    let ty = el.attr("type").unwrap_or("normal");
    if !matches!(ty, "chat" | "normal" | "groupchat") {
        return false;
    }
    if el.has_child("no-store", ns::HINTS) || el.has_child("no-permanent-store", ns::HINTS) {
        return false;
    }
    el.has_child("body", ns::CLIENT) || conversation_payload(el)
}

/// Whether a message without a body still carries something of the
/// conversation: an encrypted message, a reaction, a retraction or a
/// correction. The archive keeps these and carbons copy them, so every
/// device sees the same conversation live as later from the archive.
pub fn conversation_payload(el: &Element) -> bool {
    el.children().any(|c| {
        c.ns() == ns::OMEMO_LEGACY
            || c.ns() == ns::OMEMO
            || c.ns() == "urn:xmpp:reactions:0"
            || c.ns() == "urn:xmpp:message-retract:1"
            || c.ns() == ns::CORRECT
    })
}

/// The searchable text: the body, unless the message is end-to-end
/// encrypted (its body is then only a fallback notice).
fn searchable(el: &Element) -> Option<String> {
    let encrypted = el
        .children()
        .any(|c| c.ns() == ns::OMEMO_LEGACY || c.ns() == ns::OMEMO);
    if encrypted {
        return None;
    }
    el.get_child("body", ns::CLIENT).map(Element::text)
}

/// Replaces any stanza-id a sender claimed for `by` with ours (XEP-0359
/// §3.1: an entity must not trust a stanza-id it did not set).
pub fn stamp_id(el: &mut Element, by: &str) -> String {
    let id = new_id();
    let claimed = |c: &Element| c.is("stanza-id", ns::SID) && c.attr("by") == Some(by);
    // Rare (only a forged or relayed id): rebuild the children only then.
    if el.children().any(claimed) {
        for node in el.take_nodes() {
            if !node.as_element().is_some_and(claimed) {
                el.append_node(node);
            }
        }
    }
    el.append_child(
        Element::bare("stanza-id", ns::SID)
            .with("by", by)
            .with("id", &id),
    );
    id
}

async fn prefs_of(srv: &Server, owner: &str) -> Arc<Prefs> {
    if let Some(p) = srv
        .archiver
        .prefs
        .lock()
        .ok()
        .and_then(|m| m.get(owner).cloned())
    {
        return p;
    }
    let p = match srv.store.archive_prefs(owner).await {
        Ok(Some((default, always, never))) => Prefs {
            default,
            always,
            never,
        },
        _ => Prefs {
            default: srv.config.archive.default.clone(),
            always: Vec::new(),
            never: Vec::new(),
        },
    };
    let p = Arc::new(p);
    if let Ok(mut m) = srv.archiver.prefs.lock() {
        // Bounded: a cache, not a copy of the table.
        if m.len() > 10_000 {
            m.clear();
        }
        m.insert(owner.to_owned(), p.clone());
    }
    p
}

async fn wants(srv: &Server, owner: &str, with_bare: &str) -> bool {
    let p = prefs_of(srv, owner).await;
    if p.never.iter().any(|j| j == with_bare) {
        return false;
    }
    if p.always.iter().any(|j| j == with_bare) {
        return true;
    }
    match p.default.as_str() {
        "always" => true,
        "roster" => super::roster::contacts(srv, owner, |_| true)
            .await
            .iter()
            .any(|c| c == with_bare),
        _ => false,
    }
}

/// Archives a one-to-one message for its sender and its local recipient,
/// and stamps the recipient's stanza-id on the copy about to be delivered.
///
/// Returns the stanza as serialised for the archive, which is also what is
/// delivered: the caller sends these bytes rather than serialising again.
pub async fn archive_chat(
    srv: &Server,
    sender: &str,
    recipient_bare: &str,
    el: &mut Element,
) -> Option<bytes::Bytes> {
    if !srv.config.archive.enabled || !archivable(el) || el.attr("type") == Some("groupchat") {
        return None;
    }
    let stamp = time::now_us();
    let text = searchable(el);
    let from = el.attr("from").unwrap_or(sender).to_owned();
    let to = el.attr("to").unwrap_or(recipient_bare).to_owned();
    let sender_bare = sender.split('/').next().unwrap_or(sender).to_owned();
    let wants_out = wants(srv, &sender_bare, recipient_bare).await;
    let wants_in = wants(srv, recipient_bare, &sender_bare).await;
    let recipient_id = wants_in.then(|| stamp_id(el, recipient_bare));
    if !wants_out && !wants_in {
        return None;
    }
    let refs = super::retraction::refs_of(el);
    let xml = stanza::to_string(el);
    let bytes = bytes::Bytes::copy_from_slice(xml.as_bytes());
    if wants_out {
        srv.archiver.put(
            &srv.store,
            ArchiveRow {
                owner: sender_bare.clone(),
                id: new_id(),
                with: to.clone(),
                stamp,
                stanza: xml.clone(),
                text: text.clone(),
                refs: refs.clone(),
            },
        );
    }
    if let Some(id) = recipient_id {
        srv.archiver.put(
            &srv.store,
            ArchiveRow {
                owner: recipient_bare.to_owned(),
                id,
                with: from,
                stamp,
                stanza: xml,
                text,
                refs,
            },
        );
    }
    Some(bytes)
}

/// Archives a room message (already stamped with `id`) in the room's archive.
pub fn archive_room(srv: &Server, room: &str, occupant: &str, el: &Element, id: String) {
    if !srv.config.archive.enabled || !archivable(el) {
        return;
    }
    srv.archiver.put(
        &srv.store,
        ArchiveRow {
            owner: room.to_owned(),
            id,
            with: occupant.to_owned(),
            stamp: time::now_us(),
            stanza: stanza::to_string(el),
            text: searchable(el),
            refs: super::retraction::refs_of(el),
        },
    );
}

/// The archived message `id` of `owner`'s archive, once everything sent
/// before is archived. `Err` when the store failed (logged).
pub async fn archived(srv: &Server, owner: &str, id: &str) -> Result<Option<Element>, ()> {
    srv.archiver.sync(&srv.store).await;
    let q = ArchiveQuery {
        ids: vec![id.to_owned()],
        max: 1,
        ..Default::default()
    };
    let row = match srv.store.query(owner, &q).await {
        Ok(p) => p.rows.into_iter().next(),
        Err(e) => {
            tracing::error!(error = %e, "archive lookup failed");
            return Err(());
        }
    };
    match row {
        None => Ok(None),
        Some(r) => parse_element(r.stanza.as_bytes(), usize::MAX)
            .map(Some)
            .map_err(|_| ()),
    }
}

fn handle<'a>(srv: &'a Server, s: &'a Session, owner: &'a str, iq: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        if owner != s.bare() {
            return s.send(&stanza::error_reply(&iq, "forbidden", None));
        }
        query(srv, s, owner, &iq).await;
    })
}

fn field(var: &str, ty: &str) -> Element {
    Element::bare("field", ns::DATA_FORMS)
        .with("var", var)
        .with("type", ty)
}

fn query_form() -> Element {
    let mut x = Element::bare("x", ns::DATA_FORMS).with("type", "form");
    let mut ft = field("FORM_TYPE", "hidden");
    ft.append_child(Element::bare("value", ns::DATA_FORMS).with_text(ns::MAM));
    x.append_child(ft);
    for (var, ty) in [
        ("with", "jid-single"),
        ("start", "text-single"),
        ("end", "text-single"),
        ("before-id", "text-single"),
        ("after-id", "text-single"),
        ("ids", "list-multi"),
        ("{urn:xmpp:fulltext:0}fulltext", "text-single"),
    ] {
        x.append_child(field(var, ty));
    }
    x
}

/// Parses the query form and RSM set. `Err` is the stanza error.
fn parse_query(q: &Element, max_page: usize) -> Result<ArchiveQuery, &'static str> {
    let mut a = ArchiveQuery {
        max: max_page,
        ..Default::default()
    };
    if let Some(x) = q.get_child("x", ns::DATA_FORMS) {
        for f in x.children().filter(|f| f.is("field", ns::DATA_FORMS)) {
            let values: Vec<String> = f
                .children()
                .filter(|v| v.is("value", ns::DATA_FORMS))
                .map(Element::text)
                .collect();
            let v = values.first().cloned().unwrap_or_default();
            match f.attr("var").unwrap_or("") {
                "FORM_TYPE" => {
                    if v != ns::MAM {
                        return Err("bad-request");
                    }
                }
                "with" => {
                    let j = jid::Jid::new(&v).map_err(|_| "jid-malformed")?;
                    a.with_bare = j.is_bare();
                    a.with = Some(j.as_str().to_owned());
                }
                "start" => a.start = Some(time::parse_datetime_us(&v).ok_or("bad-request")?),
                "end" => a.end = Some(time::parse_datetime_us(&v).ok_or("bad-request")?),
                "after-id" => a.after = Some(v),
                "before-id" => a.before = Some(v),
                "ids" => a.ids = values,
                "{urn:xmpp:fulltext:0}fulltext" => a.fulltext = (!v.trim().is_empty()).then_some(v),
                _ => return Err("feature-not-implemented"),
            }
        }
    }
    if let Some(set) = q.get_child("set", ns::RSM) {
        if let Some(m) = set.get_child("max", ns::RSM) {
            a.max = m
                .text()
                .trim()
                .parse::<usize>()
                .map_err(|_| "bad-request")?
                .min(max_page);
        }
        if let Some(after) = set.get_child("after", ns::RSM) {
            a.after = Some(after.text());
        }
        if let Some(before) = set.get_child("before", ns::RSM) {
            let t = before.text();
            if t.is_empty() {
                a.last_page = true;
            } else {
                a.before = Some(t);
            }
        }
        if set.has_child("index", ns::RSM) {
            return Err("feature-not-implemented");
        }
    }
    Ok(a)
}

/// Answers a MAM IQ on `archive` (an account or a room): the form, the
/// preferences, or a query whose results go to `s`. `from` is the JID the
/// results come from.
pub async fn query(srv: &Server, s: &Session, archive: &str, iq: &Element) {
    let Some(q) = stanza::iq_payload(iq) else {
        return s.send(&stanza::error_reply(iq, "bad-request", None));
    };
    let ty = iq.attr("type").unwrap_or("");
    match (q.name(), ty) {
        ("query", "get") => {
            let mut res = stanza::iq_result(iq);
            let mut qq = Element::bare("query", ns::MAM);
            qq.append_child(query_form());
            res.append_child(qq);
            s.send(&res);
        }
        ("query", "set") => run_query(srv, s, archive, iq, q).await,
        ("prefs", "get") if !archive.contains("@conference.") => {
            let p = prefs_of(srv, archive).await;
            let mut res = stanza::iq_result(iq);
            res.append_child(prefs_element(&p));
            s.send(&res);
        }
        ("prefs", "set") if !archive.contains("@conference.") => {
            let Some(default) = q
                .attr("default")
                .filter(|d| matches!(*d, "always" | "never" | "roster"))
            else {
                return s.send(&stanza::error_reply(iq, "bad-request", None));
            };
            let list = |name: &str| -> Vec<String> {
                q.get_child(name, ns::MAM)
                    .map(|l| {
                        l.children()
                            .filter(|j| j.is("jid", ns::MAM))
                            .filter_map(|j| {
                                jid::BareJid::new(&j.text())
                                    .ok()
                                    .map(|b| b.as_str().to_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let p = Prefs {
                default: default.to_owned(),
                always: list("always"),
                never: list("never"),
            };
            if let Err(e) = srv
                .store
                .set_archive_prefs(archive, &p.default, &p.always, &p.never)
                .await
            {
                tracing::error!(error = %e, "saving archive preferences failed");
                return s.send(&stanza::error_reply(iq, "internal-server-error", None));
            }
            let el = prefs_element(&p);
            if let Ok(mut m) = srv.archiver.prefs.lock() {
                m.insert(archive.to_owned(), Arc::new(p));
            }
            let mut res = stanza::iq_result(iq);
            res.append_child(el);
            s.send(&res);
        }
        _ => s.send(&stanza::error_reply(iq, "bad-request", None)),
    }
}

fn prefs_element(p: &Prefs) -> Element {
    let mut e = Element::bare("prefs", ns::MAM).with("default", &p.default);
    for (name, list) in [("always", &p.always), ("never", &p.never)] {
        let mut l = Element::bare(name, ns::MAM);
        for j in list {
            l.append_child(Element::bare("jid", ns::MAM).with_text(j));
        }
        e.append_child(l);
    }
    e
}

async fn run_query(srv: &Server, s: &Session, archive: &str, iq: &Element, q: &Element) {
    let aq = match parse_query(q, srv.config.archive.max_page) {
        Ok(a) => a,
        Err(c) => return s.send(&stanza::error_reply(iq, c, None)),
    };
    srv.archiver.sync(&srv.store).await;
    let page = match srv.store.query(archive, &aq).await {
        Ok(p) => p,
        Err(StoreError::NotFound) => {
            return s.send(&stanza::error_reply(iq, "item-not-found", None));
        }
        Err(e) => {
            tracing::error!(error = %e, "archive query failed");
            return s.send(&stanza::error_reply(iq, "internal-server-error", None));
        }
    };
    let queryid = q.attr("queryid");
    for row in &page.rows {
        let Ok(original) = xmpp_core::framing::parse_element(row.stanza.as_bytes(), usize::MAX)
        else {
            continue;
        };
        let mut fwd = Element::bare("forwarded", ns::FORWARD);
        fwd.append_child(
            Element::bare("delay", ns::DELAY).with("stamp", &time::datetime_us(row.stamp)),
        );
        fwd.append_child(original);
        let mut result = Element::bare("result", ns::MAM).with("id", &row.id);
        if let Some(qid) = queryid {
            result.set("queryid", qid);
        }
        result.append_child(fwd);
        let mut m = Element::bare("message", ns::CLIENT).with("from", archive);
        m.append_child(result);
        s.handle.send_addressed(stanza::to_bytes(&m));
    }
    let mut set = Element::bare("set", ns::RSM);
    if let (Some(first), Some(last)) = (page.rows.first(), page.rows.last()) {
        set.append_child(Element::bare("first", ns::RSM).with_text(&first.id));
        set.append_child(Element::bare("last", ns::RSM).with_text(&last.id));
    }
    set.append_child(Element::bare("count", ns::RSM).with_text(&page.count.to_string()));
    let mut fin = Element::bare("fin", ns::MAM);
    if page.complete {
        fin.set("complete", "true");
    }
    fin.append_child(set);
    let mut res = stanza::iq_result(iq);
    res.append_child(fin);
    s.send(&res);
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_core::framing::parse_element;

    fn el(x: &str) -> Element {
        parse_element(x.as_bytes(), 1 << 16).unwrap()
    }

    #[test]
    fn what_is_archived() {
        assert!(archivable(&el(
            "<message xmlns='jabber:client' type='chat'><body>x</body></message>"
        )));
        assert!(!archivable(&el(
            "<message xmlns='jabber:client' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        )));
        assert!(!archivable(&el(
            "<message xmlns='jabber:client' type='chat'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>"
        )));
        assert!(!archivable(&el(
            "<message xmlns='jabber:client' type='headline'><body>x</body></message>"
        )));
        let omemo = el(
            "<message xmlns='jabber:client' type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'/><body>I sent you an OMEMO message</body></message>",
        );
        assert!(archivable(&omemo));
        assert_eq!(searchable(&omemo), None, "E2EE messages are not indexed");
    }

    #[test]
    fn a_forged_stanza_id_is_replaced() {
        let mut m = el(
            "<message xmlns='jabber:client' type='chat'><body>x</body><stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged'/><stanza-id xmlns='urn:xmpp:sid:0' by='other@example' id='kept'/></message>",
        );
        let id = stamp_id(&mut m, "bob@localhost");
        let ids: Vec<(String, String)> = m
            .children()
            .filter(|c| c.is("stanza-id", ns::SID))
            .map(|c| {
                (
                    c.attr("by").unwrap().to_owned(),
                    c.attr("id").unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            ids,
            vec![
                ("other@example".into(), "kept".into()),
                ("bob@localhost".into(), id)
            ]
        );
        assert_eq!(m.get_child("body", ns::CLIENT).unwrap().text(), "x");
    }

    #[test]
    fn query_forms_and_rsm() {
        let q = el(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:2</value></field><field var='with'><value>bob@localhost</value></field><field var='start'><value>2026-01-01T00:00:00Z</value></field><field var='{urn:xmpp:fulltext:0}fulltext'><value>budget</value></field></x><set xmlns='http://jabber.org/protocol/rsm'><max>5000</max><before/></set></query>",
        );
        let a = parse_query(&q, 100).unwrap();
        assert_eq!(a.with.as_deref(), Some("bob@localhost"));
        assert!(a.with_bare && a.last_page);
        assert_eq!(a.max, 100, "capped by the setting");
        assert_eq!(a.fulltext.as_deref(), Some("budget"));
        let bad = el(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='start'><value>yesterday</value></field></x></query>",
        );
        assert_eq!(parse_query(&bad, 100).err(), Some("bad-request"));
        let unknown = el(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='nonsense'><value>1</value></field></x></query>",
        );
        assert_eq!(
            parse_query(&unknown, 100).err(),
            Some("feature-not-implemented")
        );
    }
}
