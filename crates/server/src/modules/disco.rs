//! XEP-0030 service discovery and the XEP-0115 caps hash. The feature
//! lists come from the module registry, never from a list kept here.

use aws_lc_rs::digest;
use base64::Engine;
use minidom::Element;
use xmpp_core::ns;
use xmpp_core::stanza::{self, ElementExt};

use crate::config::Config;
use crate::hub::{CAPS_NODE, HandlerFuture, IqRoute, Module, Server, Service, Session, Target};
use crate::modules::adhoc;

pub const MODULE: Module = Module {
    name: "disco",
    features: &[],
    account_features: &[],
    account_identities: &[],
    iq: &[
        IqRoute {
            target: Target::Server,
            ns: ns::DISCO_INFO,
            handler: server_info,
        },
        IqRoute {
            target: Target::Server,
            ns: ns::DISCO_ITEMS,
            handler: items,
        },
        IqRoute {
            target: Target::Account,
            ns: ns::DISCO_INFO,
            handler: account_info,
        },
        IqRoute {
            target: Target::Account,
            ns: ns::DISCO_ITEMS,
            handler: items,
        },
    ],
    enabled: super::always,
};

/// XEP-0115 §5.1 verification string for these identities (category,
/// type, name; no xml:lang), features and extended forms (§5.4:
/// FORM_TYPE, then fields by var, values sorted). Identities are sorted by
/// category, then type, then xml:lang, then name, each written
/// `category/type/lang/name<`.
pub fn caps_ver(
    identities: &[(String, String, String)],
    features: &[&str],
    forms: &[Element],
) -> String {
    let mut ids: Vec<&(String, String, String)> = identities.iter().collect();
    // (category, type, lang, name) with every lang empty: tuple order is
    // the order §5.1 asks for.
    ids.sort();
    let mut s = String::new();
    for (category, kind, name) in ids {
        s.push_str(&format!("{category}/{kind}//{name}<"));
    }
    let mut f: Vec<&str> = features.to_vec();
    f.sort_unstable();
    for x in f {
        s.push_str(x);
        s.push('<');
    }
    for form in forms {
        let values = |field: &Element| -> Vec<String> {
            let mut v: Vec<String> = field
                .children()
                .filter(|c| c.is("value", ns::DATA_FORMS))
                .map(Element::text)
                .collect();
            v.sort();
            v
        };
        let fields: Vec<&Element> = form
            .children()
            .filter(|c| c.is("field", ns::DATA_FORMS))
            .collect();
        if let Some(ft) = fields.iter().find(|f| f.attr("var") == Some("FORM_TYPE")) {
            for v in values(ft) {
                s.push_str(&v);
                s.push('<');
            }
        }
        let mut rest: Vec<&&Element> = fields
            .iter()
            .filter(|f| f.attr("var") != Some("FORM_TYPE"))
            .collect();
        rest.sort_by_key(|f| f.attr("var").unwrap_or("").to_owned());
        for f in rest {
            s.push_str(f.attr("var").unwrap_or(""));
            s.push('<');
            for v in values(f) {
                s.push_str(&v);
                s.push('<');
            }
        }
    }
    let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(d.as_ref())
}

/// An identity: category, type and name.
type Identity<'a> = (&'a str, &'a str, Option<&'a str>);

fn info_query(node: Option<&str>, identities: &[Identity<'_>], features: &[&str]) -> Element {
    let mut q = Element::bare("query", ns::DISCO_INFO);
    if let Some(n) = node {
        q.set("node", n);
    }
    for (category, kind, name) in identities {
        let mut id = Element::bare("identity", ns::DISCO_INFO)
            .with("category", category)
            .with("type", kind);
        if let Some(n) = name {
            id.set("name", n);
        }
        q.append_child(id);
    }
    for f in features {
        q.append_child(Element::bare("feature", ns::DISCO_INFO).with("var", f));
    }
    q
}

/// The host's own disco#info (and that of its caps node): the server's
/// identity, those its services add, its features and retention form.
fn server_info<'a>(
    srv: &'a Server,
    s: &'a Session,
    host: &'a str,
    iq: Element,
) -> HandlerFuture<'a> {
    Box::pin(async move {
        if iq.attr("type") != Some("get") {
            s.send(&stanza::error_reply(&iq, "bad-request", None));
            return;
        }
        let info = srv.host_info(host);
        let node = stanza::iq_payload(&iq).and_then(|p| p.attr("node"));
        if let Some(n) = node
            && n != format!("{CAPS_NODE}#{}", info.caps_ver)
        {
            let reply = match adhoc::info(srv, s, n) {
                Some(Ok(q)) => {
                    let mut r = stanza::iq_result(&iq);
                    r.append_child(q);
                    r
                }
                Some(Err(cond)) => stanza::error_reply(&iq, cond, None),
                None => stanza::error_reply(&iq, "item-not-found", None),
            };
            s.send(&reply);
            return;
        }
        let mut reply = stanza::iq_result(&iq);
        let identities: Vec<Identity<'_>> = info
            .identities
            .iter()
            .map(|(c, t, n)| (c.as_str(), t.as_str(), Some(n.as_str())))
            .collect();
        let mut q = info_query(node, &identities, srv.server_features());
        // XEP-0128: how long data is kept (also part of the caps hash).
        q.append_child(super::retention::disco_form(&srv.config));
        reply.append_child(q);
        s.send(&reply);
    })
}

fn account_info<'a>(
    srv: &'a Server,
    s: &'a Session,
    owner: &'a str,
    iq: Element,
) -> HandlerFuture<'a> {
    Box::pin(async move {
        if iq.attr("type") != Some("get") {
            s.send(&stanza::error_reply(&iq, "bad-request", None));
            return;
        }
        if !srv.user_exists(owner).await {
            s.send(&stanza::error_reply(&iq, "service-unavailable", None));
            return;
        }
        let guest = owner
            .split_once('@')
            .is_some_and(|(_, h)| srv.config.is_guest_host(h));
        let kind = if guest { "anonymous" } else { "registered" };
        let mut identities = vec![("account", kind, None)];
        identities.extend(srv.account_identities().iter().map(|(c, t)| (*c, *t, None)));
        let mut reply = stanza::iq_result(&iq);
        reply.append_child(info_query(None, &identities, srv.account_features()));
        s.send(&reply);
    })
}

/// The host's services are its items, and its ad-hoc commands those of the
/// commands node; an account has none.
fn items<'a>(
    srv: &'a Server,
    s: &'a Session,
    addressed: &'a str,
    iq: Element,
) -> HandlerFuture<'a> {
    Box::pin(async move {
        let host = !addressed.contains('@');
        match stanza::iq_payload(&iq).and_then(|p| p.attr("node")) {
            None => {}
            Some(ns::COMMANDS) if host => {
                return s.answer_get(&iq, || Some(adhoc::items(srv, s, addressed)));
            }
            Some(_) => {
                s.send(&stanza::error_reply(&iq, "item-not-found", None));
                return;
            }
        }
        s.answer_get(&iq, || {
            let mut q = Element::bare("query", ns::DISCO_ITEMS);
            if host {
                for d in srv.services_of(addressed) {
                    q.append_child(Element::bare("item", ns::DISCO_ITEMS).with("jid", &d));
                }
            }
            Some(q)
        });
    })
}

pub fn is_info_get(iq: &Element) -> bool {
    iq.name() == "iq"
        && iq.attr("type") == Some("get")
        && stanza::iq_payload(iq)
            .is_some_and(|p| p.is("query", ns::DISCO_INFO) && p.attr("node").is_none())
}

/// disco#info of a service's bare domain, from its declaration.
pub fn service_info(config: &Config, s: &Session, svc: &Service, iq: &Element) {
    let (category, kind, name) = svc.identity;
    let mut features: Vec<&str> = vec![ns::DISCO_INFO, ns::DISCO_ITEMS];
    features.extend_from_slice(svc.features);
    features.sort_unstable();
    features.dedup();
    let mut query = info_query(None, &[(category, kind, Some(name))], &features);
    if let Some(form) = (svc.info_form)(config) {
        query.append_child(form);
    }
    let mut reply = stanza::iq_result(iq);
    reply.append_child(query);
    s.send(&reply);
}

#[cfg(test)]
mod tests {
    fn ids(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        list.iter()
            .map(|(c, t, n)| (c.to_string(), t.to_string(), n.to_string()))
            .collect()
    }

    #[test]
    fn caps_ver_is_order_independent_and_stable() {
        let one = ids(&[("server", "im", "Conclave")]);
        let a = super::caps_ver(
            &one,
            &["urn:xmpp:ping", "http://jabber.org/protocol/disco#info"],
            &[],
        );
        let b = super::caps_ver(
            &one,
            &["http://jabber.org/protocol/disco#info", "urn:xmpp:ping"],
            &[],
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 28);
    }

    /// XEP-0115 §5.2's worked example.
    #[test]
    fn caps_ver_matches_the_spec_example() {
        let v = super::caps_ver(
            &ids(&[("client", "pc", "Exodus 0.9.1")]),
            &[
                "http://jabber.org/protocol/caps",
                "http://jabber.org/protocol/disco#info",
                "http://jabber.org/protocol/disco#items",
                "http://jabber.org/protocol/muc",
            ],
            &[],
        );
        assert_eq!(v, "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }

    /// Several identities are hashed sorted by category, then type (§5.1
    /// step 2), whatever order they were declared in: the expected value
    /// is SHA-1 over `component/generic//focus.localhost<component/
    /// lobbyrooms//lobby.localhost<conference/text//Chatrooms<server/im//
    /// Conclave<` and the sorted features, computed outside this code.
    #[test]
    fn caps_ver_hashes_every_identity_in_order() {
        let declared = ids(&[
            ("server", "im", "Conclave"),
            ("component", "lobbyrooms", "lobby.localhost"),
            ("conference", "text", "Chatrooms"),
            ("component", "generic", "focus.localhost"),
        ]);
        let features = ["urn:xmpp:ping", "http://jabber.org/protocol/disco#info"];
        let v = super::caps_ver(&declared, &features, &[]);
        assert_eq!(v, "mCNK01docX7Y+N4HjSZ09J5LFiA=");
        let mut reversed = declared.clone();
        reversed.reverse();
        assert_eq!(super::caps_ver(&reversed, &features, &[]), v);
        let server_only = super::caps_ver(&declared[..1], &features, &[]);
        assert_ne!(server_only, v, "the lobby identity changes the hash");
    }
}
