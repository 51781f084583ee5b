//! XEP-0398: one avatar whether a client speaks XEP-0084 (PEP) or
//! vcard-temp (XEP-0054, XEP-0153).
//!
//! PEP is the truth. A vCard set with a PHOTO publishes it to the avatar
//! data and metadata nodes (open, like the vCard, when they are new); a
//! vCard read shows the PEP avatar as PHOTO to whoever the nodes' access
//! model lets see it (and no PHOTO to others), so an avatar published for
//! contacts only never leaks through the world-readable vCard. Available
//! presence carries the avatar's hash (`vcard-temp:x:update`), from a
//! per-account cache that PEP requests touching the metadata node clear:
//! no database read per presence.

use std::sync::{Arc, Mutex};

use base64::Engine;
use minidom::Element;
use xmpp_core::ns;
use xmpp_core::stanza::ElementExt;

use crate::hub::{Module, Server, Session};
use crate::modules::pep;

pub const DATA: &str = "urn:xmpp:avatar:data";
pub const METADATA: &str = "urn:xmpp:avatar:metadata";
pub const CONVERSION: &str = "urn:xmpp:pep-vcard-conversion:0";
pub const UPDATE: &str = "vcard-temp:x:update";

pub const MODULE: Module = Module {
    name: "avatar",
    features: &[],
    account_features: &[CONVERSION],
    account_identities: &[],
    iq: &[],
    enabled: super::always,
};

/// Cached avatar hashes by bare JID: `None` inside means "no avatar (or
/// none to show in presence)".
#[derive(Default)]
pub struct Hashes {
    cache: Mutex<crate::FastMap<String, Option<Arc<str>>>>,
}

/// Bounded: a cache, not a copy of the table.
const CACHE_ENTRIES: usize = 100_000;

impl Hashes {
    pub fn forget(&self, owner: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(owner);
        }
    }

    async fn get(&self, srv: &Server, owner: &str) -> Option<Arc<str>> {
        if let Some(h) = self.cache.lock().ok().and_then(|c| c.get(owner).cloned()) {
            return h;
        }
        let hash = match pep::item_for(srv, owner, METADATA, None, None).await {
            Some(Ok(Some((_, meta)))) => {
                first_info(&meta).and_then(|i| i.attr("id")).map(Arc::from)
            }
            _ => None,
        };
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHE_ENTRIES {
                c.clear();
            }
            c.insert(owner.to_owned(), hash.clone());
        }
        hash
    }
}

/// The image stored in PEP itself (§3.1: not one that points to a URL).
fn first_info(meta: &Element) -> Option<&Element> {
    meta.children()
        .find(|c| c.is("info", METADATA) && c.attr("url").is_none())
}

/// XEP-0398 §4 in the account's available presence, broadcast or directed
/// (a room join too): the server's `<x><photo>hash</photo></x>` replaces
/// what the client put there, unless the client said "no avatar" with an
/// empty `<photo/>`.
pub async fn stamp_presence(srv: &Server, s: &Session, el: &mut Element) {
    if s.anonymous {
        return;
    }
    if let Some(x) = el.get_child("x", UPDATE)
        && x.get_child("photo", UPDATE)
            .is_some_and(|p| p.text().trim().is_empty())
    {
        return;
    }
    let Some(hash) = srv.avatars.get(srv, s.bare()).await else {
        return;
    };
    while el.remove_child("x", UPDATE).is_some() {}
    let mut photo = Element::bare("photo", UPDATE);
    photo.append_text(hash.to_string());
    let mut x = Element::bare("x", UPDATE);
    x.append_child(photo);
    el.append_child(x);
}

/// The vCard `owner` stored, as `who` should see it: the PHOTO is the PEP
/// avatar when there is one (none if `who` may not see it).
pub async fn vcard_for(srv: &Server, owner: &str, who: &str, mut card: Element) -> Element {
    let meta = match pep::item_for(srv, owner, METADATA, None, Some(who)).await {
        None => return card,
        Some(Err(())) => None,
        Some(Ok(item)) => item.map(|(_, m)| m),
    };
    let photo = match meta.as_ref().and_then(first_info) {
        Some(info) => photo_from(srv, owner, who, info).await,
        None => None,
    };
    while card.has_child("PHOTO", ns::VCARD) {
        card.remove_child("PHOTO", ns::VCARD);
    }
    if let Some(p) = photo {
        card.append_child(p);
    }
    card
}

async fn photo_from(srv: &Server, owner: &str, who: &str, info: &Element) -> Option<Element> {
    let id = info.attr("id")?;
    let Some(Ok(Some((_, data)))) = pep::item_for(srv, owner, DATA, Some(id), Some(who)).await
    else {
        return None;
    };
    let b64: String = data.text().split_whitespace().collect();
    // §3.1: the image is the one the metadata names.
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .ok()?;
    if sha1_hex(&bytes) != id {
        return None;
    }
    let mut photo = Element::bare("PHOTO", ns::VCARD);
    let mut ty = Element::bare("TYPE", ns::VCARD);
    ty.append_text(info.attr("type").unwrap_or("image/png").to_owned());
    let mut bin = Element::bare("BINVAL", ns::VCARD);
    bin.append_text(b64);
    photo.append_child(ty);
    photo.append_child(bin);
    Some(photo)
}

/// The owner set `card`: its PHOTO becomes the PEP avatar (data, then
/// metadata with the SHA-1 id). A vCard without PHOTO turns a PEP avatar
/// off (an empty metadata item, XEP-0084 §4.5). Nothing is published when
/// PEP already has this avatar. `Err` is the stanza error for the vCard
/// set (an undecodable or oversized PHOTO).
pub async fn from_vcard(srv: &Server, s: &Session, card: &Element) -> Result<(), &'static str> {
    let photo = card.get_child("PHOTO", ns::VCARD);
    let current = srv.avatars.get(srv, s.bare()).await;
    let Some(photo) = photo else {
        if current.is_some() {
            let empty = Element::bare("metadata", METADATA);
            publish(srv, s, METADATA, &crate::session::random_id(), empty).await?;
        }
        return Ok(());
    };
    let b64: String = photo
        .get_child("BINVAL", ns::VCARD)
        .map(|b| b.text().split_whitespace().collect())
        .unwrap_or_default();
    // An EXTVAL (a URL) has nothing to publish as data.
    if b64.is_empty() {
        return Ok(());
    }
    if b64.len() > srv.config.pep.max_item_bytes {
        return Err("not-acceptable");
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| "bad-request")?;
    let id = sha1_hex(&bytes);
    if current.as_deref() == Some(id.as_str()) {
        return Ok(());
    }
    let ty = photo
        .get_child("TYPE", ns::VCARD)
        .map(|t| t.text().trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "image/png".to_owned());
    let mut data = Element::bare("data", DATA);
    data.append_text(b64);
    publish(srv, s, DATA, &id, data).await?;
    let mut meta = Element::bare("metadata", METADATA);
    meta.append_child(
        Element::bare("info", METADATA)
            .with("id", &id)
            .with("bytes", &bytes.len().to_string())
            .with("type", &ty),
    );
    publish(srv, s, METADATA, &id, meta).await
}

async fn publish(
    srv: &Server,
    s: &Session,
    node: &str,
    id: &str,
    payload: Element,
) -> Result<(), &'static str> {
    let r = pep::publish_for_owner(srv, s, node, id, &payload, pep::node::AccessModel::Open).await;
    srv.avatars.forget(s.bare());
    r.map_err(|e| {
        tracing::warn!(node, condition = e.condition, "avatar conversion refused");
        e.condition
    })
}

/// XEP-0084's item id for an image.
fn sha1_hex(image: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, image);
    d.as_ref().iter().map(|x| format!("{x:02x}")).collect()
}
