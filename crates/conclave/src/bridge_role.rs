//! `conclave bridge`: the media bridge in a process of its own, as Jitsi
//! Videobridge runs beside Jicofo. It logs in to the server as an XEP-0114
//! component (`[bridge]` domain and secret), joins the brewery room
//! (`meetings.brewery_room`) with its stats in presence, refreshed every
//! `bridge.stats_interval_secs`, and turns the focus's colibri2 requests
//! into calls on [`Bridge`]. SIGUSR1 drains it: its presence says so, the
//! focus places no new conference on it, and it exits once its last
//! conference ends. `/metrics`, `/health` and the bridge channel are on its
//! plain-HTTP port (`bridge.http_*`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use conclave_bridge::Bridge;
use conclave_bridge::api::{BridgeEvent, EndpointKey, EndpointSources, Expiry};
use conclave_bridge::relay_key;
use conclave_focus::colibri2::{
    self, BridgeStats, ConferenceModify, EndpointModified, Modified, NS_COLIBRI2,
};
use conclave_server::Config;
use conclave_server::config::BridgeRole;
use metrics_exporter_prometheus::PrometheusHandle;
use minidom::Element;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use xmpp_core::framing::{Frame, StreamParser};
use xmpp_core::ns;
use xmpp_core::stanza::{self, ElementExt};

/// Largest stanza taken from the server (a colibri2 request for a whole
/// conference is a few KB per endpoint).
const MAX_STANZA: usize = 1 << 20;

/// The conferences the focus made here, by colibri2 meeting id.
#[derive(Default)]
pub struct Conferences {
    by_meeting: HashMap<String, Conf>,
}

struct Conf {
    name: String,
    endpoints: HashSet<String>,
    /// Relays to other bridges (cascading), by the id the focus gave
    /// them, with the endpoints behind each and what they send: the relay
    /// sends all of that here.
    relays: HashMap<String, HashMap<String, EndpointSources>>,
}

impl Conf {
    fn expire_all(self, api: &dyn Api) {
        for id in self.endpoints {
            api.expire(&EndpointKey {
                conference: self.name.clone(),
                endpoint: id,
            });
        }
        for id in self.relays.keys() {
            api.expire(&relay_key(&self.name, id));
        }
    }
}

/// What the bridge is asked to do, as [`Bridge`] does it (a fake in
/// tests).
pub trait Api {
    fn allocate(&self, key: &EndpointKey) -> conclave_bridge::api::LocalTransport;
    fn allocate_relay(
        &self,
        key: &EndpointKey,
        controlling: bool,
    ) -> conclave_bridge::api::LocalTransport;
    fn connect(&self, key: &EndpointKey, t: conclave_bridge::api::RemoteTransport);
    fn set_sources(&self, key: &EndpointKey, s: conclave_bridge::api::EndpointSources);
    fn mute(&self, key: &EndpointKey, kind: conclave_bridge::api::MediaKind, muted: bool);
    fn expire(&self, key: &EndpointKey);
    fn restart_ice(&self, key: &EndpointKey) -> conclave_bridge::api::LocalTransport;
}

impl Api for Bridge {
    fn allocate(&self, key: &EndpointKey) -> conclave_bridge::api::LocalTransport {
        Bridge::allocate(self, key)
    }
    fn allocate_relay(
        &self,
        key: &EndpointKey,
        controlling: bool,
    ) -> conclave_bridge::api::LocalTransport {
        Bridge::allocate_relay(self, key, controlling)
    }
    fn connect(&self, key: &EndpointKey, t: conclave_bridge::api::RemoteTransport) {
        Bridge::connect(self, key, t)
    }
    fn set_sources(&self, key: &EndpointKey, s: conclave_bridge::api::EndpointSources) {
        Bridge::set_sources(self, key, s)
    }
    fn mute(&self, key: &EndpointKey, kind: conclave_bridge::api::MediaKind, muted: bool) {
        Bridge::mute(self, key, kind, muted)
    }
    fn expire(&self, key: &EndpointKey) {
        Bridge::expire(self, key)
    }
    fn restart_ice(&self, key: &EndpointKey) -> conclave_bridge::api::LocalTransport {
        Bridge::restart_ice(self, key)
    }
}

/// Why a request was refused: the IQ error condition and a text.
pub type Refusal = (&'static str, String);

impl Conferences {
    pub fn count(&self) -> usize {
        self.by_meeting.len()
    }

    pub fn endpoints(&self) -> usize {
        self.by_meeting.values().map(|c| c.endpoints.len()).sum()
    }

    /// Carries out one `<conference-modify>`: checked whole first, so a
    /// refused request changes nothing.
    pub fn apply(&mut self, api: &dyn Api, req: ConferenceModify) -> Result<Modified, Refusal> {
        if !self.by_meeting.contains_key(&req.meeting_id) {
            if !req.create {
                return Err(("item-not-found", "no such conference".into()));
            }
            if self.by_meeting.values().any(|c| c.name == req.name) {
                return Err(("conflict", "that room has a conference here already".into()));
            }
        }
        // Anything named that is not created here must exist already.
        let existing = self.by_meeting.get(&req.meeting_id);
        if let Some(e) = req.endpoints.iter().find(|e| {
            !e.create && !e.expire && !existing.is_some_and(|c| c.endpoints.contains(&e.id))
        }) {
            return Err(("item-not-found", format!("no endpoint {:?}", e.id)));
        }
        if let Some(r) = req.relays.iter().find(|r| {
            !r.create && !r.expire && !existing.is_some_and(|c| c.relays.contains_key(&r.id))
        }) {
            return Err(("item-not-found", format!("no relay {:?}", r.id)));
        }
        let conf = self
            .by_meeting
            .entry(req.meeting_id.clone())
            .or_insert_with(|| Conf {
                name: req.name.clone(),
                endpoints: HashSet::new(),
                relays: HashMap::new(),
            });
        let mut out = Vec::new();
        for e in req.endpoints {
            let key = EndpointKey {
                conference: conf.name.clone(),
                endpoint: e.id.clone(),
            };
            if e.expire {
                if conf.endpoints.remove(&e.id) {
                    api.expire(&key);
                }
                continue;
            }
            let mut transport = None;
            if e.create {
                transport = Some(api.allocate(&key));
                conf.endpoints.insert(e.id.clone());
            }
            if let Some(t) = e.transport {
                api.connect(&key, t);
            }
            if e.ice_restart && !e.create {
                transport = Some(api.restart_ice(&key));
            }
            if let Some(s) = e.sources {
                api.set_sources(&key, s);
            }
            for (kind, muted) in e.force_mute {
                api.mute(&key, kind, muted);
            }
            out.push(EndpointModified {
                id: e.id,
                transport,
            });
        }
        let mut relays = Vec::new();
        for r in req.relays {
            let key = relay_key(&conf.name, &r.id);
            if r.expire {
                if conf.relays.remove(&r.id).is_some() {
                    api.expire(&key);
                }
                continue;
            }
            let mut transport = None;
            if r.create {
                transport = Some(api.allocate_relay(&key, r.ice_controlling));
                conf.relays.insert(r.id.clone(), HashMap::new());
            }
            if let Some(t) = r.transport {
                api.connect(&key, t);
            }
            if let Some(behind) = conf.relays.get_mut(&r.id)
                && !r.endpoints.is_empty()
            {
                for e in r.endpoints {
                    if e.expire {
                        behind.remove(&e.id);
                    } else if let Some(s) = e.sources {
                        behind.insert(e.id, s);
                    }
                }
                // The relay sends what every endpoint behind it sends.
                let mut all = EndpointSources::default();
                for s in behind.values() {
                    all.sources.extend(s.sources.iter().cloned());
                    all.groups.extend(s.groups.iter().cloned());
                }
                api.set_sources(&key, all);
            }
            relays.push(EndpointModified {
                id: r.id,
                transport,
            });
        }
        if req.expire
            && let Some(conf) = self.by_meeting.remove(&req.meeting_id)
        {
            conf.expire_all(api);
        }
        Ok(Modified {
            endpoints: out,
            relays,
        })
    }

    /// The bridge dropped an endpoint on its own (it went silent); a
    /// conference left with none is over.
    fn endpoint_gone(&mut self, key: &EndpointKey) {
        self.by_meeting.retain(|_, c| {
            if c.name == key.conference {
                c.endpoints.remove(&key.endpoint);
                return !c.endpoints.is_empty();
            }
            true
        });
    }

    /// Ends every conference: after a new connection to the server, since
    /// the focus moved them elsewhere when the old one ended.
    fn clear(&mut self, api: &dyn Api) {
        for (_, c) in self.by_meeting.drain() {
            c.expire_all(api);
        }
    }
}

struct Host {
    bridge: Arc<Bridge>,
    conferences: std::sync::Mutex<Conferences>,
    draining: AtomicBool,
    /// Something the brewery should hear of at once (drain, a conference
    /// gone).
    changed: tokio::sync::Notify,
    capacity_pps: f64,
    max_sources: usize,
}

impl Host {
    fn conferences(&self) -> std::sync::MutexGuard<'_, Conferences> {
        self.conferences.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stats(&self) -> BridgeStats {
        let packets: f64 = self
            .bridge
            .conference_stats()
            .iter()
            .map(|c| c.packets_in + c.packets_out)
            .sum();
        let c = self.conferences();
        BridgeStats {
            stress: (packets / self.capacity_pps).max(0.0),
            conferences: c.count(),
            endpoints: c.endpoints(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            drain: self.draining.load(Ordering::SeqCst),
            media_ip: None,
        }
    }

    /// Draining and nothing left to serve.
    fn done(&self) -> bool {
        self.draining.load(Ordering::SeqCst) && self.conferences().count() == 0
    }
}

pub async fn run(cfg: Config, focus: Option<String>) -> Result<(), String> {
    crate::init_logging(&cfg.log.level);
    crate::seed_random()?;
    let b = cfg.bridge.clone();
    if b.domain.is_empty() || b.secret.is_empty() {
        return Err("`bridge.domain` and `bridge.secret` must name one of the server's components (its `components.list`)".into());
    }
    if b.stats_interval_secs == 0 {
        return Err("`bridge.stats_interval_secs` must be at least 1".into());
    }
    let host_name = cfg.hosts.first().cloned().unwrap_or_default();
    let focus = focus
        .filter(|f| !f.is_empty())
        .or_else(|| Some(b.focus.clone()).filter(|f| !f.is_empty()))
        .unwrap_or_else(|| format!("focus.{host_name}"));
    let focus = jid::BareJid::new(&focus)
        .map_err(|e| format!("--focus {focus:?} is not a JID: {e}"))?
        .to_string();
    let brewery = cfg.brewery_room();
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
        .ok();
    let public = if b.public_url.is_empty() {
        format!("ws://{}", SocketAddr::new(b.http_bind, b.http_port))
    } else {
        b.public_url.trim_end_matches('/').to_owned()
    };
    let bridge = crate::start_bridge(&cfg.meetings, public).await?;
    let host = Arc::new(Host {
        bridge: bridge.clone(),
        conferences: Default::default(),
        draining: AtomicBool::new(false),
        changed: tokio::sync::Notify::new(),
        capacity_pps: f64::from(cfg.meetings.capacity_packets_per_second.max(1)),
        max_sources: cfg.meetings.max_sources_per_participant,
    });
    if b.http_port != 0 {
        let addr = SocketAddr::new(b.http_bind, b.http_port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen for HTTP on {addr} (`bridge.http_port`): {e}"))?;
        tracing::info!(%addr, "listening for HTTP (metrics, bridge channel)");
        let app = Router::new()
            .route("/health", get(|| async { "ok\n" }))
            .route("/metrics", get(render_metrics))
            .with_state((metrics, host.clone()))
            .merge(crate::colibri_ws::routes(bridge.clone()));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "HTTP stopped");
            }
        });
    }
    {
        let host = host.clone();
        let events = bridge.events();
        tokio::spawn(async move {
            while let Ok(e) = events.recv_async().await {
                let BridgeEvent::EndpointExpired { key, reason, .. } = e;
                if reason == Expiry::Timeout {
                    host.conferences().endpoint_gone(&key);
                    host.changed.notify_one();
                }
            }
        });
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut usr1 =
            signal(SignalKind::user_defined1()).map_err(|e| format!("cannot take SIGUSR1: {e}"))?;
        let host = host.clone();
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                tracing::info!("draining: no new conferences; exiting after the last one");
                host.draining.store(true, Ordering::SeqCst);
                metrics::gauge!("conclave_bridge_draining").set(1.0);
                host.changed.notify_one();
            }
        });
    }
    metrics::gauge!("conclave_bridge_draining").set(0.0);
    tracing::info!(domain = %b.domain, %focus, %brewery, "bridge up");
    let mut stop = tokio::spawn(crate::wait_for_signal());
    loop {
        let link = Link {
            cfg: &b,
            focus: &focus,
            brewery: &brewery,
            host: &host,
        };
        tokio::select! {
            r = link.run() => match r {
                Ok(()) => {
                    tracing::info!("drained: no conferences left, exiting");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, server = %b.server, "no connection to the server; trying again in 1 s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = &mut stop => break,
                    }
                }
            },
            _ = &mut stop => break,
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn render_metrics(
    State((metrics, host)): State<(Option<PrometheusHandle>, Arc<Host>)>,
) -> Response {
    let Some(h) = metrics else {
        return (axum::http::StatusCode::NOT_FOUND, "metrics are off\n").into_response();
    };
    let s = host.stats();
    let body = format!(
        "{}# TYPE conclave_bridge_colibri2_conferences gauge\nconclave_bridge_colibri2_conferences {}\n{}",
        h.render(),
        s.conferences,
        crate::http::bridge_metrics(&host.bridge),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// One connection to the server, as a component.
struct Link<'a> {
    cfg: &'a BridgeRole,
    focus: &'a str,
    brewery: &'a str,
    host: &'a Arc<Host>,
}

struct Reader {
    rd: OwnedReadHalf,
    parser: StreamParser,
    frames: VecDeque<Frame>,
    buf: Vec<u8>,
}

impl Reader {
    async fn next(&mut self) -> Result<Frame, String> {
        loop {
            if let Some(f) = self.frames.pop_front() {
                return Ok(f);
            }
            let n = self
                .rd
                .read(&mut self.buf)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            self.parser
                .feed(&self.buf[..n], &mut self.frames)
                .map_err(|e| format!("bad XML from the server: {}", e.condition()))?;
        }
    }
}

async fn send(wr: &mut OwnedWriteHalf, el: &Element) -> Result<(), String> {
    let xml = stanza::to_bytes(el);
    let xml = match xmpp_core::component::client_ns_span(&xml) {
        Some((a, b)) => [&xml[..a], xmpp_core::component::NS.as_bytes(), &xml[b..]].concat(),
        None => xml.to_vec(),
    };
    wr.write_all(&xml).await.map_err(|e| e.to_string())
}

impl Link<'_> {
    /// Runs until the connection fails (`Err`) or the drain is done.
    async fn run(&self) -> Result<(), String> {
        let tcp = TcpStream::connect(&self.cfg.server)
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let (rd, mut wr) = tcp.into_split();
        wr.write_all(
            format!(
                "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' to='{}'>",
                xmpp_core::component::NS,
                ns::STREAM,
                stanza::escape(&self.cfg.domain)
            )
            .as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut reader = Reader {
            rd,
            parser: StreamParser::new(MAX_STANZA),
            frames: VecDeque::new(),
            buf: vec![0; 16 * 1024],
        };
        let id = match reader.next().await? {
            Frame::Open(h) => h.id.ok_or("the server's stream header has no id")?,
            _ => return Err("no stream header from the server".into()),
        };
        let digest = xmpp_core::component::handshake_digest(&id, &self.cfg.secret);
        wr.write_all(format!("<handshake>{digest}</handshake>").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        match reader.next().await? {
            Frame::Stanza(el) if el.name() == "handshake" => {}
            Frame::Stanza(el) if el.name() == "error" => {
                let why = el.children().next().map(|c| c.name().to_owned());
                return Err(format!(
                    "the server refused the component: {}",
                    why.as_deref().unwrap_or("stream error")
                ));
            }
            _ => return Err("the server refused the component".into()),
        }
        tracing::info!(domain = %self.cfg.domain, "connected to the server");
        // The focus moved what was here when the last connection ended.
        self.host.conferences().clear(&*self.host.bridge);
        let occupant = format!("{}/{}", self.brewery, self.cfg.domain);
        self.presence(&mut wr, &occupant, true).await?;
        let mut tick = tokio::time::interval(Duration::from_secs(self.cfg.stats_interval_secs));
        tick.tick().await;
        loop {
            if self.host.done() {
                let bye = Element::bare("presence", ns::CLIENT)
                    .with("to", &occupant)
                    .with("type", "unavailable");
                let _ = send(&mut wr, &bye).await;
                let _ = wr.write_all(b"</stream:stream>").await;
                return Ok(());
            }
            tokio::select! {
                f = reader.next() => match f? {
                    Frame::Stanza(el) => {
                        let el = xmpp_core::component::to_client_ns(el);
                        for out in self.stanza(&el) {
                            send(&mut wr, &out).await?;
                        }
                    }
                    Frame::Close => return Err("the server closed the stream".into()),
                    Frame::Open(_) => return Err("a second stream header".into()),
                },
                _ = tick.tick() => self.presence(&mut wr, &occupant, false).await?,
                _ = self.host.changed.notified() => self.presence(&mut wr, &occupant, false).await?,
            }
        }
    }

    /// The bridge's presence in the brewery, with its stats.
    async fn presence(
        &self,
        wr: &mut OwnedWriteHalf,
        occupant: &str,
        join: bool,
    ) -> Result<(), String> {
        let mut p = Element::bare("presence", ns::CLIENT)
            .with("to", occupant)
            .with("from", &self.cfg.domain);
        if join {
            p.append_child(Element::bare("x", ns::MUC));
        }
        p.append_child(colibri2::stats_element(&self.host.stats()));
        send(wr, &p).await
    }

    /// What to answer one stanza from the server.
    fn stanza(&self, el: &Element) -> Vec<Element> {
        match el.name() {
            "iq" => {}
            "presence" => return self.brewery_presence(el),
            _ => return Vec::new(),
        }
        if !matches!(el.attr("type"), Some("get" | "set")) {
            return Vec::new();
        }
        let mut reply = self.iq(el);
        // Answer from the address it was sent to (the component's).
        reply.set("from", &self.cfg.domain);
        vec![reply]
    }

    fn iq(&self, el: &Element) -> Element {
        let Some(req) = el.get_child("conference-modify", NS_COLIBRI2) else {
            return stanza::error_reply(el, "service-unavailable", None);
        };
        // Only the focus drives this bridge.
        let from_focus = el
            .attr("from")
            .and_then(|f| jid::Jid::new(f).ok())
            .is_some_and(|j| j.to_bare().as_str() == self.focus);
        if !from_focus {
            return stanza::error_reply(el, "forbidden", None);
        }
        if el.attr("type") != Some("set") {
            return stanza::error_reply(el, "bad-request", None);
        }
        let req = match colibri2::parse_modify(req, self.host.max_sources) {
            Ok(r) => r,
            Err(e) => return stanza::error_reply(el, "bad-request", Some(&e.to_string())),
        };
        let meeting_id = req.meeting_id.clone();
        let (result, counted) = {
            let mut c = self.host.conferences();
            let before = (c.count(), c.endpoints());
            let r = c.apply(&*self.host.bridge, req);
            (r, before != (c.count(), c.endpoints()))
        };
        match result {
            Ok(eps) => {
                // The brewery hears of new counts at once, of the rest
                // with the next stats.
                if counted {
                    self.host.changed.notify_one();
                }
                let mut reply = stanza::iq_result(el);
                reply.append_child(colibri2::modified(&meeting_id, &eps));
                reply
            }
            Err((condition, text)) => stanza::error_reply(el, condition, Some(&text)),
        }
    }

    /// The brewery room's presence: if this bridge made the room (the
    /// focus was not there yet), it configures it as the focus would.
    fn brewery_presence(&self, el: &Element) -> Vec<Element> {
        let created = el.get_child("x", ns::MUC_USER).is_some_and(|x| {
            let codes: Vec<_> = x
                .children()
                .filter(|c| c.is("status", ns::MUC_USER))
                .filter_map(|c| c.attr("code"))
                .collect();
            codes.contains(&"201") && codes.contains(&"110")
        });
        if !created {
            return Vec::new();
        }
        let iq =
            colibri2::brewery_config(self.brewery, "brewery-config").with("from", &self.cfg.domain);
        vec![iq]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_bridge::api::{
        EndpointSources, Fingerprint, LocalTransport, MediaKind, RemoteTransport,
    };
    use conclave_focus::colibri2::EndpointModify;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Fake(RefCell<Vec<String>>);

    fn transport(ufrag: &str) -> LocalTransport {
        LocalTransport {
            ufrag: ufrag.into(),
            pwd: "p".into(),
            fingerprint: Fingerprint {
                hash: "sha-256".into(),
                value: "AA".into(),
                setup: "actpass".into(),
            },
            candidates: Vec::new(),
            websocket_url: String::new(),
        }
    }

    impl Api for Fake {
        fn allocate(&self, key: &EndpointKey) -> LocalTransport {
            self.0
                .borrow_mut()
                .push(format!("allocate {}", key.endpoint));
            transport("a")
        }
        fn allocate_relay(&self, key: &EndpointKey, controlling: bool) -> LocalTransport {
            self.0
                .borrow_mut()
                .push(format!("relay {} {controlling}", key.endpoint));
            transport("rl")
        }
        fn connect(&self, key: &EndpointKey, _: RemoteTransport) {
            self.0
                .borrow_mut()
                .push(format!("connect {}", key.endpoint));
        }
        fn set_sources(&self, key: &EndpointKey, s: EndpointSources) {
            self.0
                .borrow_mut()
                .push(format!("sources {} {}", key.endpoint, s.sources.len()));
        }
        fn mute(&self, key: &EndpointKey, kind: MediaKind, muted: bool) {
            self.0
                .borrow_mut()
                .push(format!("mute {} {kind:?} {muted}", key.endpoint));
        }
        fn expire(&self, key: &EndpointKey) {
            self.0.borrow_mut().push(format!("expire {}", key.endpoint));
        }
        fn restart_ice(&self, key: &EndpointKey) -> LocalTransport {
            self.0
                .borrow_mut()
                .push(format!("restart {}", key.endpoint));
            transport("r")
        }
    }

    fn req(create: bool, expire: bool, endpoints: Vec<EndpointModify>) -> ConferenceModify {
        ConferenceModify {
            meeting_id: "m1".into(),
            name: "room@conference.localhost".into(),
            create,
            expire,
            endpoints,
            relays: Vec::new(),
        }
    }

    fn ep(id: &str) -> EndpointModify {
        EndpointModify {
            id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn colibri2_becomes_bridge_calls_and_unknown_names_change_nothing() {
        let api = Fake::default();
        let mut c = Conferences::default();
        // an unknown conference, or one not created, is not found
        let e = c.apply(&api, req(false, false, vec![ep("a")])).unwrap_err();
        assert_eq!(e.0, "item-not-found");
        let out = c
            .apply(
                &api,
                req(
                    true,
                    false,
                    vec![EndpointModify {
                        create: true,
                        ..ep("a")
                    }],
                ),
            )
            .unwrap();
        assert_eq!(
            out.endpoints[0]
                .transport
                .as_ref()
                .map(|t| t.ufrag.as_str()),
            Some("a")
        );
        assert_eq!((c.count(), c.endpoints()), (1, 1));
        // an endpoint it never made is not found, and nothing else happens
        let before = api.0.borrow().len();
        let e = c
            .apply(
                &api,
                req(
                    false,
                    false,
                    vec![
                        EndpointModify {
                            sources: Some(EndpointSources::default()),
                            ..ep("a")
                        },
                        ep("nobody"),
                    ],
                ),
            )
            .unwrap_err();
        assert_eq!(e.0, "item-not-found");
        assert_eq!(api.0.borrow().len(), before);
        let out = c
            .apply(
                &api,
                req(
                    false,
                    false,
                    vec![EndpointModify {
                        transport: Some(RemoteTransport::default()),
                        sources: Some(EndpointSources::default()),
                        ice_restart: true,
                        force_mute: vec![(MediaKind::Audio, true)],
                        ..ep("a")
                    }],
                ),
            )
            .unwrap();
        assert_eq!(
            out.endpoints[0]
                .transport
                .as_ref()
                .map(|t| t.ufrag.as_str()),
            Some("r")
        );
        // the conference ends with its expiry
        c.apply(&api, req(false, true, Vec::new())).unwrap();
        assert_eq!(c.count(), 0);
        assert_eq!(
            *api.0.borrow(),
            [
                "allocate a",
                "connect a",
                "restart a",
                "sources a 0",
                "mute a Audio true",
                "expire a"
            ]
        );
    }

    #[test]
    fn a_relay_sends_what_every_endpoint_behind_it_sends() {
        use conclave_bridge::api::Source;
        use conclave_focus::colibri2::{RelayEndpoint, RelayModify};
        let api = Fake::default();
        let mut c = Conferences::default();
        let sources = |ssrc| EndpointSources {
            sources: vec![Source {
                ssrc,
                kind: MediaKind::Audio,
                name: None,
                msid: None,
                video_type: None,
            }],
            groups: Vec::new(),
        };
        let behind = |id: &str, ssrc: Option<u32>| RelayEndpoint {
            id: id.into(),
            expire: ssrc.is_none(),
            sources: ssrc.map(sources),
        };
        // a relay to a bridge the conference has not been told of is no
        // relay, and is refused
        let mut r = req(true, false, Vec::new());
        r.relays = vec![RelayModify {
            id: "jvb2".into(),
            ..Default::default()
        }];
        assert_eq!(c.apply(&api, r).unwrap_err().0, "item-not-found");
        let mut r = req(true, false, Vec::new());
        r.relays = vec![RelayModify {
            id: "jvb2".into(),
            create: true,
            ice_controlling: true,
            transport: Some(RemoteTransport::default()),
            endpoints: vec![behind("x", Some(1)), behind("y", Some(2))],
            ..Default::default()
        }];
        let out = c.apply(&api, r).unwrap();
        assert_eq!(out.relays[0].id, "jvb2");
        assert_eq!(
            out.relays[0].transport.as_ref().map(|t| t.ufrag.as_str()),
            Some("rl")
        );
        // relays are no participants
        assert_eq!((c.count(), c.endpoints()), (1, 0));
        let mut r = req(false, false, Vec::new());
        r.relays = vec![RelayModify {
            id: "jvb2".into(),
            endpoints: vec![behind("x", None)],
            ..Default::default()
        }];
        c.apply(&api, r).unwrap();
        c.apply(&api, req(false, true, Vec::new())).unwrap();
        let relay = "\u{1}relay:jvb2";
        assert_eq!(
            *api.0.borrow(),
            [
                format!("relay {relay} true"),
                format!("connect {relay}"),
                format!("sources {relay} 2"),
                format!("sources {relay} 1"),
                format!("expire {relay}"),
            ]
        );
    }
}
