//! The web client (`web/`, built by build.rs and embedded): its page at `/`
//! and at every `/<room>`, its hashed assets, the files of its root (the
//! PWA manifest, the service worker, icons), and `/meet-config.json`, which
//! tells it where this server's XMPP, rooms and focus are. Everything the
//! page loads comes from here.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use conclave_server::Server;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// Where the page may load from and connect to: this server only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; media-src 'self' blob: mediastream:; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

pub fn routes<S: Clone + Send + Sync + 'static>(server: Arc<Server>) -> Router<S> {
    Router::new()
        .route("/", get(page))
        // The chat (the app's own route; no meeting is named "chat"), with
        // a conversation's address under it.
        .route("/chat", get(page))
        .route("/chat/{*conversation}", get(page))
        .route("/{room}", get(room))
        .route("/assets/{file}", get(asset))
        .route("/meet-config.json", get(config))
        .with_state(server)
}

fn file(path: &str) -> Option<&'static [u8]> {
    assets::FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, b)| *b)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

async fn page() -> Response {
    match file("/index.html") {
        Some(b) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
                (header::CONTENT_SECURITY_POLICY, CSP),
                (header::REFERRER_POLICY, "no-referrer"),
            ],
            b,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "the web client was not built\n").into_response(),
    }
}

/// A room name as a path segment: what a MUC room's localpart may be and
/// a person would type.
fn is_room_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with('.')
}

/// A file of the client's root (`public/` in web/), or the page. A segment
/// that cannot name a room still gets the page (with a 404), which tells
/// a person what is wrong with the name instead of a bare "not found";
/// dot-files get nothing, as no person types those.
async fn room(Path(name): Path<String>) -> Response {
    let path = format!("/{name}");
    if name.starts_with('.') {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    match file(&path) {
        Some(b) if path != "/index.html" => (
            [
                (header::CONTENT_TYPE, content_type(&path)),
                // Not hashed: a new version must be seen at once.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            b,
        )
            .into_response(),
        _ if is_room_name(&name) => page().await,
        _ => (StatusCode::NOT_FOUND, page().await).into_response(),
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    let path = format!("/assets/{name}");
    match file(&path) {
        Some(b) => (
            [
                (header::CONTENT_TYPE, content_type(&path)),
                // Vite names assets by their hash: they never change.
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            b,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// The page's settings. The WebSocket URL follows the Host the browser
/// used, so the page works under whatever name it was reached by.
async fn config(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let cfg = &server.config;
    let host = &cfg.hosts[0];
    let authority = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{host}:{}", cfg.http.port));
    let mut body = serde_json::json!({
        "domain": host,
        "muc": format!("conference.{host}"),
        "focus": format!("focus.{host}"),
        "websocket": format!("wss://{authority}{}", cfg.http.websocket_path),
        // Browsers refuse a service worker from a self-signed certificate
        // (and log an error in every page that tries): the page registers
        // it, and becomes installable, only under a certificate of the
        // operator's.
        "installable": !cfg.tls.cert.is_empty(),
        // Whether guests may share files in meetings (their page hides
        // the button otherwise); accounts always may, where uploads are on.
        "uploads": cfg.upload_enabled(),
        "guestUploads": cfg.upload_enabled() && cfg.upload.guest_quota_bytes > 0,
    });
    if !cfg.guest_host.is_empty() {
        body["guestDomain"] = serde_json::Value::String(cfg.guest_host.clone());
    }
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_embedded_with_its_page_and_assets() {
        let page = std::str::from_utf8(file("/index.html").expect("index.html")).unwrap();
        assert!(page.contains("/assets/"), "{page}");
        assert!(
            assets::FILES
                .iter()
                .any(|(p, _)| p.starts_with("/assets/") && p.ends_with(".js"))
        );
    }

    #[test]
    fn room_names_are_plain_path_segments() {
        assert!(is_room_name("SomeRoom"));
        assert!(is_room_name("team-2026_q4"));
        for bad in ["", ".env", "a/b", "a b", "%2e%2e", "x?y"] {
            assert!(!is_room_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_root_holds_what_makes_it_installable() {
        for f in [
            "/manifest.webmanifest",
            "/sw.js",
            "/icon-192.png",
            "/icon-512.png",
        ] {
            assert!(file(f).is_some(), "{f}");
        }
        assert_eq!(
            content_type("/manifest.webmanifest"),
            "application/manifest+json"
        );
    }
}
