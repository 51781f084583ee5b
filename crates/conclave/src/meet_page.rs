//! The web client (`web/`, built by build.rs and embedded): its page at `/`
//! and at every `/<room>`, its hashed assets, the files of its root (the
//! PWA manifest, the service worker, icons), and `/meet-config.json`, which
//! tells it where this server's XMPP, rooms and focus are. Everything the
//! page loads comes from here.
//!
//! Framing: a meeting page (`/<room>`) may be shown in a frame by the sites
//! `meetings.embed_origins` names (the embedding API, `/external_api.js`,
//! served here for any site to load); every other page, the home page and
//! the signed-in chat first, refuses all framing.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use conclave_server::Server;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// Where the page may load from and connect to: this server only; then
/// who may frame it (`frame-ancestors`' sources).
macro_rules! csp {
    ($frame_ancestors:literal) => {
        concat!(
            "default-src 'self'; script-src 'self'; style-src 'self'; ",
            "img-src 'self' data: blob:; media-src 'self' blob: mediastream:; ",
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors ",
            $frame_ancestors
        )
    };
}

/// No page but a meeting's is ever framed (clickjacking of the chat).
const NO_FRAMING: &str = "'none'";
const CSP_NO_FRAMING: &str = csp!("'none'");

/// The embedding API's script, at the root under a fixed name.
const EXTERNAL_API: &str = "/external_api.js";

pub fn routes<S: Clone + Send + Sync + 'static>(server: Arc<Server>) -> Router<S> {
    Router::new()
        .route("/", get(page))
        // The chat (the app's own route; no meeting is named "chat"), with
        // a conversation's address under it.
        .route("/chat", get(page))
        .route("/chat/{*conversation}", get(page))
        .route(EXTERNAL_API, get(external_api))
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
    page_framed_by(NO_FRAMING)
}

/// `frame-ancestors` of a meeting page: `meetings.embed_origins` (checked
/// at startup to be origins or `*`), or `'none'` when it is empty.
fn meeting_frame_ancestors(origins: &[String]) -> String {
    if origins.is_empty() {
        NO_FRAMING.to_owned()
    } else {
        origins.join(" ")
    }
}

/// The page, which the sites in `frame_ancestors` may frame.
fn page_framed_by(frame_ancestors: &str) -> Response {
    let Some(b) = file("/index.html") else {
        return (StatusCode::NOT_FOUND, "the web client was not built\n").into_response();
    };
    // The setting was validated at startup; should a value still not fit
    // in a header, nobody may frame the page.
    let csp = HeaderValue::from_str(&format!("{}{frame_ancestors}", csp!("")))
        .unwrap_or_else(|_| HeaderValue::from_static(CSP_NO_FRAMING));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    (headers, b).into_response()
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
async fn room(State(server): State<Arc<Server>>, Path(name): Path<String>) -> Response {
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
        _ if is_room_name(&name) => page_framed_by(&meeting_frame_ancestors(
            &server.config.meetings.embed_origins,
        )),
        _ => (StatusCode::NOT_FOUND, page().await).into_response(),
    }
}

/// `/external_api.js`, for other sites' pages to load: any origin may
/// (it is public, and carries nothing of the visitor's); not hashed, so
/// revalidated every time.
async fn external_api() -> Response {
    match file(EXTERNAL_API) {
        Some(b) => (
            [
                (header::CONTENT_TYPE, content_type(EXTERNAL_API)),
                (header::CACHE_CONTROL, "no-cache"),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            b,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
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
    fn only_meeting_pages_may_be_framed_and_by_whom_the_setting_says() {
        let csp = |r: &Response| {
            r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert!(csp(&page_framed_by(NO_FRAMING)).ends_with("frame-ancestors 'none'"));
        assert_eq!(meeting_frame_ancestors(&[]), "'none'");
        assert_eq!(meeting_frame_ancestors(&["*".into()]), "*");
        let two =
            meeting_frame_ancestors(&["https://a.example".into(), "https://b.example:8443".into()]);
        let r = page_framed_by(&two);
        assert!(
            csp(&r).ends_with("frame-ancestors https://a.example https://b.example:8443"),
            "{}",
            csp(&r)
        );
        assert!(csp(&r).starts_with("default-src 'self'; script-src 'self';"));
        // Never a header that could not be sent: then no framing at all.
        assert!(csp(&page_framed_by("https://a.example\n")).ends_with("frame-ancestors 'none'"));
    }

    #[test]
    fn the_embedding_api_is_built_in() {
        let js = std::str::from_utf8(file(EXTERNAL_API).expect("external_api.js")).unwrap();
        assert!(js.contains("ConclaveMeetExternalAPI"));
        assert!(js.contains("JitsiMeetExternalAPI"));
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
