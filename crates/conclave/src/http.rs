//! HTTPS: `/health`, `/metrics`, WebSocket, BOSH, XEP-0363 uploads and
//! invitation pages, on one TLS port.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use conclave_server::Server;
use conclave_server::limits::ConnLimiter;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::Live;
use crate::bosh::Bosh;
use crate::ws::{WsLimits, WsTransport};

#[derive(Clone)]
struct App {
    server: Arc<Server>,
    metrics: Option<PrometheusHandle>,
    bosh: Arc<Bosh>,
    /// Sessions per address, shared with the client ports: a WebSocket or
    /// BOSH session holds a slot for its whole life.
    sessions: ConnLimiter,
}

/// The client's address, for per-address limits.
#[derive(Clone, Copy)]
pub(crate) struct Peer(pub(crate) IpAddr);

/// `sessions` is the per-address limiter of the client ports: WebSocket
/// and BOSH sessions count in it with TCP streams.
pub fn router(
    server: Arc<Server>,
    metrics: Option<PrometheusHandle>,
    sessions: ConnLimiter,
) -> Router {
    let ws_path = server.config.http.websocket_path.clone();
    let bosh_path = server.config.http.bosh_path.clone();
    let mut r = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(render_metrics))
        .route(&ws_path, get(websocket))
        .route(&bosh_path, post(bosh));
    if server.config.upload_enabled() {
        r = r.merge(crate::upload::routes(server.clone()));
    }
    r = r.merge(crate::invite_page::routes(server.clone()));
    if let Some(bridge) = server.extension::<conclave_bridge::Bridge>() {
        r = r.merge(crate::colibri_ws::routes(bridge));
    }
    // The meeting page goes with the focus, wherever the bridges run.
    if server.config.meetings.enabled {
        r = r.merge(crate::meet_page::routes(server.clone()));
    }
    r.with_state(App {
        server,
        metrics,
        bosh: Arc::new(Bosh::new(sessions.clone())),
        sessions,
    })
}

async fn health(State(app): State<App>) -> Response {
    if app.server.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn render_metrics(State(app): State<App>) -> Response {
    match &app.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            format!(
                "{}# TYPE conclave_sessions_bound gauge\nconclave_sessions_bound {}\n{}",
                h.render(),
                app.server.router.count(),
                conference_metrics(&app.server),
            ),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are off\n").into_response(),
    }
}

/// Each live meeting's figures, written here rather than as labelled
/// gauges so that a meeting that ended leaves no series behind. Meetings
/// are named by an opaque id (see `conclave_bridge::api::ConferenceStats`).
fn conference_metrics(server: &Server) -> String {
    match server.extension::<conclave_bridge::Bridge>() {
        Some(bridge) => bridge_metrics(&bridge),
        None => String::new(),
    }
}

/// The bridge's per-meeting figures (see [`conference_metrics`]).
pub fn bridge_metrics(bridge: &conclave_bridge::Bridge) -> String {
    use std::fmt::Write;
    let stats = bridge.conference_stats();
    let mut out = String::new();
    type Pick = fn(&conclave_bridge::api::ConferenceStats) -> [(&'static str, f64); 2];
    let families: [(&str, &str, Pick); 3] = [
        ("conclave_meeting_bitrate_bps", "bits per second", |s| {
            [("in", s.bitrate_in), ("out", s.bitrate_out)]
        }),
        (
            "conclave_meeting_packet_rate",
            "RTP packets per second",
            |s| [("in", s.packets_in), ("out", s.packets_out)],
        ),
        (
            "conclave_meeting_loss_ratio",
            "fraction of packets lost",
            |s| [("in", s.loss_in), ("out", s.loss_out)],
        ),
    ];
    let _ = writeln!(
        out,
        "# HELP conclave_meeting_endpoints participants with media, per meeting"
    );
    let _ = writeln!(out, "# TYPE conclave_meeting_endpoints gauge");
    for s in &stats {
        let _ = writeln!(
            out,
            "conclave_meeting_endpoints{{conference=\"{}\"}} {}",
            s.id, s.endpoints
        );
    }
    for (name, help, get) in families {
        let _ = writeln!(out, "# HELP {name} {help}, per meeting and direction");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for s in &stats {
            for (dir, v) in get(s) {
                let _ = writeln!(
                    out,
                    "{name}{{conference=\"{}\",direction=\"{dir}\"}} {v}",
                    s.id
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP conclave_meeting_estimate_bps the lowest bandwidth estimate among a meeting's receivers, bits per second"
    );
    let _ = writeln!(out, "# TYPE conclave_meeting_estimate_bps gauge");
    for s in &stats {
        if let Some(e) = s.estimate_min {
            let _ = writeln!(
                out,
                "conclave_meeting_estimate_bps{{conference=\"{}\"}} {e}",
                s.id
            );
        }
    }
    out
}

/// RFC 6455 §4.2: the GUID the accept key is derived with.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether a comma-separated header lists `token` (case-insensitively).
fn lists(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// RFC 6455 §4.2.2: `Sec-WebSocket-Accept` for a client's key.
pub(crate) fn accept_key(key: &[u8]) -> String {
    let mut input = Vec::with_capacity(key.len() + WS_GUID.len());
    input.extend_from_slice(key);
    input.extend_from_slice(WS_GUID);
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(d.as_ref())
}

/// Whether the request asks for a WebSocket (RFC 6455 §4.2.1), version 13.
pub(crate) fn is_websocket_upgrade(h: &HeaderMap) -> bool {
    lists(h, header::CONNECTION, "upgrade")
        && lists(h, header::UPGRADE, "websocket")
        && h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) == Some(b"13")
}

/// RFC 7395 §3.1 over RFC 6455 §4.2: the upgrade, answered here rather
/// than by axum so that the connection's bytes can be watched (see
/// `ws::Watched`). Everything is checked before `101` is sent.
async fn websocket(
    State(app): State<App>,
    Extension(Peer(ip)): Extension<Peer>,
    mut req: Request,
) -> Response {
    let h = req.headers();
    // A plain GET (no upgrade asked) is lib-jitsi-meet's keep-alive: every
    // 60-120 s it fetches the WebSocket's own URL over HTTPS
    // (`XmppConnection.ts`) and logs an error on anything but a 2xx. It is
    // answered with a small 200 that nothing caches.
    if !h.contains_key(header::UPGRADE) && !lists(h, header::CONNECTION, "upgrade") {
        return (
            StatusCode::OK,
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            ],
            "XMPP over WebSocket (RFC 7395): connect with the subprotocol `xmpp`\n",
        )
            .into_response();
    }
    if !lists(h, header::CONNECTION, "upgrade") || !lists(h, header::UPGRADE, "websocket") {
        return (
            StatusCode::UPGRADE_REQUIRED,
            [(header::UPGRADE, "websocket")],
            "WebSocket upgrade required\n",
        )
            .into_response();
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return (
            StatusCode::UPGRADE_REQUIRED,
            [(header::SEC_WEBSOCKET_VERSION, "13")],
            "WebSocket version 13 required\n",
        )
            .into_response();
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY).filter(|k| !k.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "no Sec-WebSocket-Key\n").into_response();
    };
    // RFC 7395 §3.1: the client must offer `xmpp`; a WebSocket that is not
    // XMPP is not served (Prosody answers 501 as well).
    if !h
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|p| p.trim_ascii() == b"xmpp")
    {
        return (
            StatusCode::NOT_IMPLEMENTED,
            "the WebSocket subprotocol `xmpp` is required\n",
        )
            .into_response();
    }
    let limits = &app.server.config.limits;
    // The session's slot in the per-address limit, held until it ends.
    // Refused here with 429 (RFC 6585) rather than with a policy-violation
    // stream error after the upgrade: nothing of a WebSocket or a session
    // is set up for a client over its limit, and the refusal is one
    // small HTTP answer.
    let Some(guard) = app.sessions.acquire(ip, limits.max_connections_per_ip) else {
        tracing::info!(peer = %ip, "too many sessions from this address (websocket)");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from your address\n",
        )
            .into_response();
    };
    let accept = accept_key(key.as_bytes());
    let ws_limits = WsLimits {
        max: limits.max_stanza_bytes,
        depth: limits.max_depth,
        message_timeout: std::time::Duration::from_secs(limits.ws_message_timeout_secs),
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let server = app.server.clone();
    let pace = conclave_server::limits::Pace::new(conclave_server::limits::Throttle::new(
        limits,
        &server.rates,
        ip,
    ));
    tokio::spawn(async move {
        let _guard = guard;
        let Ok(io) = upgrade.await else {
            return;
        };
        let t = WsTransport::new(io, ip, ws_limits, pace).await;
        conclave_server::session::run(server, t).await;
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, "upgrade".to_owned()),
            (header::UPGRADE, "websocket".to_owned()),
            (header::SEC_WEBSOCKET_ACCEPT, accept),
            (header::SEC_WEBSOCKET_PROTOCOL, "xmpp".to_owned()),
        ],
    )
        .into_response()
}

async fn bosh(
    State(app): State<App>,
    Extension(Peer(ip)): Extension<Peer>,
    body: Bytes,
) -> Response {
    let out = app.bosh.request(&app.server, ip, &body).await;
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], out).into_response()
}

/// `conns` counts HTTPS connections per address, apart from sessions: a
/// connection holds its slot while it is HTTP (its TLS handshake, its
/// requests, a keep-alive that carries BOSH requests). One upgraded to a
/// WebSocket gives it back, its session holding a slot of the session
/// limiter instead.
pub async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    conns: ConnLimiter,
    live: Live,
) {
    let mut shutdown = server.shutdown_signal();
    loop {
        let (tcp, addr): (_, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
            _ = shutdown.changed() => return,
        };
        let Some(guard) = conns.acquire(addr.ip(), server.config.limits.max_connections_per_ip)
        else {
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone().layer(Extension(Peer(addr.ip())));
        let token = live.enter();
        let timeout = server.config.limits.unauthenticated_timeout_secs;
        let mut stop = server.shutdown_signal();
        tokio::spawn(async move {
            let _guard = guard;
            let _token = token;
            let Ok(Ok(tls)) = tokio::time::timeout(
                std::time::Duration::from_secs(timeout),
                acceptor.accept(tcp),
            )
            .await
            else {
                return;
            };
            let svc = TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            // On shutdown an idle keep-alive connection closes at once and a
            // busy one after its response, instead of holding the process.
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}
