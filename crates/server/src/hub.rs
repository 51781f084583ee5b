//! The server: configuration, store, router and the module registry, and
//! the dispatch of every stanza a session sends (RFC 6120 §8, RFC 6121 §8).
//!
//! Modules declare the IQ payloads they handle and the disco features they
//! bring; disco answers are built from the same registry, so what the
//! server advertises cannot drift from what it does.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use jid::Jid;
use minidom::Element;
use xmpp_core::ns;
use xmpp_core::stanza::{self, ElementExt, Kind};

use crate::component;
use crate::config::Config;
use crate::limits::AuthLimiter;
use crate::modules;
use crate::modules::roster::Rosters;
use crate::requests::Requests;
use crate::router::{Router, SessionHandle};
use conclave_store::Store;

/// The authenticated, bound sender of a stanza.
#[derive(Debug)]
pub struct Session {
    pub handle: Arc<SessionHandle>,
    pub user: String,
    pub host: String,
    pub anonymous: bool,
}

impl Session {
    pub fn full(&self) -> &str {
        &self.handle.full
    }

    pub fn bare(&self) -> &str {
        &self.handle.bare
    }

    pub fn send(&self, el: &Element) {
        self.handle.send(stanza::to_bytes(el));
    }

    /// Answers a stanza that cannot be delivered with an error, unless it
    /// is itself an error or an IQ result (RFC 6120 §8.3.1).
    pub fn bounce(&self, el: &Element, condition: &str) {
        if !matches!(el.attr("type"), Some("error" | "result")) {
            self.send(&stanza::error_reply(el, condition, None));
        }
    }

    /// Answers an IQ that only makes sense as a `get`: `bad-request` for
    /// anything else, else a result carrying `payload` (built only then).
    pub fn answer_get(&self, iq: &Element, payload: impl FnOnce() -> Option<Element>) {
        if iq.attr("type") != Some("get") {
            self.send(&stanza::error_reply(iq, "bad-request", None));
            return;
        }
        let mut reply = stanza::iq_result(iq);
        if let Some(p) = payload() {
            reply.append_child(p);
        }
        self.send(&reply);
    }
}

/// Where an IQ is addressed, as far as handler lookup goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The server's domain.
    Server,
    /// A local account's bare JID (the sender's own, or another's).
    Account,
}

pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
/// Handles one IQ get/set; it answers through `Session::send` or routes.
/// The `&str` is the bare JID the IQ is addressed to (Account) or the
/// server domain (Server).
pub type IqHandler = for<'a> fn(&'a Server, &'a Session, &'a str, Element) -> HandlerFuture<'a>;

pub struct IqRoute {
    pub target: Target,
    pub ns: &'static str,
    pub handler: IqHandler,
}

/// One XEP area: what it handles and what it advertises.
pub struct Module {
    pub name: &'static str,
    /// Server disco features.
    pub features: &'static [&'static str],
    /// Features of an account's bare JID.
    pub account_features: &'static [&'static str],
    /// Identities (category, type) an account's bare JID has besides
    /// `account` (XEP-0163's `pubsub/pep`).
    pub account_identities: &'static [(&'static str, &'static str)],
    pub iq: &'static [IqRoute],
    /// Whether the configuration turns this module on.
    pub enabled: fn(&Config) -> bool,
}

/// A service on a domain of its own under each host (`conference.<host>`,
/// `upload.<host>`), addressed like an XMPP component but running in the
/// process. The hub routes every stanza for its domain to `handle` and
/// answers disco#info on the bare domain from the fields below.
pub struct Service {
    pub name: &'static str,
    pub subdomain: &'static str,
    /// XEP-0030 identity: category, type, name.
    pub identity: (&'static str, &'static str, &'static str),
    /// An identity (category, type) the service adds to its host's
    /// disco#info, named by the service's domain (`<subdomain>.<host>`):
    /// how clients that look for a component by identity find it (Jitsi's
    /// `lobbyrooms`, say).
    pub host_identity: Option<(&'static str, &'static str)>,
    pub features: &'static [&'static str],
    /// A XEP-0128 extension form for the disco#info answer (XEP-0363's
    /// `max-file-size`, say), built from the configuration it reflects.
    pub info_form: fn(&Config) -> Option<Element>,
    pub handle: ServiceHandler,
    pub enabled: fn(&Config) -> bool,
}

/// Handles one stanza addressed to a service's domain (or a JID on it).
pub type ServiceHandler = for<'a> fn(&'a Server, &'a Session, Jid, Element) -> HandlerFuture<'a>;

/// What serves a domain other than a host: an in-process service or an
/// external component (XEP-0114).
enum Domain {
    Service(&'static Service),
    Component(Arc<component::Slot>),
}

/// IQ payloads a component may ask the server or an account about: the
/// read-only ones. Everything else (registration, roster, carbons, TURN
/// credentials...) belongs to a client's own account.
const COMPONENT_IQ: &[&str] = &[
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    ns::PING,
    ns::VERSION,
    ns::TIME,
    ns::VCARD,
];

/// Who sent a stanza the hub dispatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Client,
    Component,
}

pub struct Server {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub router: Router,
    pub rosters: Rosters,
    pub muc: modules::muc::Rooms,
    pub archiver: modules::mam::Archiver,
    pub blocking: modules::blocking::Blocklists,
    /// XEP-0050 commands waiting for their form.
    pub adhoc: modules::adhoc::Sessions,
    pub auth_limiter: AuthLimiter,
    /// Byte buckets per address (`limits.ip_rate_*`).
    pub rates: crate::limits::Rates,
    /// `config.admins`, normalised.
    admins: HashSet<String>,
    /// IQs the server sent to clients, awaiting their answers.
    pub requests: Requests,
    /// What clients can do, by XEP-0115 verification string.
    pub caps: modules::caps::Cache,
    pub pep: modules::pep::Pep,
    /// XEP-0153 avatar hashes for presence.
    pub avatars: modules::avatar::Hashes,
    /// XEP-0198 sessions that may be resumed, by id.
    pub resumption: crate::resumption::Registry,
    iq: HashMap<(Target, &'static str), IqHandler>,
    /// Service and component domains.
    domains: crate::FastMap<String, Domain>,
    server_features: Vec<&'static str>,
    account_features: Vec<&'static str>,
    account_identities: Vec<(&'static str, &'static str)>,
    /// Each local host's identities and XEP-0115 verification string: the
    /// identities of services name the host's subdomains, so both differ
    /// per host.
    host_info: HashMap<String, HostInfo>,
    /// The guest host's (it has no services), and any other address's.
    default_info: HostInfo,
    shutting_down: AtomicBool,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
    /// State of services from other crates, by type (see `extension`).
    extensions: std::sync::RwLock<HashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>>,
}

pub const SERVER_NAME: &str = "Conclave";
pub const CAPS_NODE: &str = "https://conclave.chat/caps";

/// A host's disco#info identities (category, type, name) and its XEP-0115
/// verification string.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub identities: Vec<(String, String, String)>,
    pub caps_ver: String,
}

impl Server {
    pub fn new(config: Config, store: Arc<dyn Store>) -> Arc<Server> {
        Self::with_services(config, store, &[])
    }

    /// A server with in-process services beyond the built-in ones (the
    /// conference focus, from its own crate): the hub routes their domains
    /// to them without knowing what they speak.
    pub fn with_services(
        config: Config,
        store: Arc<dyn Store>,
        extra: &[&'static Service],
    ) -> Arc<Server> {
        let mut iq = HashMap::new();
        let mut server_features = vec![ns::DISCO_INFO, ns::DISCO_ITEMS];
        let mut account_features = vec![ns::DISCO_INFO];
        let mut account_identities = Vec::new();
        for m in modules::ALL {
            if !(m.enabled)(&config) {
                continue;
            }
            server_features.extend_from_slice(m.features);
            account_features.extend_from_slice(m.account_features);
            account_identities.extend_from_slice(m.account_identities);
            for r in m.iq {
                iq.insert((r.target, r.ns), r.handler);
            }
        }
        server_features.sort_unstable();
        server_features.dedup();
        account_features.sort_unstable();
        account_features.dedup();
        let services: Vec<&'static Service> = modules::SERVICES
            .iter()
            .chain(extra)
            .copied()
            .filter(|svc| (svc.enabled)(&config))
            .collect();
        let mut domains = crate::FastMap::default();
        for svc in &services {
            for h in &config.hosts {
                domains.insert(format!("{}.{h}", svc.subdomain), Domain::Service(svc));
            }
        }
        for c in &config.components.list {
            // Validated: a domain, normalised here as routing compares.
            if let Ok(j) = jid::BareJid::new(&c.domain) {
                let d = j.as_str().to_owned();
                let slot = component::Slot::new(d.clone(), c.secret.clone());
                domains.insert(d, Domain::Component(Arc::new(slot)));
            }
        }
        let forms = [modules::retention::disco_form(&config)];
        let info = |host: Option<&str>| {
            let mut identities = vec![("server".into(), "im".into(), SERVER_NAME.into())];
            for svc in &services {
                if let (Some(h), Some((category, kind))) = (host, svc.host_identity) {
                    let name = format!("{}.{h}", svc.subdomain);
                    identities.push((category.into(), kind.into(), name));
                }
            }
            let caps_ver = modules::disco::caps_ver(&identities, &server_features, &forms);
            HostInfo {
                identities,
                caps_ver,
            }
        };
        // The guest host has no services of its own (they live under the
        // hosts): only the server's identity.
        let mut host_info: HashMap<String, HostInfo> = config
            .hosts
            .iter()
            .map(|h| (h.clone(), info(Some(h))))
            .collect();
        let default_info = info(None);
        if !config.guest_host.is_empty() {
            host_info.insert(config.guest_host.clone(), default_info.clone());
        }
        let admins = config
            .admins
            .iter()
            .filter_map(|a| jid::BareJid::new(a).ok())
            .map(|j| j.as_str().to_owned())
            .collect();
        let limiter = AuthLimiter::new(config.limits.auth_failures_per_minute);
        let requests = Requests::new(
            Duration::from_secs(config.limits.server_iq_timeout_secs),
            config.limits.server_iqs_per_session,
        );
        let caps = modules::caps::Cache::new(config.pep.caps_cache_entries);
        Arc::new(Server {
            config: Arc::new(config),
            store,
            router: Router::default(),
            rosters: Rosters::default(),
            muc: modules::muc::Rooms::default(),
            archiver: modules::mam::Archiver::default(),
            blocking: modules::blocking::Blocklists::default(),
            adhoc: modules::adhoc::Sessions::default(),
            auth_limiter: limiter,
            rates: Default::default(),
            admins,
            requests,
            caps,
            pep: modules::pep::Pep::default(),
            avatars: modules::avatar::Hashes::default(),
            resumption: Default::default(),
            iq,
            domains,
            server_features,
            account_features,
            account_identities,
            host_info,
            default_info,
            shutting_down: AtomicBool::new(false),
            shutdown_tx: tokio::sync::watch::channel(false).0,
            extensions: Default::default(),
        })
    }

    /// Stores the state of a service from another crate, whose handler (a
    /// plain `fn`) finds it again with `extension`.
    pub fn set_extension<T: std::any::Any + Send + Sync>(&self, value: Arc<T>) {
        self.extensions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(std::any::TypeId::of::<T>(), value);
    }

    pub fn extension<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let v = self
            .extensions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&std::any::TypeId::of::<T>())?
            .clone();
        v.downcast::<T>().ok()
    }

    /// The service on `domain`, if any.
    pub fn service(&self, domain: &str) -> Option<&'static Service> {
        match self.domains.get(domain) {
            Some(Domain::Service(svc)) => Some(svc),
            _ => None,
        }
    }

    /// The configured component for `domain`, if any (connected or not).
    pub fn component(&self, domain: &str) -> Option<&Arc<component::Slot>> {
        match self.domains.get(domain) {
            Some(Domain::Component(slot)) => Some(slot),
            _ => None,
        }
    }

    /// Service and component domains under `host` (its subdomains), for
    /// the host's disco#items.
    pub fn services_of(&self, host: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .domains
            .keys()
            .filter(|d| d.strip_suffix(host).is_some_and(|p| p.ends_with('.')))
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Whether `bare` (a session's bare JID) is one of `config.admins`.
    pub fn is_admin(&self, bare: &str) -> bool {
        self.admins.contains(bare)
    }

    pub fn server_features(&self) -> &[&'static str] {
        &self.server_features
    }

    pub fn account_features(&self) -> &[&'static str] {
        &self.account_features
    }

    pub fn account_identities(&self) -> &[(&'static str, &'static str)] {
        &self.account_identities
    }

    /// What `host` says of itself in disco#info: its identities and the
    /// XEP-0115 verification string they hash into.
    pub fn host_info(&self, host: &str) -> &HostInfo {
        self.host_info.get(host).unwrap_or(&self.default_info)
    }

    /// XEP-0115 element for the stream features of a stream to `host`.
    pub fn caps_element(&self, host: &str) -> String {
        format!(
            "<c xmlns='{}' hash='sha-1' node='{}' ver='{}'/>",
            ns::CAPS,
            CAPS_NODE,
            self.host_info(host).caps_ver
        )
    }

    /// Tells every session to close with `system-shutdown`.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.shutdown_tx.send_replace(true);
        for h in self.router.all() {
            h.close(Some("system-shutdown"));
        }
        for d in self.domains.values() {
            if let Domain::Component(slot) = d
                && let Some(h) = slot.connection()
            {
                h.close(Some("system-shutdown"));
            }
        }
    }

    /// Changes when the server begins to shut down; sessions still
    /// negotiating close on it.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Handles one stanza from a bound session. `Err` is a stream error
    /// condition: the session closes the stream with it.
    pub async fn handle_stanza(&self, s: &Session, mut el: Element) -> Result<(), &'static str> {
        let Some(kind) = stanza::kind(&el) else {
            return Err("unsupported-stanza-type");
        };
        // RFC 6120 §8.1.2.1: the server stamps `from`; a client may only
        // name itself there.
        if let Some(from) = el.attr("from") {
            match Jid::new(from) {
                Ok(j) if j.as_str() == s.full() || j.as_str() == s.bare() => {}
                _ => return Err("invalid-from"),
            }
        }
        el.set("from", s.full());
        metrics::counter!("conclave_stanzas_in_total", "kind" => kind_label(kind)).increment(1);
        let to = match el.attr("to") {
            None => None,
            Some(t) => match Jid::new(t) {
                Ok(j) => Some(j),
                Err(_) => {
                    if el.attr("type") != Some("error") {
                        s.send(&stanza::error_reply(&el, "jid-malformed", None));
                    }
                    return Ok(());
                }
            },
        };
        if let Some(j) = &to
            && el.attr("to") != Some(j.as_str())
        {
            // Normalised form, so that routing compares like with like.
            el.set("to", j.as_str());
        }
        if kind == Kind::Presence && el.attr("type").is_none() {
            modules::avatar::stamp_presence(self, s, &mut el).await;
        }
        if let Some(j) = to.as_ref()
            && let Some(d) = self.domains.get(j.domain().as_str())
            && !subscription_to_component(d, kind, &el)
        {
            match d {
                Domain::Service(svc) => {
                    let j = j.clone();
                    if j.node().is_none()
                        && j.resource().is_none()
                        && modules::disco::is_info_get(&el)
                    {
                        modules::disco::service_info(&self.config, s, svc, &el);
                    } else {
                        (svc.handle)(self, s, j, el).await;
                    }
                }
                Domain::Component(slot) => {
                    if let Some(refusal) = modules::blocking::outbound(self, s, j, &el).await {
                        if let Some(e) = refusal {
                            s.send(&e);
                        }
                        return Ok(());
                    }
                    if kind == Kind::Presence && el.attr("type").is_none() {
                        modules::presence::track_directed(s, j);
                    }
                    slot.deliver(s, &el);
                }
            }
            return Ok(());
        }
        if let Some(j) = to.as_ref()
            && self.config.is_local_host(j.domain().as_str())
            && let Some(refusal) = modules::blocking::check(self, s, j, &el).await
        {
            if let Some(e) = refusal {
                s.send(&e);
            }
            return Ok(());
        }
        match kind {
            Kind::Iq => self.handle_iq(s, to, el, Origin::Client).await,
            Kind::Message => modules::message::from_client(self, s, to, el).await,
            Kind::Presence => modules::presence::from_client(self, s, to, el).await,
        }
        Ok(())
    }

    /// Handles one stanza from a connected component (`c`, whose host is
    /// its domain), already moved into `jabber:client`. It may name any
    /// address in its domain as `from` (none means the domain itself), must
    /// name a `to`, and is then routed like a local entity's stanza.
    pub async fn handle_component_stanza(
        &self,
        c: &Session,
        mut el: Element,
    ) -> Result<(), &'static str> {
        let Some(kind) = stanza::kind(&el) else {
            return Err("unsupported-stanza-type");
        };
        let from = match el.attr("from").map(Jid::new) {
            None => c.host.clone(),
            Some(Ok(j)) if j.domain().as_str() == c.host => j.as_str().to_owned(),
            Some(_) => return Err("invalid-from"),
        };
        el.set("from", &from);
        metrics::counter!("conclave_stanzas_in_total", "kind" => kind_label(kind)).increment(1);
        let to = match el.attr("to").map(Jid::new) {
            Some(Ok(j)) => j,
            None => {
                c.bounce(&el, "bad-request");
                return Ok(());
            }
            Some(Err(_)) => {
                c.bounce(&el, "jid-malformed");
                return Ok(());
            }
        };
        el.set("to", to.as_str());
        match self.domains.get(to.domain().as_str()) {
            Some(Domain::Component(slot)) => {
                slot.deliver(c, &el);
                return Ok(());
            }
            // In-process services know their users by session; a component
            // speaks for many addresses through one, so only what it says
            // as itself (its bare domain, the session's own address)
            // reaches them: a bridge joining the brewery room, answering
            // the focus.
            Some(Domain::Service(svc)) => {
                if from == c.host {
                    (svc.handle)(self, c, to, el).await;
                } else if kind != Kind::Presence {
                    c.bounce(&el, "service-unavailable");
                }
                return Ok(());
            }
            None => {}
        }
        // A user who blocked the component (its domain or one of its
        // addresses) hears nothing from it.
        if self.config.is_local_host(to.domain().as_str())
            && let Ok(from) = Jid::new(&from)
            && let Some(refusal) = modules::blocking::inbound(self, &from, &to, &el).await
        {
            if let Some(e) = refusal {
                c.send(&e);
            }
            return Ok(());
        }
        match kind {
            Kind::Iq => self.handle_iq(c, Some(to), el, Origin::Component).await,
            Kind::Message => modules::message::from_client(self, c, Some(to), el).await,
            Kind::Presence => modules::presence::from_component(self, c, &to, el),
        }
        Ok(())
    }

    async fn handle_iq(&self, s: &Session, to: Option<Jid>, el: Element, origin: Origin) {
        let ty = el.attr("type").unwrap_or("");
        let request = matches!(ty, "get" | "set");
        if !matches!(ty, "get" | "set" | "result" | "error") || el.attr("id").is_none() {
            if ty != "error" {
                s.send(&stanza::error_reply(&el, "bad-request", None));
            }
            return;
        }
        if request && el.children().count() != 1 {
            s.send(&stanza::error_reply(&el, "bad-request", None));
            return;
        }
        let (target, addressed, implicit) = match &to {
            None => (Target::Account, s.bare().to_owned(), true),
            Some(j) if !self.config.is_local_host(j.domain().as_str()) => {
                if request {
                    s.send(&stanza::error_reply(&el, "remote-server-not-found", None));
                }
                return;
            }
            Some(j) if j.node().is_none() => {
                if j.resource().is_some() {
                    if request {
                        s.send(&stanza::error_reply(&el, "service-unavailable", None));
                    }
                    return;
                }
                (Target::Server, j.as_str().to_owned(), false)
            }
            Some(j) if j.is_full() => {
                let bare = j.to_bare();
                match self.router.session(bare.as_str(), j.as_str()) {
                    Some(h) => {
                        h.send(stanza::to_bytes(&el));
                    }
                    None if request => {
                        s.send(&stanza::error_reply(&el, "service-unavailable", None))
                    }
                    None => {}
                }
                return;
            }
            Some(j) => (Target::Account, j.as_str().to_owned(), false),
        };
        if !request {
            // Results and errors addressed to the server or an account
            // answer the server's own requests, or nothing: then dropped.
            if let Some((callback, answer)) = self.requests.take(s.handle.id, &el) {
                callback(self, answer).await;
            }
            return;
        }
        let Some(payload_ns) = stanza::iq_payload(&el).map(Element::ns) else {
            s.send(&stanza::error_reply(&el, "bad-request", None));
            return;
        };
        if origin == Origin::Component && !COMPONENT_IQ.contains(&payload_ns.as_str()) {
            s.send(&stanza::error_reply(&el, "service-unavailable", None));
            return;
        }
        let handler = self
            .iq
            .get(&(target, payload_ns.as_str()))
            .or_else(|| {
                // An IQ without `to` is the account's; what the account does
                // not handle, the server does (RFC 6120 §10.3.3).
                implicit
                    .then(|| self.iq.get(&(Target::Server, payload_ns.as_str())))
                    .flatten()
            })
            .copied();
        let addressed = if implicit
            && handler.is_some()
            && !self.iq.contains_key(&(target, payload_ns.as_str()))
        {
            s.host.clone()
        } else {
            addressed
        };
        match handler {
            Some(h) => h(self, s, &addressed, el).await,
            None => s.send(&stanza::error_reply(&el, "service-unavailable", None)),
        }
    }

    /// Sends a stanza to every session in `targets`, serialised once.
    pub fn deliver(&self, targets: &[Arc<SessionHandle>], el: &Element) {
        if targets.is_empty() {
            return;
        }
        let bytes = stanza::to_bytes(el);
        self.deliver_bytes(targets, &bytes);
    }

    /// Sends a stanza built without `to` to every session in `targets`,
    /// serialised once: each session's writer adds its own address.
    pub fn deliver_addressed(&self, targets: &[Arc<SessionHandle>], el: &Element) {
        if targets.is_empty() {
            return;
        }
        let bytes = stanza::to_bytes(el);
        for t in targets {
            t.send_addressed(bytes.clone());
        }
        metrics::counter!("conclave_stanzas_out_total").increment(targets.len() as u64);
    }

    /// Like `deliver_bytes`, for presence and chat states: an inactive
    /// client (XEP-0352) gets them with its next important stanza.
    pub fn deliver_deferrable(&self, targets: &[Arc<SessionHandle>], bytes: &Bytes) {
        for t in targets {
            t.send_deferrable(bytes.clone());
        }
        metrics::counter!("conclave_stanzas_out_total").increment(targets.len() as u64);
    }

    pub fn deliver_bytes(&self, targets: &[Arc<SessionHandle>], bytes: &Bytes) {
        for t in targets {
            t.send(bytes.clone());
        }
        metrics::counter!("conclave_stanzas_out_total").increment(targets.len() as u64);
    }

    /// Whether a local account exists. Online users answer from memory.
    pub async fn user_exists(&self, bare: &str) -> bool {
        if self.router.is_online(bare) {
            return true;
        }
        let Some((user, host)) = bare.split_once('@') else {
            return false;
        };
        if self.config.is_guest_host(host) {
            return false;
        }
        self.store.user_exists(host, user).await.unwrap_or(false)
    }
}

/// The bare part of an address, without the allocation `Jid::to_bare`
/// makes: the per-message paths only compare and look up with it.
pub fn bare_of(j: &Jid) -> &str {
    let full = j.as_str();
    match j.resource() {
        Some(r) => &full[..full.len() - r.as_str().len() - 1],
        None => full,
    }
}

/// Presence subscriptions with components are not supported: they take the
/// roster path, which answers for a contact it does not know (RFC 6121
/// §3.1.3), so the user's roster stays consistent.
fn subscription_to_component(d: &Domain, kind: Kind, el: &Element) -> bool {
    matches!(d, Domain::Component(_))
        && kind == Kind::Presence
        && matches!(
            el.attr("type"),
            Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")
        )
}

fn kind_label(k: Kind) -> &'static str {
    match k {
        Kind::Message => "message",
        Kind::Presence => "presence",
        Kind::Iq => "iq",
    }
}
