//! XEP-0115 entity capabilities of clients: what a session's client can do,
//! learnt from the `<c/>` in its presence. The server asks the client for
//! the disco#info behind a verification string it does not know, and
//! remembers the answer (bounded) for every session announcing the same
//! string, once the hash checks out; an answer that does not verify serves
//! only the session that gave it. What PEP notifications a session wants
//! (`<node>+notify`) is read from here.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;
use base64::Engine;
use minidom::Element;
use xmpp_core::ns;
use xmpp_core::stanza::ElementExt;

use crate::hub::{Server, Session};
use crate::modules::{forms, pep};
use crate::requests;
use crate::router::SessionHandle;

/// A client's disco#info features, sorted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClientCaps {
    features: Vec<String>,
}

impl ClientCaps {
    pub fn from_query(q: &Element) -> ClientCaps {
        let mut features: Vec<String> = q
            .children()
            .filter(|f| f.is("feature", ns::DISCO_INFO))
            .filter_map(|f| f.attr("var").map(str::to_owned))
            .collect();
        features.sort_unstable();
        features.dedup();
        ClientCaps { features }
    }

    pub fn has(&self, feature: &str) -> bool {
        self.features
            .binary_search_by(|f| f.as_str().cmp(feature))
            .is_ok()
    }

    /// Whether the client wants notifications from `node` (XEP-0163 §4.2).
    pub fn notify(&self, node: &str) -> bool {
        self.notify_nodes().any(|n| n == node)
    }

    pub fn notify_nodes(&self) -> impl Iterator<Item = &str> {
        self.features
            .iter()
            .filter_map(|f| f.strip_suffix("+notify"))
    }
}

/// XEP-0115 §5.1: the string a verification string hashes; `None` for
/// input §5.4 calls ill-formed (duplicate identities, features or form
/// types).
pub fn verification_string(q: &Element) -> Option<String> {
    let mut ids: Vec<String> = q
        .children()
        .filter(|i| i.is("identity", ns::DISCO_INFO))
        .map(|i| {
            format!(
                "{}/{}/{}/{}",
                i.attr("category").unwrap_or(""),
                i.attr("type").unwrap_or(""),
                i.lang().unwrap_or(""),
                i.attr("name").unwrap_or("")
            )
        })
        .collect();
    let mut features: Vec<&str> = q
        .children()
        .filter(|f| f.is("feature", ns::DISCO_INFO))
        .filter_map(|f| f.attr("var"))
        .collect();
    let mut forms: Vec<(String, forms::Fields)> = Vec::new();
    for x in q.children().filter(|x| x.is("x", ns::DATA_FORMS)) {
        let hidden = x.children().any(|f| {
            f.is("field", ns::DATA_FORMS)
                && f.attr("var") == Some("FORM_TYPE")
                && f.attr("type") == Some("hidden")
        });
        // §5.4: a form whose FORM_TYPE is missing or not hidden is ignored.
        let Some(form_type) = forms::form_type(x).filter(|_| hidden) else {
            continue;
        };
        let mut fields = forms::fields(x);
        for (_, values) in &mut fields {
            values.sort();
        }
        fields.sort();
        forms.push((form_type, fields));
    }
    ids.sort();
    features.sort_unstable();
    forms.sort_by(|a, b| a.0.cmp(&b.0));
    let dup = |v: &[&str]| v.windows(2).any(|w| w[0] == w[1]);
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let type_refs: Vec<&str> = forms.iter().map(|f| f.0.as_str()).collect();
    if dup(&id_refs) || dup(&features) || dup(&type_refs) {
        return None;
    }
    let mut s = String::new();
    for part in id_refs.iter().chain(&features) {
        s.push_str(part);
        s.push('<');
    }
    for (form_type, fields) in &forms {
        s.push_str(form_type);
        s.push('<');
        for (var, values) in fields {
            s.push_str(var);
            s.push('<');
            for v in values {
                s.push_str(v);
                s.push('<');
            }
        }
    }
    Some(s)
}

/// The `sha-1` verification string of a disco#info answer.
pub fn sha1_ver(q: &Element) -> Option<String> {
    let s = verification_string(q)?;
    let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes());
    Some(base64::engine::general_purpose::STANDARD.encode(d.as_ref()))
}

/// Verified capabilities by `node#ver`, oldest forgotten first.
pub struct Cache {
    inner: Mutex<Entries>,
    capacity: usize,
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, Arc<ClientCaps>>,
    order: VecDeque<String>,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            inner: Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Arc<ClientCaps>> {
        self.lock().map.get(key).cloned()
    }

    pub fn insert(&self, key: String, caps: Arc<ClientCaps>) {
        let mut g = self.lock();
        let Entries { map, order } = &mut *g;
        if map.insert(key.clone(), caps).is_none() {
            order.push_back(key);
        }
        while map.len() > self.capacity {
            match order.pop_front() {
                Some(old) => {
                    map.remove(&old);
                }
                None => break,
            }
        }
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A session became available, or announced other caps. Called for every
/// available broadcast presence; the same caps again do nothing.
pub async fn on_presence(srv: &Server, s: &Session, el: &Element) {
    let Some(c) = el.get_child("c", ns::CAPS) else {
        return;
    };
    // Legacy caps (no `hash`) name no verifiable string: ignored.
    let (Some(node), Some(ver), Some(hash)) = (c.attr("node"), c.attr("ver"), c.attr("hash"))
    else {
        return;
    };
    let key = format!("{node}#{ver}");
    {
        let Ok(mut st) = s.handle.state.lock() else {
            return;
        };
        if st.caps_key.as_deref() == Some(key.as_str()) {
            return;
        }
        st.caps_key = Some(key.clone());
    }
    if let Some(caps) = srv.caps.get(&key) {
        apply(srv, &s.handle, &key, caps).await;
        return;
    }
    let mut iq = Element::bare("iq", ns::CLIENT).with("type", "get");
    iq.append_child(Element::bare("query", ns::DISCO_INFO).with("node", &key));
    let handle = s.handle.clone();
    let (ver, verify) = (ver.to_owned(), hash == "sha-1");
    let sent = srv.requests.send(
        &s.handle,
        &s.host,
        iq,
        requests::callback(move |srv, answer| {
            Box::pin(async move {
                let Some(q) = answer
                    .ok()
                    .and_then(|r| r.get_child("query", ns::DISCO_INFO).cloned())
                else {
                    return;
                };
                let caps = Arc::new(ClientCaps::from_query(&q));
                if verify && sha1_ver(&q).as_deref() == Some(ver.as_str()) {
                    srv.caps.insert(key.clone(), caps.clone());
                } else {
                    tracing::debug!(session = handle.id, "caps answer not verified; not shared");
                }
                apply(srv, &handle, &key, caps).await;
            })
        }),
    );
    if !sent {
        tracing::debug!(
            session = s.handle.id,
            "caps query not sent: too many outstanding"
        );
    }
}

/// Records a session's caps, if they are still the ones it announces, and
/// tells PEP which notifications it newly wants.
async fn apply(srv: &Server, h: &Arc<SessionHandle>, key: &str, caps: Arc<ClientCaps>) {
    let added: Vec<String> = {
        let Ok(mut st) = h.state.lock() else {
            return;
        };
        if st.caps_key.as_deref() != Some(key) || !st.available {
            return;
        }
        let old = st.caps.replace(caps.clone());
        caps.notify_nodes()
            .filter(|n| !old.as_ref().is_some_and(|o| o.notify(n)))
            .map(str::to_owned)
            .collect()
    };
    pep::interest(srv, h, &added).await;
}

/// The session went unavailable: its next available presence counts as
/// initial again (XEP-0163 §4.3.3).
pub fn unavailable(h: &SessionHandle) {
    if let Ok(mut st) = h.state.lock() {
        st.caps_key = None;
        st.caps = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn simple_example_of_xep_0115() {
        let q = parse(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
               <identity category='client' name='Exodus 0.9.1' type='pc'/>\
               <feature var='http://jabber.org/protocol/caps'/>\
               <feature var='http://jabber.org/protocol/disco#info'/>\
               <feature var='http://jabber.org/protocol/disco#items'/>\
               <feature var='http://jabber.org/protocol/muc'/>\
             </query>",
        );
        assert_eq!(
            sha1_ver(&q).as_deref(),
            Some("QgayPKawpkPSDYmwT/WM94uAlu0=")
        );
    }

    #[test]
    fn complex_example_of_xep_0115() {
        let q = parse(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
               <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
               <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
               <feature var='http://jabber.org/protocol/caps'/>\
               <feature var='http://jabber.org/protocol/disco#info'/>\
               <feature var='http://jabber.org/protocol/disco#items'/>\
               <feature var='http://jabber.org/protocol/muc'/>\
               <x xmlns='jabber:x:data' type='result'>\
                 <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
                 <field var='ip_version' type='text-multi'><value>ipv4</value><value>ipv6</value></field>\
                 <field var='os'><value>Mac</value></field>\
                 <field var='os_version'><value>10.5.1</value></field>\
                 <field var='software'><value>Psi</value></field>\
                 <field var='software_version'><value>0.11</value></field>\
               </x>\
             </query>",
        );
        assert_eq!(
            sha1_ver(&q).as_deref(),
            Some("q07IKJEyjvHSyhy//CH0CxmKi8w=")
        );
    }

    #[test]
    fn untrustworthy_answers_have_no_string() {
        let dup = parse(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
               <feature var='a'/><feature var='a'/></query>",
        );
        assert_eq!(verification_string(&dup), None);
        let no_type = parse(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
               <feature var='a'/>\
               <x xmlns='jabber:x:data' type='result'><field var='os'><value>x</value></field></x>\
             </query>",
        );
        assert_eq!(verification_string(&no_type).as_deref(), Some("a<"));
    }

    #[test]
    fn notify_interest_and_bounded_cache() {
        let q = parse(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
               <feature var='urn:xmpp:avatar:metadata+notify'/>\
               <feature var='urn:xmpp:avatar:metadata'/>\
               <feature var='eu.siacs.conversations.axolotl.devicelist+notify'/>\
             </query>",
        );
        let caps = ClientCaps::from_query(&q);
        assert!(caps.notify("urn:xmpp:avatar:metadata"));
        assert!(!caps.notify("urn:xmpp:avatar:data"));
        assert!(caps.has("urn:xmpp:avatar:metadata"));
        assert_eq!(caps.notify_nodes().count(), 2);
        let cache = Cache::new(2);
        for k in ["a", "b", "c"] {
            cache.insert(k.into(), Arc::new(ClientCaps::default()));
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get("a").is_none());
        assert!(cache.get("c").is_some());
    }
}
