//! XEP-0049 private XML storage: a user keeps any element of a namespace
//! of its own on the server, one per name and namespace. XEP-0048
//! bookmarks (`storage:bookmarks`) are not kept here but in the XEP-0402
//! PEP node, converted both ways, so clients of either kind see the same
//! rooms (XEP-0402's `#compat`).

use minidom::Element;
use xmpp_core::framing::parse_element;
use xmpp_core::ns;
use xmpp_core::stanza;

use conclave_store::StoreError;

use crate::hub::{HandlerFuture, IqRoute, Module, Server, Session, Target};
use crate::modules::pep;

pub const MODULE: Module = Module {
    name: "private",
    features: &[ns::PRIVATE, ns::BOOKMARKS_COMPAT],
    account_features: &[ns::BOOKMARKS_COMPAT],
    account_identities: &[],
    iq: &[IqRoute {
        target: Target::Account,
        ns: ns::PRIVATE,
        handler: handle,
    }],
    enabled: super::always,
};

/// XEP-0049 §3: namespaces that belong to the protocol itself.
fn reserved(namespace: &str) -> bool {
    namespace.is_empty()
        || namespace.starts_with("jabber:")
        || namespace.starts_with("http://jabber.org/")
        || namespace == ns::VCARD
}

fn key(el: &Element) -> String {
    format!("{} {}", el.name(), el.ns())
}

fn is_bookmarks(el: &Element) -> bool {
    el.is("storage", ns::BOOKMARKS_LEGACY)
}

fn handle<'a>(srv: &'a Server, s: &'a Session, owner: &'a str, iq: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        let fail = |condition: &str| s.send(&stanza::error_reply(&iq, condition, None));
        if owner != s.bare() {
            return fail("forbidden");
        }
        if s.anonymous {
            return fail("not-allowed");
        }
        let Some(q) = stanza::iq_payload(&iq).filter(|q| q.name() == "query") else {
            return fail("bad-request");
        };
        let children: Vec<&Element> = q.children().collect();
        if children.is_empty() {
            return fail("not-acceptable");
        }
        if children.iter().any(|c| reserved(&c.ns())) {
            return fail("not-acceptable");
        }
        match iq.attr("type") {
            Some("get") => {
                let [asked] = children.as_slice() else {
                    // §3: one namespace per get.
                    return fail("bad-request");
                };
                match get(srv, owner, asked).await {
                    Some(el) => {
                        let mut res = Element::bare("query", ns::PRIVATE);
                        res.append_child(el);
                        let mut reply = stanza::iq_result(&iq);
                        reply.append_child(res);
                        s.send(&reply);
                    }
                    None => fail("internal-server-error"),
                }
            }
            Some("set") => match set(srv, s, &children).await {
                Ok(()) => s.send(&stanza::iq_result(&iq)),
                Err(e) => s.send(&e.reply(&iq)),
            },
            _ => fail("bad-request"),
        }
    })
}

/// The stored element, or the asked one (empty) if none is stored.
async fn get(srv: &Server, owner: &str, asked: &Element) -> Option<Element> {
    if is_bookmarks(asked) {
        return pep::legacy_bookmarks(srv, owner).await.ok();
    }
    let empty = || Element::bare(asked.name(), asked.ns());
    match srv.store.private_xml(owner, &key(asked)).await {
        Ok(Some(xml)) => {
            Some(parse_element(xml.as_bytes(), usize::MAX).unwrap_or_else(|_| empty()))
        }
        Ok(None) => Some(empty()),
        Err(e) => {
            tracing::error!(error = %e, "private xml read failed");
            None
        }
    }
}

async fn set(srv: &Server, s: &Session, children: &[&Element]) -> Result<(), pep::node::Error> {
    use pep::node::Error;
    let max = srv.config.pep.max_item_bytes;
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut marks = None;
    for c in children {
        let xml = stanza::to_bytes(c);
        if xml.len() > max {
            return Err(Error::new("not-acceptable", None));
        }
        if is_bookmarks(c) {
            marks = Some(*c);
            continue;
        }
        entries.retain(|(k, _)| *k != key(c));
        entries.push((key(c), String::from_utf8_lossy(&xml).into_owned()));
    }
    if !entries.is_empty() {
        let max_entries = srv.config.pep.max_private_entries;
        match srv
            .store
            .set_private_xml(s.bare(), &entries, max_entries)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Quota) => return Err(Error::new("resource-constraint", None)),
            Err(e) => {
                tracing::error!(error = %e, "private xml write failed");
                return Err(Error::new("internal-server-error", None));
            }
        }
    }
    if let Some(m) = marks {
        pep::set_legacy_bookmarks(srv, s, m).await?;
    }
    Ok(())
}
