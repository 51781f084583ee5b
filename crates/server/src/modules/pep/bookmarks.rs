//! XEP-0402 bookmarks (one PEP item per room) and XEP-0048's single
//! `<storage xmlns='storage:bookmarks'/>` element, converted both ways
//! (XEP-0402's compatibility section, `#compat`). Sans-IO: elements in, elements out.

use minidom::Element;
use xmpp_core::ns;
use xmpp_core::stanza::ElementExt;

use super::node::{AccessModel, MaxItems, NodeConfig, SendLast};
use crate::modules::forms;

/// The node's configuration that XEP-0402 clients ask for in their
/// publish-options, so that a node the server creates satisfies them.
pub fn node_config() -> NodeConfig {
    NodeConfig {
        access: AccessModel::Whitelist,
        max_items: MaxItems::Max,
        persist: true,
        send_last: SendLast::Never,
        notify_retract: true,
    }
}

/// What both formats say about one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bookmark {
    pub jid: String,
    pub name: Option<String>,
    pub autojoin: bool,
    pub nick: Option<String>,
    pub password: Option<String>,
}

fn child_text(el: &Element, name: &str, namespace: &str) -> Option<String> {
    el.get_child(name, namespace).map(Element::text)
}

/// A XEP-0402 item (its id is the room's JID) as a bookmark.
pub fn from_item(id: &str, conference: &Element) -> Bookmark {
    Bookmark {
        jid: id.to_owned(),
        name: conference.attr("name").map(str::to_owned),
        autojoin: conference
            .attr("autojoin")
            .and_then(forms::parse_boolean)
            .unwrap_or(false),
        nick: child_text(conference, "nick", ns::BOOKMARKS),
        password: child_text(conference, "password", ns::BOOKMARKS),
    }
}

/// The bookmarks in a XEP-0048 `<storage/>`, in order: conferences with a
/// valid bare JID (a later one for the same room wins). URL bookmarks are
/// dropped, as XEP-0402 has none.
pub fn from_storage(storage: &Element) -> Vec<Bookmark> {
    let mut out: Vec<Bookmark> = Vec::new();
    for c in storage
        .children()
        .filter(|c| c.is("conference", ns::BOOKMARKS_LEGACY))
    {
        let Some(jid) = c
            .attr("jid")
            .and_then(|j| jid::BareJid::new(j).ok())
            .map(|j| j.to_string())
        else {
            continue;
        };
        let b = Bookmark {
            jid,
            name: c.attr("name").map(str::to_owned),
            autojoin: c
                .attr("autojoin")
                .and_then(forms::parse_boolean)
                .unwrap_or(false),
            nick: child_text(c, "nick", ns::BOOKMARKS_LEGACY),
            password: child_text(c, "password", ns::BOOKMARKS_LEGACY),
        };
        out.retain(|o| o.jid != b.jid);
        out.push(b);
    }
    out
}

fn conference(b: &Bookmark, namespace: &str) -> Element {
    let mut c = Element::bare("conference", namespace);
    if namespace == ns::BOOKMARKS_LEGACY {
        c.set("jid", &b.jid);
    }
    if let Some(n) = &b.name {
        c.set("name", n);
    }
    c.set("autojoin", if b.autojoin { "true" } else { "false" });
    if let Some(n) = &b.nick {
        c.append_child(Element::bare("nick", namespace).with_text(n));
    }
    if let Some(p) = &b.password {
        c.append_child(Element::bare("password", namespace).with_text(p));
    }
    c
}

/// XEP-0048's `<storage/>` holding these bookmarks.
pub fn to_storage(bookmarks: &[Bookmark]) -> Element {
    let mut s = Element::bare("storage", ns::BOOKMARKS_LEGACY);
    for b in bookmarks {
        s.append_child(conference(b, ns::BOOKMARKS_LEGACY));
    }
    s
}

/// The XEP-0402 payload for a bookmark, keeping the `<extensions/>` of
/// the item it replaces (XEP-0048 has no place for them).
pub fn to_payload(b: &Bookmark, replaced: Option<&Element>) -> Element {
    let mut c = conference(b, ns::BOOKMARKS);
    if let Some(ext) = replaced.and_then(|r| r.get_child("extensions", ns::BOOKMARKS)) {
        c.append_child(ext.clone());
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_storage_converts_both_ways() {
        let storage: Element = "<storage xmlns='storage:bookmarks'>\
              <conference jid='room@conference.localhost' name='Room' autojoin='1'><nick>al</nick></conference>\
              <conference jid='not a jid@@' name='bad'/>\
              <conference jid='other@conference.localhost'><password>pw</password></conference>\
              <url name='x' url='https://example.org'/>\
            </storage>"
            .parse()
            .unwrap();
        let list = from_storage(&storage);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].jid, "room@conference.localhost");
        assert!(list[0].autojoin);
        assert_eq!(list[0].nick.as_deref(), Some("al"));
        assert_eq!(list[1].password.as_deref(), Some("pw"));
        assert_eq!(from_storage(&to_storage(&list)), list);
        // Through a XEP-0402 item and back, extensions kept.
        let old: Element = "<conference xmlns='urn:xmpp:bookmarks:1'>\
              <extensions><state xmlns='urn:x' minimized='true'/></extensions></conference>"
            .parse()
            .unwrap();
        let payload = to_payload(&list[0], Some(&old));
        assert_eq!(from_item(&list[0].jid, &payload), list[0]);
        assert!(payload.has_child("extensions", ns::BOOKMARKS));
        assert_eq!(payload.attr("jid"), None);
    }
}
