//! HTTPS: `/health`, `/metrics`, WebSocket, BOSH, XEP-0363 uploads and
//! invitation pages, on one TLS port.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use conclave_server::Server;
use conclave_server::limits::ConnLimiter;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::Live;
use crate::bosh::Bosh;
use crate::ws::WsTransport;

#[derive(Clone)]
struct App {
    server: Arc<Server>,
    metrics: Option<PrometheusHandle>,
    bosh: Arc<Bosh>,
}

/// The client's address, for per-address limits.
#[derive(Clone, Copy)]
pub(crate) struct Peer(pub(crate) IpAddr);

pub fn router(server: Arc<Server>, metrics: Option<PrometheusHandle>) -> Router {
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
    r.with_state(App {
        server,
        metrics,
        bosh: Arc::new(Bosh::default()),
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
                "{}# TYPE conclave_sessions_bound gauge\nconclave_sessions_bound {}\n",
                h.render(),
                app.server.router.count()
            ),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are off\n").into_response(),
    }
}

async fn websocket(
    State(app): State<App>,
    Extension(Peer(ip)): Extension<Peer>,
    ws: WebSocketUpgrade,
) -> Response {
    let max = app.server.config.limits.max_stanza_bytes;
    let depth = app.server.config.limits.max_depth;
    let server = app.server.clone();
    // Frames a little over the cap still arrive, so that the stream can be
    // closed with policy-violation rather than a bare socket error.
    ws.protocols(["xmpp"])
        .max_message_size(max + 1024)
        .on_upgrade(move |socket| {
            conclave_server::session::run(server, WsTransport::new(socket, ip, max, depth))
        })
}

async fn bosh(
    State(app): State<App>,
    Extension(Peer(ip)): Extension<Peer>,
    body: Bytes,
) -> Response {
    let out = app.bosh.request(&app.server, ip, &body).await;
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], out).into_response()
}

pub async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    limiter: ConnLimiter,
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
        let Some(guard) = limiter.acquire(addr.ip(), server.config.limits.max_connections_per_ip)
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
