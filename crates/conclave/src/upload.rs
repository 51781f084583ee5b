//! XEP-0363's HTTP side: the PUT that fills a slot and the GET/HEAD that
//! serve it (with byte ranges, so a video can seek), the periodic expiry
//! sweep, and `conclave upload expire`.
//!
//! A PUT streams the body into `<slot>.part` with a running byte count and
//! renames it into place only when complete, so a half upload is never
//! served and never held in memory. Status codes: 403 for a missing or
//! wrong token (or a slot past its deadline), 409 for a second PUT, 411
//! without Content-Length, 413/400 when Content-Length is larger/smaller
//! than the slot's size, 415 when Content-Type differs from the slot's.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Subcommand;
use conclave_server::modules::upload;
use conclave_server::{Config, Server};
use conclave_store::{Store, Upload, UploadState};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use xmpp_core::time;

/// Only what the browser needs to show a file, nothing it could run on our
/// origin (which also serves the web client): uploads are user content.
const CSP: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";
const CHUNK: usize = 64 * 1024;

pub fn routes<S: Clone + Send + Sync + 'static>(server: Arc<Server>) -> Router<S> {
    Router::new()
        .route(
            &format!("{}/{{slot}}/{{name}}", upload::HTTP_PATH),
            get(download).put(receive).options(preflight),
        )
        .layer(middleware::map_response(allow_any_origin))
        .with_state(server)
}

/// Browser clients on other origins may PUT and GET: the GET URL is itself
/// the capability and the PUT needs its bearer token, not a cookie, so
/// nothing rides on ambient credentials.
async fn allow_any_origin(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// CORS preflight for a browser's PUT with an `Authorization` header.
async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                "GET, HEAD, PUT, OPTIONS",
            ),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Authorization, Content-Type",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
        .into_response()
}

fn status(code: StatusCode, why: &'static str) -> Response {
    (code, format!("{why}\n")).into_response()
}

/// The slot a URL names, if the URL is exactly the one handed out.
async fn lookup(srv: &Server, slot: &str, name: &str) -> Result<Upload, Response> {
    if !upload::is_slot_id(slot) {
        return Err(status(StatusCode::NOT_FOUND, "no such file"));
    }
    match srv.store.upload(slot).await {
        Ok(Some(u)) if u.filename == name => Ok(u),
        Ok(_) => Err(status(StatusCode::NOT_FOUND, "no such file")),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read an upload slot");
            Err(status(StatusCode::INTERNAL_SERVER_ERROR, "storage error"))
        }
    }
}

/// Undoes a claimed PUT that did not complete, however it ended (error,
/// oversize, or the client going away and the future being dropped): the
/// partial file is deleted and the slot is given back until its deadline.
struct PartGuard {
    store: Arc<dyn Store>,
    slot: String,
    part: PathBuf,
    armed: bool,
}

impl Drop for PartGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = std::fs::remove_file(&self.part);
        let store = self.store.clone();
        let slot = std::mem::take(&mut self.slot);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = store.end_put(&slot, false).await {
                    tracing::warn!(error = %e, "cannot release an upload slot");
                }
            });
        }
    }
}

/// Bytes of a refused PUT's body read and dropped before answering: a
/// client still sending when the connection closes sees a broken pipe,
/// not the refusal. Past this, the connection is closed.
const DRAIN_REFUSED: usize = 1 << 20;

async fn drained(body: Body, response: Response) -> Response {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen > DRAIN_REFUSED {
            break;
        }
    }
    response
}

async fn refuse(body: Body, code: StatusCode, why: &'static str) -> Response {
    drained(body, status(code, why)).await
}

async fn receive(
    State(srv): State<Arc<Server>>,
    Path((slot, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let u = match lookup(&srv, &slot, &name).await {
        Ok(u) => u,
        Err(r) => return drained(body, r).await,
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !upload::token_matches(auth, &u.token_hash) {
        tracing::info!(owner = %u.owner, "upload refused: bad token");
        return refuse(body, StatusCode::FORBIDDEN, "wrong or missing token").await;
    }
    if u.state != UploadState::Pending {
        return refuse(body, StatusCode::CONFLICT, "this slot has been used").await;
    }
    let now = time::now_unix();
    if now >= u.put_deadline {
        return refuse(body, StatusCode::FORBIDDEN, "this slot has expired").await;
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(upload::parse_digits);
    match length {
        None => {
            return refuse(
                body,
                StatusCode::LENGTH_REQUIRED,
                "Content-Length is required",
            )
            .await;
        }
        Some(n) if n > u.size => {
            return refuse(body, StatusCode::PAYLOAD_TOO_LARGE, "larger than the slot").await;
        }
        Some(n) if n < u.size => {
            return refuse(body, StatusCode::BAD_REQUEST, "smaller than the slot").await;
        }
        Some(_) => {}
    }
    let put_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or(""));
    if !upload::content_type_fits(&u.content_type, put_type) {
        return refuse(
            body,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type differs from the slot's",
        )
        .await;
    }
    match srv.store.begin_put(&slot, now).await {
        Ok(true) => {}
        Ok(false) => return refuse(body, StatusCode::CONFLICT, "this slot has been used").await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot claim an upload slot");
            return refuse(body, StatusCode::INTERNAL_SERVER_ERROR, "storage error").await;
        }
    }
    let dir = upload::dir(&srv.config);
    let mut guard = PartGuard {
        store: srv.store.clone(),
        slot: slot.clone(),
        part: upload::part_path(&dir, &slot),
        armed: true,
    };
    if let Err((code, why)) = write_part(&dir, &guard.part, body, u.size).await {
        tracing::info!(owner = %u.owner, size = u.size, reason = why, "upload failed");
        return status(code, why);
    }
    let file = upload::file_path(&dir, &slot);
    if let Err(e) = tokio::fs::rename(&guard.part, &file).await {
        tracing::warn!(error = %e, "cannot move a finished upload into place");
        return status(StatusCode::INTERNAL_SERVER_ERROR, "storage error");
    }
    guard.armed = false;
    match srv.store.end_put(&slot, true).await {
        Ok(true) => {}
        Ok(false) => {
            // Expired while it streamed in: nothing points to it any more.
            let _ = tokio::fs::remove_file(&file).await;
            return status(StatusCode::GONE, "the slot expired during the upload");
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot record a finished upload");
            let _ = tokio::fs::remove_file(&file).await;
            guard.armed = true;
            return status(StatusCode::INTERNAL_SERVER_ERROR, "storage error");
        }
    }
    metrics::counter!("conclave_upload_bytes_total").increment(u.size);
    tracing::info!(owner = %u.owner, size = u.size, "upload stored");
    status(StatusCode::CREATED, "stored")
}

/// Streams the body into `part`, never more than `size` bytes.
async fn write_part(
    dir: &std::path::Path,
    part: &std::path::Path,
    body: Body,
    size: u64,
) -> Result<(), (StatusCode, &'static str)> {
    let io = |e: std::io::Error| {
        tracing::warn!(error = %e, "cannot write an upload");
        (StatusCode::INTERNAL_SERVER_ERROR, "storage error")
    };
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    let mut f = tokio::fs::File::create(part).await.map_err(io)?;
    let mut stream = body.into_data_stream();
    let mut n: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| (StatusCode::BAD_REQUEST, "upload interrupted"))?;
        n += chunk.len() as u64;
        if n > size {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, "larger than the slot"));
        }
        f.write_all(&chunk).await.map_err(io)?;
    }
    if n != size {
        return Err((StatusCode::BAD_REQUEST, "smaller than the slot"));
    }
    // On disk before the rename makes it visible, so a crash cannot
    // publish a truncated file.
    f.sync_all().await.map_err(io)
}

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No usable range: send everything (RFC 9110 §14.2 lets a server
    /// ignore what it does not support, such as several ranges).
    Full,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A well-formed range that lies outside the file: 416.
    Unsatisfiable,
}

/// Parses one `bytes=a-b`, `bytes=a-` or `bytes=-n` (RFC 9110 §14.1.2).
pub fn parse_range(h: &str, len: u64) -> ByteRange {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return ByteRange::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return match upload::parse_digits(b) {
            None => ByteRange::Full,
            Some(0) => ByteRange::Unsatisfiable,
            Some(_) if len == 0 => ByteRange::Unsatisfiable,
            Some(n) => ByteRange::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        };
    }
    let Some(start) = upload::parse_digits(a) else {
        return ByteRange::Full;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match upload::parse_digits(b) {
            Some(e) if e >= start => e,
            _ => return ByteRange::Full,
        }
    };
    if start >= len {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Part {
        start,
        end: end.min(len - 1),
    }
}

/// Images, audio, video and plain text may show in the browser; anything
/// else (SVG too: it can carry script) is offered as a download.
fn disposition(content_type: &str) -> &'static str {
    let t = content_type.to_ascii_lowercase();
    if ["image/", "audio/", "video/", "text/plain"]
        .iter()
        .any(|p| t.starts_with(p))
        && !t.starts_with("image/svg")
    {
        "inline"
    } else {
        "attachment"
    }
}

async fn download(
    State(srv): State<Arc<Server>>,
    Path((slot, name)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let u = match lookup(&srv, &slot, &name).await {
        Ok(u) if u.state == UploadState::Stored => u,
        Ok(_) => return status(StatusCode::NOT_FOUND, "no such file"),
        Err(r) => return r,
    };
    let path = upload::file_path(&upload::dir(&srv.config), &slot);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return status(StatusCode::NOT_FOUND, "no such file"),
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(_) => return status(StatusCode::NOT_FOUND, "no such file"),
    };
    // The slot id names immutable content: a strong validator.
    let etag = format!("\"{slot}\"");
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.as_bytes() == etag.as_bytes());
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(h) if if_range_ok => parse_range(h, len),
        _ => ByteRange::Full,
    };
    let mut resp = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &etag)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CONTENT_SECURITY_POLICY, CSP)
        .header(header::CONTENT_DISPOSITION, disposition(&u.content_type));
    let (code, start, count) = match range {
        ByteRange::Full => (StatusCode::OK, 0, len),
        ByteRange::Part { start, end } => {
            resp = resp.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        ByteRange::Unsatisfiable => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response();
        }
    };
    let content_type = HeaderValue::from_str(&u.content_type)
        .unwrap_or(HeaderValue::from_static(upload::DEFAULT_CONTENT_TYPE));
    resp = resp
        .status(code)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, count);
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
            return status(StatusCode::INTERNAL_SERVER_ERROR, "storage error");
        }
        file_body(file.take(count))
    };
    resp.body(body)
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR, "bad response"))
}

/// A file as a body, read in chunks as the client takes them.
fn file_body(file: tokio::io::Take<tokio::fs::File>) -> Body {
    let stream = futures_util::stream::try_unfold(file, |mut f| async move {
        let mut buf = vec![0u8; CHUNK];
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), f)))
    });
    Body::from_stream(stream)
}

/// Gives back the slots whose PUT the last shutdown or crash cut short.
/// Called before the HTTPS listener starts, when no PUT can be running.
pub async fn recover(store: &dyn Store) {
    match store.reset_puts().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            count = n,
            "uploads cut short by the last shutdown given back"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot reset interrupted uploads"),
    }
}

#[derive(Subcommand)]
pub enum UploadCommand {
    /// Delete expired uploads now (the server's retention sweep also does
    /// this, every `retention.sweep_interval_secs`).
    Expire {
        /// Take this Unix time as now (for tests).
        #[arg(long, hide = true)]
        now: Option<u64>,
    },
}

pub async fn run(cfg: &Config, cmd: UploadCommand) -> Result<(), String> {
    let store = crate::open_store(cfg).await?;
    let r = match cmd {
        UploadCommand::Expire { now } => {
            upload::expire(&store, cfg, now.unwrap_or_else(time::now_unix))
                .await
                .map(|n| println!("deleted {n} expired uploads"))
                .map_err(|e| e.to_string())
        }
    };
    store.close().await;
    r
}

#[cfg(test)]
mod tests {
    use super::{ByteRange, parse_range};

    #[test]
    fn ranges() {
        let part = |start, end| ByteRange::Part { start, end };
        assert_eq!(parse_range("bytes=0-9", 100), part(0, 9));
        assert_eq!(parse_range("bytes=10-", 100), part(10, 99));
        assert_eq!(parse_range("bytes=90-200", 100), part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), part(90, 99));
        assert_eq!(parse_range("bytes=-500", 100), part(0, 99));
        assert_eq!(parse_range(" bytes= 5 - 5 ", 100), part(5, 5));
        assert_eq!(parse_range("bytes=100-", 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), ByteRange::Unsatisfiable);
        for ignored in [
            "items=0-9",
            "bytes=9-0",
            "bytes=0-1,5-6",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=0-99999999999999999999999",
        ] {
            assert_eq!(parse_range(ignored, 100), ByteRange::Full, "{ignored}");
        }
    }
}
