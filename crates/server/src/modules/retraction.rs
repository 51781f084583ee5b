//! XEP-0424 message retraction and XEP-0425 moderation in the archives:
//! a retracted message is replaced by a tombstone in every archive that
//! holds it, and so is every message of its XEP-0308 correction chain, so
//! that neither the original text nor any correction of it survives a
//! "delete" (in the archives, the search index or a room's history).
//!
//! A chain is found through the ids stored beside each archived row
//! (`MessageRefs`): the message a retraction names, the message it
//! corrects, and every correction of either, transitively (XEP-0308 1.2
//! corrections name the original; older clients name the previous
//! correction). Only messages by the retraction's author are taken.

use std::collections::HashSet;

use minidom::Element;
use xmpp_core::framing::parse_element;
use xmpp_core::stanza::{self, ElementExt};
use xmpp_core::{ns, time};

use conclave_store::MessageRefs;

use crate::hub::{Module, Server};

pub const MODULE: Module = Module {
    name: "retraction",
    features: &[],
    account_features: &[ns::RETRACT, ns::RETRACT_TOMBSTONE],
    account_identities: &[],
    iq: &[],
    enabled: |c| c.archive.enabled,
};

/// The most archived rows one retraction tombstones in one archive: a
/// correction chain is a handful of messages, and ids a client reused
/// (XEP-0424 §8.1) may add a few more.
const CHAIN_MAX: usize = 64;

/// The ids by which later messages name `el`.
pub fn refs_of(el: &Element) -> MessageRefs {
    let nonempty = |s: &&str| !s.is_empty();
    let id = el.attr("id").filter(nonempty);
    let origin = el
        .get_child("origin-id", ns::SID)
        .and_then(|o| o.attr("id"))
        .filter(nonempty);
    MessageRefs {
        ref_id: origin.or(id).map(str::to_owned),
        alt_ref: match (origin, id) {
            (Some(o), Some(i)) if o != i => Some(i.to_owned()),
            _ => None,
        },
        replaces: el
            .get_child("replace", ns::CORRECT)
            .and_then(|r| r.attr("id"))
            .filter(nonempty)
            .map(str::to_owned),
    }
}

/// What an archive keeps of a retracted message (XEP-0424 §5, XEP-0425):
/// who sent it to whom and when, what a client needs to place it (its
/// ids, the message it corrected, the author's occupant-id) and
/// `retracted`; never its content.
pub fn tombstone(orig: &Element, retracted: Element) -> Element {
    let mut tomb = Element::bare("message", ns::CLIENT);
    for a in ["from", "to", "id", "type"] {
        if let Some(v) = orig.attr(a) {
            tomb.set(a, v);
        }
    }
    tomb.append_child(retracted);
    for c in orig.children().filter(|c| {
        c.is("origin-id", ns::SID)
            || c.is("stanza-id", ns::SID)
            || c.is("occupant-id", ns::OCCUPANT_ID)
            || c.is("replace", ns::CORRECT)
    }) {
        tomb.append_child(c.clone());
    }
    tomb
}

/// The `<retracted/>` of a tombstone. Its `id` is the retraction
/// message's own `id` (XEP-0424 0.4.2 §5), so that a client can match the
/// tombstone to the retraction, which is archived too.
pub fn retracted(retraction_id: Option<&str>) -> Element {
    let mut r =
        Element::bare("retracted", ns::RETRACT).with("stamp", &time::datetime(time::now_unix()));
    if let Some(id) = retraction_id.filter(|i| !i.is_empty()) {
        r.set("id", id);
    }
    r
}

/// The bare form of a JID attribute, compared as routing compares.
fn bare_of(el: &Element, attr: &str) -> Option<String> {
    el.attr(attr)
        .and_then(|j| jid::Jid::new(j).ok())
        .map(|j| j.to_bare().as_str().to_owned())
}

/// XEP-0424 in one-to-one chats: `sender` (a bare JID) retracts, with the
/// message whose `id` is `retraction_id`, the message it sent to
/// `recipient` (a bare JID) under `name`, and with it that message's
/// correction chain. Both archives keep tombstones instead, and copies
/// still queued for an offline recipient are dropped; a message someone
/// else sent, or sent to someone else, stays as it is (§6: same bare JID
/// for both).
pub async fn retract_chat(
    srv: &Server,
    sender: &str,
    recipient: &str,
    name: &str,
    retraction_id: Option<&str>,
) {
    let authored = |m: &Element| {
        bare_of(m, "from").as_deref() == Some(sender)
            && bare_of(m, "to").as_deref() == Some(recipient)
    };
    if srv.config.archive.enabled {
        srv.archiver.sync(&srv.store).await;
        for owner in [sender, recipient] {
            let chain = chain(srv, owner, Vec::new(), name, &authored).await;
            bury_all(srv, owner, chain, retraction_id).await;
        }
    }
    drop_offline(srv, recipient, name, &authored).await;
}

/// The chain's copies still waiting in `owner`'s offline queue are
/// deleted: the recipient never saw them, and the retraction itself (also
/// queued) tells its client all there is to know.
async fn drop_offline(
    srv: &Server,
    owner: &str,
    name: &str,
    authored: &(dyn Fn(&Element) -> bool + Sync),
) {
    let queued = match srv.store.list(owner).await {
        Ok(q) if !q.is_empty() => q,
        Ok(_) => return,
        Err(e) => {
            tracing::error!(error = %e, "offline lookup failed");
            return;
        }
    };
    let mut candidates: Vec<(i64, MessageRefs)> = queued
        .iter()
        .filter_map(|m| {
            let el = parse_element(m.stanza.as_bytes(), usize::MAX).ok()?;
            (authored(&el) && !el.has_child("retract", ns::RETRACT)).then(|| (m.id, refs_of(&el)))
        })
        .collect();
    let mut names: HashSet<String> = HashSet::from([name.to_owned()]);
    let mut gone = Vec::new();
    // To a fixed point: a message joins when any of its ids, or the id it
    // corrects, is already in the chain.
    loop {
        let before = gone.len();
        candidates.retain(|(id, r)| {
            let ids = [&r.ref_id, &r.alt_ref, &r.replaces];
            if !ids
                .iter()
                .any(|i| i.as_ref().is_some_and(|i| names.contains(i)))
            {
                return true;
            }
            names.extend(ids.into_iter().flatten().cloned());
            gone.push(*id);
            false
        });
        if gone.len() == before {
            break;
        }
    }
    if let Err(e) = srv.store.remove_offline(owner, &gone).await {
        tracing::error!(error = %e, "removing retracted offline messages failed");
    }
}

/// A retraction in a room: the message with the room's stanza-id `id`
/// and its correction chain, each by the author `occupant_id` (XEP-0421:
/// the author is known by it, whatever the room's anonymity). `retracted`
/// makes each tombstone's `<retracted/>` (an occupant's retraction or a
/// moderator's). Returns the stanza-ids tombstoned, for the room to drop
/// from history; `Err` when the named message is not in the archive or
/// the store failed.
pub async fn retract_in_room(
    srv: &Server,
    room: &str,
    id: &str,
    occupant_id: Option<&str>,
    retracted: &(dyn Fn() -> Element + Sync),
) -> Result<Vec<String>, RoomRetractError> {
    let named = match super::mam::archived(srv, room, id).await {
        Ok(Some(m)) => m,
        Ok(None) => return Err(RoomRetractError::NotFound),
        Err(()) => return Err(RoomRetractError::Store),
    };
    let author_of = |m: &Element| {
        m.get_child("occupant-id", ns::OCCUPANT_ID)
            .and_then(|o| o.attr("id"))
            .map(str::to_owned)
    };
    // A moderator names any message: its author is whoever wrote it.
    let author = match occupant_id {
        Some(o) => Some(o.to_owned()),
        None => author_of(&named),
    };
    let Some(author) = author else {
        // No occupant-id: no chain can be told apart from other
        // occupants' messages, so the named message goes alone.
        return Ok(bury_each(srv, room, vec![(id.to_owned(), named)], retracted).await);
    };
    let authored = |m: &Element| author_of(m).as_deref() == Some(author.as_str());
    if !authored(&named) {
        return Ok(Vec::new());
    }
    let chain = chain(srv, room, vec![(id.to_owned(), named)], "", &authored).await;
    Ok(bury_each(srv, room, chain, retracted).await)
}

/// A chain walk's state: the rows taken and the names still to ask for.
#[derive(Default)]
struct Found {
    taken: HashSet<String>,
    rows: Vec<(String, Element)>,
    names: Vec<String>,
}

impl Found {
    fn take(&mut self, id: String, m: Element) {
        if !self.taken.insert(id.clone()) {
            return;
        }
        let r = refs_of(&m);
        self.names
            .extend([r.ref_id, r.alt_ref, r.replaces].into_iter().flatten());
        self.rows.push((id, m));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomRetractError {
    NotFound,
    Store,
}

/// The rows of `owner`'s archive in the correction chain of `seeds` and
/// of the message(s) named `name` (either may be empty), by `authored`
/// only, already-tombstoned rows left out: (stanza-id, message).
async fn chain(
    srv: &Server,
    owner: &str,
    seeds: Vec<(String, Element)>,
    name: &str,
    authored: &(dyn Fn(&Element) -> bool + Sync),
) -> Vec<(String, Element)> {
    let mut found = Found::default();
    for (id, m) in seeds {
        found.take(id, m);
    }
    if !name.is_empty() {
        found.names.push(name.to_owned());
    }
    let mut asked: HashSet<String> = HashSet::new();
    while let Some(n) = found.names.pop() {
        if asked.len() >= CHAIN_MAX || found.taken.len() >= CHAIN_MAX {
            break;
        }
        if !asked.insert(n.clone()) {
            continue;
        }
        let rows = match srv.store.archived_by_ref(owner, &n, CHAIN_MAX).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "archive lookup failed");
                break;
            }
        };
        for row in rows {
            let Ok(m) = parse_element(row.stanza.as_bytes(), usize::MAX) else {
                continue;
            };
            if authored(&m) {
                found.take(row.id, m);
            }
        }
    }
    let mut out = found.rows;
    out.retain(|(_, m)| !m.has_child("retracted", ns::RETRACT));
    out
}

async fn bury_all(
    srv: &Server,
    owner: &str,
    rows: Vec<(String, Element)>,
    retraction_id: Option<&str>,
) {
    bury_each(srv, owner, rows, &|| retracted(retraction_id)).await;
}

/// Tombstones each row; returns the ids written.
async fn bury_each(
    srv: &Server,
    owner: &str,
    rows: Vec<(String, Element)>,
    retracted: &(dyn Fn() -> Element + Sync),
) -> Vec<String> {
    let mut done = Vec::with_capacity(rows.len());
    for (id, orig) in rows {
        if orig.has_child("retracted", ns::RETRACT) {
            continue;
        }
        if bury(srv, owner, &id, &orig, retracted()).await {
            done.push(id);
        }
    }
    done
}

/// Replaces archived message `id` (parsed as `orig`) with its tombstone;
/// false when the store failed (logged).
pub async fn bury(srv: &Server, owner: &str, id: &str, orig: &Element, retracted: Element) -> bool {
    let xml = stanza::to_bytes(&tombstone(orig, retracted));
    match srv
        .store
        .replace_archived(owner, id, &String::from_utf8_lossy(&xml))
        .await
    {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %e, "writing a tombstone failed");
            false
        }
    }
}

/// Gives rows archived before their refs were kept (see
/// `Archive::rows_without_refs`) the refs their stanzas say, a batch at a
/// time, so that their chains can be retracted too. Run once at start.
pub async fn backfill_refs(store: &dyn conclave_store::Store) -> Result<u64, String> {
    const BATCH: usize = 1000;
    let mut done = 0u64;
    loop {
        let rows = store
            .rows_without_refs(BATCH)
            .await
            .map_err(|e| e.to_string())?;
        if rows.is_empty() {
            return Ok(done);
        }
        let refs: Vec<(i64, MessageRefs)> = rows
            .into_iter()
            .map(|(seq, xml)| {
                let refs = parse_element(xml.as_bytes(), usize::MAX)
                    .map(|m| refs_of(&m))
                    .unwrap_or_default();
                (seq, refs)
            })
            .collect();
        done += refs.len() as u64;
        store.set_refs(&refs).await.map_err(|e| e.to_string())?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        parse_element(xml.as_bytes(), 65536).unwrap()
    }

    #[test]
    fn refs_name_a_message_by_id_and_origin_id() {
        let r = refs_of(&el(
            "<message xmlns='jabber:client' id='m1'><origin-id xmlns='urn:xmpp:sid:0' id='o1'/><replace xmlns='urn:xmpp:message-correct:0' id='m0'/></message>",
        ));
        assert_eq!(r.ref_id.as_deref(), Some("o1"));
        assert_eq!(r.alt_ref.as_deref(), Some("m1"));
        assert_eq!(r.replaces.as_deref(), Some("m0"));
        let r = refs_of(&el(
            "<message xmlns='jabber:client' id='m1'><origin-id xmlns='urn:xmpp:sid:0' id='m1'/></message>",
        ));
        assert_eq!(
            r,
            MessageRefs {
                ref_id: Some("m1".into()),
                ..Default::default()
            }
        );
        assert_eq!(
            refs_of(&el("<message xmlns='jabber:client' id=''/>")),
            MessageRefs::default()
        );
    }

    #[test]
    fn a_tombstone_keeps_what_places_it_and_nothing_else() {
        let orig = el(
            "<message xmlns='jabber:client' from='a@x/r' to='b@x' id='c1' type='chat'><body>secret fix</body><replace xmlns='urn:xmpp:message-correct:0' id='m1'/><origin-id xmlns='urn:xmpp:sid:0' id='c1'/><stanza-id xmlns='urn:xmpp:sid:0' by='b@x' id='s1'/><reactions xmlns='urn:xmpp:reactions:0' id='m1'/></message>",
        );
        let t = tombstone(&orig, retracted(Some("r1")));
        let xml = String::from_utf8(stanza::to_bytes(&t).to_vec()).unwrap();
        assert!(!xml.contains("secret"), "{xml}");
        assert!(!xml.contains("reactions"), "{xml}");
        assert_eq!(
            t.get_child("replace", ns::CORRECT)
                .and_then(|r| r.attr("id")),
            Some("m1")
        );
        let r = t.get_child("retracted", ns::RETRACT).unwrap();
        assert_eq!(r.attr("id"), Some("r1"));
        assert!(r.attr("stamp").is_some());
        assert!(t.has_child("origin-id", ns::SID) && t.has_child("stanza-id", ns::SID));
        assert_eq!(t.attr("id"), Some("c1"));
    }
}
