//! The sans-IO core of PEP: node configuration, who may read a node,
//! publish-options preconditions, the parsing of requests and the shape of
//! answers and notifications. No store and no sessions here.

use minidom::Element;
use xmpp_core::stanza::{self, ElementExt};
use xmpp_core::{ns, time};

use crate::modules::forms::{self, Fields};

/// XEP-0060 §4.5 access models this service supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessModel {
    Open,
    /// Contacts with a presence subscription to the owner (from/both).
    Presence,
    /// The owner only (the whitelist cannot be edited: XEP-0223's model).
    Whitelist,
}

impl AccessModel {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessModel::Open => "open",
            AccessModel::Presence => "presence",
            AccessModel::Whitelist => "whitelist",
        }
    }

    pub fn parse(s: &str) -> Option<AccessModel> {
        match s {
            "open" => Some(AccessModel::Open),
            "presence" => Some(AccessModel::Presence),
            "whitelist" => Some(AccessModel::Whitelist),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxItems {
    /// As many as the server keeps (`pep.max_items`).
    Max,
    Count(usize),
}

impl MaxItems {
    /// `limit` is the server's ceiling; above it is refused.
    fn parse(s: &str, limit: usize) -> Option<MaxItems> {
        match s.trim() {
            "max" => Some(MaxItems::Max),
            n => match n.parse::<usize>() {
                Ok(n) if (1..=limit).contains(&n) => Some(MaxItems::Count(n)),
                _ => None,
            },
        }
    }

    pub fn effective(self, limit: usize) -> usize {
        match self {
            MaxItems::Max => limit,
            MaxItems::Count(n) => n.min(limit),
        }
    }

    fn to_value(self) -> String {
        match self {
            MaxItems::Max => "max".into(),
            MaxItems::Count(n) => n.to_string(),
        }
    }
}

/// When the last published item goes to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendLast {
    Never,
    /// When a contact's presence subscription is approved.
    OnSub,
    /// Also when a resource that wants the node becomes available.
    OnSubAndPresence,
}

impl SendLast {
    fn as_str(self) -> &'static str {
        match self {
            SendLast::Never => "never",
            SendLast::OnSub => "on_sub",
            SendLast::OnSubAndPresence => "on_sub_and_presence",
        }
    }

    fn parse(s: &str) -> Option<SendLast> {
        match s {
            "never" => Some(SendLast::Never),
            "on_sub" => Some(SendLast::OnSub),
            "on_sub_and_presence" => Some(SendLast::OnSubAndPresence),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeConfig {
    pub access: AccessModel,
    pub max_items: MaxItems,
    /// Items are stored; without it a publish only notifies.
    pub persist: bool,
    pub send_last: SendLast,
    /// A retraction is notified unless the request says otherwise.
    pub notify_retract: bool,
}

/// XEP-0163 §5's smart defaults; one item per node, as Prosody.
impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            access: AccessModel::Presence,
            max_items: MaxItems::Count(1),
            persist: true,
            send_last: SendLast::OnSubAndPresence,
            notify_retract: true,
        }
    }
}

const ACCESS: &str = "pubsub#access_model";
const MAX_ITEMS: &str = "pubsub#max_items";
const PERSIST: &str = "pubsub#persist_items";
const SEND_LAST: &str = "pubsub#send_last_published_item";
const NOTIFY_RETRACT: &str = "pubsub#notify_retract";

/// One configuration field, parsed and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Access(AccessModel),
    MaxItems(MaxItems),
    Persist(bool),
    SendLast(SendLast),
    NotifyRetract(bool),
}

/// Why a field could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldError {
    Unknown,
    Invalid,
}

fn parse_field(var: &str, values: &[String], limit: usize) -> Result<Field, FieldError> {
    let v = values.first().map(String::as_str).unwrap_or("");
    let bad = FieldError::Invalid;
    match var {
        ACCESS => AccessModel::parse(v).map(Field::Access).ok_or(bad),
        MAX_ITEMS => MaxItems::parse(v, limit).map(Field::MaxItems).ok_or(bad),
        PERSIST => forms::parse_boolean(v).map(Field::Persist).ok_or(bad),
        SEND_LAST => SendLast::parse(v).map(Field::SendLast).ok_or(bad),
        NOTIFY_RETRACT => forms::parse_boolean(v).map(Field::NotifyRetract).ok_or(bad),
        _ => Err(FieldError::Unknown),
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// A value this service does not take (XEP-0060 §8.2.5: not-acceptable).
    Invalid,
    /// publish-options that the node does not (or cannot) satisfy.
    Precondition,
}

impl NodeConfig {
    pub fn from_pairs(pairs: &[(String, String)], limit: usize) -> NodeConfig {
        let mut c = NodeConfig::default();
        for (k, v) in pairs {
            if let Ok(f) = parse_field(k, std::slice::from_ref(v), limit) {
                c.set(f);
            }
        }
        c
    }

    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let b = |v: bool| if v { "true" } else { "false" };
        vec![
            (ACCESS.into(), self.access.as_str().into()),
            (MAX_ITEMS.into(), self.max_items.to_value()),
            (PERSIST.into(), b(self.persist).into()),
            (SEND_LAST.into(), self.send_last.as_str().into()),
            (NOTIFY_RETRACT.into(), b(self.notify_retract).into()),
        ]
    }

    fn set(&mut self, f: Field) {
        match f {
            Field::Access(a) => self.access = a,
            Field::MaxItems(m) => self.max_items = m,
            Field::Persist(p) => self.persist = p,
            Field::SendLast(s) => self.send_last = s,
            Field::NotifyRetract(n) => self.notify_retract = n,
        }
    }

    /// Whether this configuration already has the field's value ("max"
    /// and the server's ceiling are the same number of items).
    fn satisfies(&self, f: Field, limit: usize) -> bool {
        match f {
            Field::MaxItems(m) => self.max_items.effective(limit) == m.effective(limit),
            other => {
                let mut c = *self;
                c.set(other);
                c == *self
            }
        }
    }

    /// The configuration after a submitted `pubsub#node_config` form.
    /// Unknown fields are ignored (as MUC's form); a bad value refuses the
    /// whole form.
    pub fn configure(
        &self,
        fields: &[(String, Vec<String>)],
        limit: usize,
    ) -> Result<NodeConfig, ConfigError> {
        let mut c = *self;
        for (var, values) in fields {
            match parse_field(var, values, limit) {
                Ok(f) => c.set(f),
                Err(FieldError::Unknown) => {}
                Err(FieldError::Invalid) => return Err(ConfigError::Invalid),
            }
        }
        Ok(c)
    }

    /// XEP-0060 §7.1.5: publish-options against an existing node (each
    /// must already hold) or a new one (created with them). Unknown fields
    /// and values this service cannot take fail the precondition.
    pub fn preconditions(
        existing: Option<&NodeConfig>,
        options: &[(String, Vec<String>)],
        limit: usize,
    ) -> Result<NodeConfig, ConfigError> {
        let mut c = existing.copied().unwrap_or_default();
        for (var, values) in options {
            let f = parse_field(var, values, limit).map_err(|_| ConfigError::Precondition)?;
            match existing {
                Some(e) if !e.satisfies(f, limit) => return Err(ConfigError::Precondition),
                Some(_) => {}
                None => c.set(f),
            }
        }
        Ok(c)
    }

    /// The `pubsub#node_config` form (type `form`) showing this configuration.
    pub fn form(&self, limit: usize) -> Element {
        let max = self.max_items.to_value();
        let limit_text = format!("Items kept (1 to {limit}, or max)");
        let mut x = Element::bare("x", ns::DATA_FORMS).with("type", "form");
        x.append_child(forms::form_type_field(ns::PUBSUB_NODE_CONFIG));
        x.append_child(forms::list_single(
            ACCESS,
            "Who may read the items",
            self.access.as_str(),
            &["open", "presence", "whitelist"],
        ));
        x.append_child(forms::field(
            MAX_ITEMS,
            Some("text-single"),
            Some(&limit_text),
            &[&max],
        ));
        x.append_child(forms::boolean(PERSIST, "Store items", self.persist));
        x.append_child(forms::list_single(
            SEND_LAST,
            "When to send the last published item",
            self.send_last.as_str(),
            &["never", "on_sub", "on_sub_and_presence"],
        ));
        x.append_child(forms::boolean(
            NOTIFY_RETRACT,
            "Notify retractions",
            self.notify_retract,
        ));
        x
    }
}

/// Who is asking, as far as reading a node goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Owner,
    /// Has a presence subscription to the owner (from/both on the owner's
    /// roster).
    Subscriber,
    Other,
}

/// Why a read is refused (XEP-0060 §6.5.9.6 and §6.5.9.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    PresenceSubscriptionRequired,
    ClosedNode,
}

pub fn may_read(access: AccessModel, reader: Reader) -> Result<(), Denied> {
    match (access, reader) {
        (_, Reader::Owner) | (AccessModel::Open, _) => Ok(()),
        (AccessModel::Presence, Reader::Subscriber) => Ok(()),
        (AccessModel::Presence, Reader::Other) => Err(Denied::PresenceSubscriptionRequired),
        (AccessModel::Whitelist, _) => Err(Denied::ClosedNode),
    }
}

/// An error reply: a stanza condition with, if any, a pubsub one
/// (`http://jabber.org/protocol/pubsub#errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    pub condition: &'static str,
    pub pubsub: Option<&'static str>,
    /// For `unsupported`: the feature that is not.
    pub feature: Option<&'static str>,
    pub text: Option<&'static str>,
}

impl Error {
    pub const fn new(condition: &'static str, pubsub: Option<&'static str>) -> Error {
        Error {
            condition,
            pubsub,
            feature: None,
            text: None,
        }
    }

    pub const fn unsupported(feature: &'static str) -> Error {
        Error {
            condition: "feature-not-implemented",
            pubsub: Some("unsupported"),
            feature: Some(feature),
            text: None,
        }
    }

    pub fn reply(&self, iq: &Element) -> Element {
        let mut r = stanza::error_reply(iq, self.condition, self.text);
        if let Some(p) = self.pubsub
            && let Some(e) = r.get_child_mut("error", ns::CLIENT)
        {
            let mut c = Element::bare(p, ns::PUBSUB_ERRORS);
            if let Some(f) = self.feature {
                c.set("feature", f);
            }
            e.append_child(c);
        }
        r
    }
}

impl From<Denied> for Error {
    fn from(d: Denied) -> Error {
        match d {
            Denied::PresenceSubscriptionRequired => {
                Error::new("not-authorized", Some("presence-subscription-required"))
            }
            Denied::ClosedNode => Error::new("not-allowed", Some("closed-node")),
        }
    }
}

pub const NOT_FOUND: Error = Error::new("item-not-found", None);
pub const FORBIDDEN: Error = Error::new("forbidden", None);
pub const BAD_REQUEST: Error = Error::new("bad-request", None);
pub const NODE_REQUIRED: Error = Error::new("bad-request", Some("nodeid-required"));
pub const ITEM_REQUIRED: Error = Error::new("bad-request", Some("item-required"));
pub const PRECONDITION: Error = Error::new("conflict", Some("precondition-not-met"));
pub const TOO_BIG: Error = Error::new("not-acceptable", Some("payload-too-big"));
pub const TOO_MANY_NODES: Error = Error::new("not-allowed", Some("max-nodes-exceeded"));
/// `resource-constraint` (RFC 6120 has `policy-violation` too, but clients
/// such as slixmpp do not know it as a stanza error).
pub const OVER_QUOTA: Error = Error {
    text: Some("the account's PEP storage is full"),
    ..Error::new("resource-constraint", None)
};
pub const INTERNAL: Error = Error::new("internal-server-error", None);

/// A request in the `pubsub` namespace.
#[derive(Debug, PartialEq)]
pub enum Request<'a> {
    Publish {
        node: &'a str,
        id: Option<&'a str>,
        payload: &'a Element,
        /// publish-options fields, if any were given.
        options: Fields,
    },
    Retract {
        node: &'a str,
        id: &'a str,
        /// The request's `notify`, if it has one.
        notify: Option<bool>,
    },
    Items {
        node: &'a str,
        ids: Vec<String>,
        max: Option<usize>,
    },
    Create {
        node: &'a str,
        config: Fields,
    },
}

/// A request in the `pubsub#owner` namespace.
#[derive(Debug, PartialEq)]
pub enum OwnerRequest<'a> {
    GetConfig {
        node: &'a str,
    },
    /// `None`: the owner cancelled.
    SetConfig {
        node: &'a str,
        fields: Option<Fields>,
    },
    Default,
    Delete {
        node: &'a str,
    },
    Purge {
        node: &'a str,
    },
}

fn node_of(el: &Element) -> Result<&str, Error> {
    el.attr("node")
        .filter(|n| !n.is_empty())
        .ok_or(NODE_REQUIRED)
}

/// The fields of the one data form of `FORM_TYPE` `form_type` in `parent`;
/// no form at all is no fields.
fn form_fields(parent: Option<&Element>, form_type: &str) -> Result<Fields, Error> {
    let Some(x) = parent.and_then(|p| p.get_child("x", ns::DATA_FORMS)) else {
        return Ok(Vec::new());
    };
    if forms::form_type(x).as_deref() != Some(form_type) || x.attr("type") != Some("submit") {
        return Err(BAD_REQUEST);
    }
    Ok(forms::fields(x))
}

fn children<'a>(el: &'a Element, name: &'a str, ns: &'a str) -> impl Iterator<Item = &'a Element> {
    el.children().filter(move |c| c.is(name, ns))
}

/// What the `<pubsub/>` of an IQ asks (`set`: publish, retract, create;
/// `get`: items). Other pubsub requests (subscriptions, affiliations) are
/// not implemented: PEP subscribes by presence and caps.
pub fn parse_request<'a>(ty: &str, pubsub: &'a Element) -> Result<Request<'a>, Error> {
    let first = pubsub.children().next().ok_or(BAD_REQUEST)?;
    if first.ns() != ns::PUBSUB {
        return Err(BAD_REQUEST);
    }
    match (ty, first.name()) {
        ("set", "publish") => {
            let node = node_of(first)?;
            let items: Vec<&Element> = children(first, "item", ns::PUBSUB).collect();
            let [item] = items.as_slice() else {
                return Err(if items.is_empty() {
                    ITEM_REQUIRED
                } else {
                    BAD_REQUEST
                });
            };
            let mut payloads = item.children();
            let (Some(payload), None) = (payloads.next(), payloads.next()) else {
                return Err(Error::new("bad-request", Some("invalid-payload")));
            };
            let options = form_fields(
                pubsub.get_child("publish-options", ns::PUBSUB),
                ns::PUBSUB_PUBLISH_OPTIONS,
            )?;
            Ok(Request::Publish {
                node,
                id: item.attr("id").filter(|i| !i.is_empty()),
                payload,
                options,
            })
        }
        ("set", "retract") => {
            let node = node_of(first)?;
            let items: Vec<&Element> = children(first, "item", ns::PUBSUB).collect();
            let [item] = items.as_slice() else {
                return Err(if items.is_empty() {
                    ITEM_REQUIRED
                } else {
                    BAD_REQUEST
                });
            };
            let id = item
                .attr("id")
                .filter(|i| !i.is_empty())
                .ok_or(ITEM_REQUIRED)?;
            let notify = match first.attr("notify") {
                None => None,
                Some(v) => Some(forms::parse_boolean(v).ok_or(BAD_REQUEST)?),
            };
            Ok(Request::Retract { node, id, notify })
        }
        ("set", "create") => {
            let node = first
                .attr("node")
                .filter(|n| !n.is_empty())
                // Instant nodes (no name) make no sense for PEP.
                .ok_or(Error::new("not-acceptable", Some("nodeid-required")))?;
            let config = form_fields(
                pubsub.get_child("configure", ns::PUBSUB),
                ns::PUBSUB_NODE_CONFIG,
            )?;
            Ok(Request::Create { node, config })
        }
        ("get", "items") => {
            let node = node_of(first)?;
            let max = match first.attr("max_items") {
                None => None,
                Some(m) => Some(m.trim().parse::<usize>().map_err(|_| BAD_REQUEST)?),
            };
            let ids = children(first, "item", ns::PUBSUB)
                .filter_map(|i| i.attr("id").map(str::to_owned))
                .collect();
            Ok(Request::Items { node, ids, max })
        }
        (_, "subscribe") => Err(Error::unsupported("subscribe")),
        (_, "unsubscribe") => Err(Error::unsupported("subscribe")),
        (_, "options") => Err(Error::unsupported("subscription-options")),
        (_, "subscriptions") => Err(Error::unsupported("retrieve-subscriptions")),
        (_, "affiliations") => Err(Error::unsupported("retrieve-affiliations")),
        _ => Err(BAD_REQUEST),
    }
}

/// What the `<pubsub xmlns='…#owner'/>` of an IQ asks.
pub fn parse_owner_request<'a>(ty: &str, pubsub: &'a Element) -> Result<OwnerRequest<'a>, Error> {
    let first = pubsub.children().next().ok_or(BAD_REQUEST)?;
    if first.ns() != ns::PUBSUB_OWNER {
        return Err(BAD_REQUEST);
    }
    match (ty, first.name()) {
        ("get", "configure") => Ok(OwnerRequest::GetConfig {
            node: node_of(first)?,
        }),
        ("set", "configure") => {
            let node = node_of(first)?;
            let x = first.get_child("x", ns::DATA_FORMS).ok_or(BAD_REQUEST)?;
            if x.attr("type") == Some("cancel") {
                return Ok(OwnerRequest::SetConfig { node, fields: None });
            }
            let fields = form_fields(Some(first), ns::PUBSUB_NODE_CONFIG)?;
            Ok(OwnerRequest::SetConfig {
                node,
                fields: Some(fields),
            })
        }
        ("get", "default") => Ok(OwnerRequest::Default),
        ("set", "delete") => Ok(OwnerRequest::Delete {
            node: node_of(first)?,
        }),
        ("set", "purge") => Ok(OwnerRequest::Purge {
            node: node_of(first)?,
        }),
        (_, "subscriptions") => Err(Error::unsupported("manage-subscriptions")),
        (_, "affiliations") => Err(Error::unsupported("modify-affiliations")),
        _ => Err(BAD_REQUEST),
    }
}

/// `<item id='…'>payload</item>` in the given namespace.
pub fn item(namespace: &str, id: &str, payload: Option<Element>) -> Element {
    let mut i = Element::bare("item", namespace).with("id", id);
    if let Some(p) = payload {
        i.append_child(p);
    }
    i
}

/// `<pubsub><items node='…'>items</items></pubsub>`, an items answer.
pub fn items_result(node: &str, items: Vec<Element>) -> Element {
    let mut list = Element::bare("items", ns::PUBSUB).with("node", node);
    for i in items {
        list.append_child(i);
    }
    let mut p = Element::bare("pubsub", ns::PUBSUB);
    p.append_child(list);
    p
}

/// `<pubsub><publish node='…'><item id='…'/></publish></pubsub>`, the
/// answer to a publish (XEP-0060 §7.1.2, with the id the service chose).
pub fn publish_result(node: &str, id: &str) -> Element {
    let mut publish = Element::bare("publish", ns::PUBSUB).with("node", node);
    publish.append_child(item(ns::PUBSUB, id, None));
    let mut p = Element::bare("pubsub", ns::PUBSUB);
    p.append_child(publish);
    p
}

/// `<pubsub xmlns='…#owner'><configure|default node='…'>form</…></pubsub>`.
pub fn config_result(what: &str, node: Option<&str>, form: Element) -> Element {
    let mut c = Element::bare(what, ns::PUBSUB_OWNER);
    if let Some(n) = node {
        c.set("node", n);
    }
    c.append_child(form);
    let mut p = Element::bare("pubsub", ns::PUBSUB_OWNER);
    p.append_child(c);
    p
}

/// What a notification announces.
pub enum Event {
    /// Items published: (id, payload, stamp if it is an old one).
    Items(Vec<(String, Element, Option<u64>)>),
    Retract(String),
    Purge,
    Delete,
}

/// The notification message (XEP-0060 §7.1.2.1), from the owner's bare
/// JID and without `to`: serialised once, each recipient's writer adds its
/// address. Items sent again (the last published one) carry a delay stamp.
pub fn notification(owner: &str, node: &str, event: Event) -> Element {
    let mut ev = Element::bare("event", ns::PUBSUB_EVENT);
    match event {
        Event::Items(items) => {
            let mut list = Element::bare("items", ns::PUBSUB_EVENT).with("node", node);
            for (id, payload, _) in &items {
                list.append_child(item(ns::PUBSUB_EVENT, id, Some(payload.clone())));
            }
            ev.append_child(list);
            if let Some(stamp) = items.iter().find_map(|i| i.2) {
                let delay = Element::bare("delay", ns::DELAY)
                    .with("from", owner)
                    .with("stamp", &time::datetime(stamp));
                let mut m = message(owner, ev);
                m.append_child(delay);
                return m;
            }
        }
        Event::Retract(id) => {
            let mut list = Element::bare("items", ns::PUBSUB_EVENT).with("node", node);
            list.append_child(Element::bare("retract", ns::PUBSUB_EVENT).with("id", &id));
            ev.append_child(list);
        }
        Event::Purge => {
            ev.append_child(Element::bare("purge", ns::PUBSUB_EVENT).with("node", node));
        }
        Event::Delete => {
            ev.append_child(Element::bare("delete", ns::PUBSUB_EVENT).with("node", node));
        }
    }
    message(owner, ev)
}

fn message(owner: &str, event: Element) -> Element {
    let mut m = Element::bare("message", ns::CLIENT)
        .with("from", owner)
        .with("type", "headline");
    m.append_child(event);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 10;

    fn opts(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect()
    }

    fn parse(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn access_decisions() {
        use AccessModel::*;
        use Reader::*;
        for a in [Open, Presence, Whitelist] {
            assert_eq!(may_read(a, Owner), Ok(()));
        }
        assert_eq!(may_read(Open, Other), Ok(()));
        assert_eq!(may_read(Open, Subscriber), Ok(()));
        assert_eq!(may_read(Presence, Subscriber), Ok(()));
        assert_eq!(
            may_read(Presence, Other),
            Err(Denied::PresenceSubscriptionRequired)
        );
        assert_eq!(may_read(Whitelist, Subscriber), Err(Denied::ClosedNode));
        assert_eq!(may_read(Whitelist, Other), Err(Denied::ClosedNode));
        let e: Error = Denied::PresenceSubscriptionRequired.into();
        assert_eq!(
            (e.condition, e.pubsub),
            ("not-authorized", Some("presence-subscription-required"))
        );
    }

    #[test]
    fn publish_options_create_new_nodes_and_check_existing_ones() {
        let omemo = opts(&[
            ("pubsub#access_model", "open"),
            ("pubsub#persist_items", "1"),
            ("pubsub#max_items", "max"),
        ]);
        // A new node takes the options as its configuration.
        let c = NodeConfig::preconditions(None, &omemo, LIMIT).unwrap();
        assert_eq!(c.access, AccessModel::Open);
        assert_eq!(c.max_items, MaxItems::Max);
        assert_eq!(c.send_last, SendLast::OnSubAndPresence);
        // The same options against it hold; "max" equals the ceiling.
        assert_eq!(NodeConfig::preconditions(Some(&c), &omemo, LIMIT), Ok(c));
        let ten = opts(&[("pubsub#max_items", "10")]);
        assert!(NodeConfig::preconditions(Some(&c), &ten, LIMIT).is_ok());
        // A default node is presence-access: open is a conflict.
        let d = NodeConfig::default();
        assert_eq!(
            NodeConfig::preconditions(Some(&d), &omemo, LIMIT),
            Err(ConfigError::Precondition)
        );
        // Unknown fields and values that cannot be taken fail too, even for
        // a node that does not exist yet.
        for bad in [
            opts(&[("pubsub#title", "x")]),
            opts(&[("pubsub#access_model", "roster")]),
            opts(&[("pubsub#max_items", "11")]),
            opts(&[("pubsub#max_items", "0")]),
            opts(&[("pubsub#persist_items", "perhaps")]),
        ] {
            assert_eq!(
                NodeConfig::preconditions(None, &bad, LIMIT),
                Err(ConfigError::Precondition),
                "{bad:?}"
            );
        }
        // No options: anything goes.
        assert_eq!(NodeConfig::preconditions(Some(&c), &[], LIMIT), Ok(c));
    }

    #[test]
    fn configuration_forms_and_storage_round_trip() {
        let c = NodeConfig::default()
            .configure(
                &opts(&[
                    ("pubsub#access_model", "whitelist"),
                    ("pubsub#max_items", "5"),
                    ("pubsub#send_last_published_item", "never"),
                    ("pubsub#title", "ignored"),
                ]),
                LIMIT,
            )
            .unwrap();
        assert_eq!(c.access, AccessModel::Whitelist);
        assert_eq!(c.max_items.effective(LIMIT), 5);
        assert_eq!(NodeConfig::from_pairs(&c.to_pairs(), LIMIT), c);
        assert_eq!(
            c.configure(&opts(&[("pubsub#access_model", "authorize")]), LIMIT),
            Err(ConfigError::Invalid)
        );
        // A lower ceiling later clamps what is kept.
        assert_eq!(MaxItems::Count(5).effective(3), 3);
        assert_eq!(MaxItems::Max.effective(3), 3);
        let form = c.form(LIMIT);
        assert_eq!(
            forms::form_type(&form).as_deref(),
            Some(ns::PUBSUB_NODE_CONFIG)
        );
        let fields = forms::fields(&form);
        assert!(fields.contains(&("pubsub#access_model".into(), vec!["whitelist".into()])));
        assert!(fields.contains(&("pubsub#max_items".into(), vec!["5".into()])));
    }

    #[test]
    fn requests_parse_and_bad_ones_get_the_xep_errors() {
        let p = parse(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'>\
               <publish node='n'><item id='i'><x xmlns='urn:x'/></item></publish>\
               <publish-options><x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
                 <field var='pubsub#access_model'><value>open</value></field>\
               </x></publish-options></pubsub>",
        );
        match parse_request("set", &p).unwrap() {
            Request::Publish {
                node, id, options, ..
            } => {
                assert_eq!((node, id), ("n", Some("i")));
                assert_eq!(options, opts(&[("pubsub#access_model", "open")]));
            }
            other => panic!("{other:?}"),
        }
        let err = |xml: &str, ty: &str| parse_request(ty, &parse(xml)).map(|_| ()).unwrap_err();
        let ps = |inner: &str| {
            format!("<pubsub xmlns='http://jabber.org/protocol/pubsub'>{inner}</pubsub>")
        };
        assert_eq!(err(&ps("<publish node='n'/>"), "set"), ITEM_REQUIRED);
        assert_eq!(
            err(&ps("<publish node='n'><item/></publish>"), "set").pubsub,
            Some("invalid-payload")
        );
        assert_eq!(
            err(
                &ps("<publish node='n'><item><a xmlns='x'/><b xmlns='x'/></item></publish>"),
                "set"
            )
            .pubsub,
            Some("invalid-payload")
        );
        assert_eq!(
            err(&ps("<publish><item><a xmlns='x'/></item></publish>"), "set"),
            NODE_REQUIRED
        );
        assert_eq!(
            err(&ps("<items node='n' max_items='x'/>"), "get"),
            BAD_REQUEST
        );
        assert_eq!(
            err(&ps("<retract node='n'><item/></retract>"), "set"),
            ITEM_REQUIRED
        );
        assert_eq!(
            err(&ps("<subscribe node='n' jid='a@b'/>"), "set"),
            Error::unsupported("subscribe")
        );
        // A publish-options form of another type is a bad request.
        assert_eq!(
            err(
                &ps("<publish node='n'><item><a xmlns='x'/></item></publish>\
                     <publish-options><x xmlns='jabber:x:data' type='submit'/></publish-options>"),
                "set"
            ),
            BAD_REQUEST
        );
        assert_eq!(
            parse_request(
                "get",
                &parse(&ps("<items node='n' max_items='2'><item id='a'/></items>"))
            )
            .unwrap(),
            Request::Items {
                node: "n",
                ids: vec!["a".into()],
                max: Some(2)
            }
        );
        assert_eq!(
            parse_request(
                "set",
                &parse(&ps("<retract node='n' notify='1'><item id='a'/></retract>"))
            )
            .unwrap(),
            Request::Retract {
                node: "n",
                id: "a",
                notify: Some(true)
            }
        );
    }

    #[test]
    fn errors_carry_the_pubsub_condition() {
        let iq = parse("<iq xmlns='jabber:client' type='set' id='1' from='a@b/c' to='a@b'/>");
        let r = PRECONDITION.reply(&iq);
        let e = r.get_child("error", ns::CLIENT).unwrap();
        assert!(e.has_child("conflict", ns::STANZAS_ERR));
        assert!(e.has_child("precondition-not-met", ns::PUBSUB_ERRORS));
        let r = Error::unsupported("subscribe").reply(&iq);
        let u = r
            .get_child("error", ns::CLIENT)
            .and_then(|e| e.get_child("unsupported", ns::PUBSUB_ERRORS))
            .unwrap();
        assert_eq!(u.attr("feature"), Some("subscribe"));
    }

    #[test]
    fn notifications_have_no_recipient_and_old_items_a_delay() {
        let payload = parse("<x xmlns='urn:x'/>");
        let m = notification(
            "a@b",
            "n",
            Event::Items(vec![("i".into(), payload.clone(), None)]),
        );
        assert_eq!(m.attr("to"), None);
        assert_eq!(m.attr("type"), Some("headline"));
        let items = m
            .get_child("event", ns::PUBSUB_EVENT)
            .and_then(|e| e.get_child("items", ns::PUBSUB_EVENT))
            .unwrap();
        assert_eq!(items.attr("node"), Some("n"));
        assert!(!m.has_child("delay", ns::DELAY));
        let m = notification(
            "a@b",
            "n",
            Event::Items(vec![("i".into(), payload, Some(0))]),
        );
        assert!(m.has_child("delay", ns::DELAY));
        let m = notification("a@b", "n", Event::Retract("i".into()));
        let r = m
            .get_child("event", ns::PUBSUB_EVENT)
            .and_then(|e| e.get_child("items", ns::PUBSUB_EVENT))
            .and_then(|i| i.get_child("retract", ns::PUBSUB_EVENT))
            .unwrap();
        assert_eq!(r.attr("id"), Some("i"));
    }
}
