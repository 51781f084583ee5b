//! XEP-0363: HTTP File Upload. The `upload.<host>` service hands out slots
//! (a PUT and a GET URL under our own HTTPS); the runtime's HTTP side
//! (`conclave::upload`) takes the PUT and serves the GET.
//!
//! Everything is checked here, before a URL exists: the size limit, the
//! owner's quota (one SQL statement, so it cannot be raced) and the request
//! itself. The PUT is authorised by a random bearer token that travels in
//! the slot's `<header name='Authorization'>`, never in a URL, so GET URLs
//! can be shared and logged by clients without granting the upload. Only
//! the token's SHA-256 is stored, with the slot that binds it to one size,
//! one content type and one deadline.

use std::path::{Path, PathBuf};

use aws_lc_rs::{constant_time, digest, rand};
use base64::Engine;
use conclave_store::{StoreError, Upload, UploadState, Uploads};
use jid::Jid;
use minidom::Element;
use xmpp_core::stanza::{self, ElementExt};
use xmpp_core::{forms, ns, time};

use crate::config::Config;
use crate::hub::{HandlerFuture, Server, Service, Session};

pub const SERVICE: Service = Service {
    name: "upload",
    subdomain: "upload",
    identity: ("store", "file", "HTTP File Upload"),
    host_identity: None,
    features: &[ns::HTTP_UPLOAD],
    info_form: max_size_form,
    handle,
    enabled: Config::upload_enabled,
};

/// The URL path under which slots live: `<base>/upload/<slot>/<name>`.
pub const HTTP_PATH: &str = "/upload";
/// Served when a slot request names no content type.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// Longest sanitised file name in bytes; longer names lose the end of their
/// stem, not their extension.
const MAX_FILENAME_BYTES: usize = 200;
const MAX_CONTENT_TYPE_BYTES: usize = 255;

/// XEP-0363 §3: the size limit as a XEP-0128 form, so clients can refuse
/// a large file before asking.
fn max_size_form(c: &Config) -> Option<Element> {
    let max = c.upload.max_file_bytes.to_string();
    Some(forms::form(
        "result",
        [
            forms::form_type(ns::HTTP_UPLOAD),
            forms::field("max-file-size", None, None, &[&max]),
        ],
    ))
}

/// A slot request, checked: what the slot will be bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRequest {
    pub filename: String,
    pub size: u64,
    pub content_type: String,
}

/// Reads `<request filename= size= content-type=/>`. `Err` carries the
/// text of the `bad-request` error.
pub fn parse_request(req: &Element) -> Result<SlotRequest, &'static str> {
    let size = req
        .attr("size")
        .and_then(parse_digits)
        .ok_or("`size` must be a whole number of bytes")?;
    let filename = req
        .attr("filename")
        .and_then(sanitise_filename)
        .ok_or("`filename` must name a file")?;
    let content_type = match req.attr("content-type").map(str::trim) {
        None | Some("") => DEFAULT_CONTENT_TYPE.to_owned(),
        Some(t) if valid_content_type(t) => t.to_owned(),
        Some(_) => return Err("`content-type` is not a media type"),
    };
    Ok(SlotRequest {
        filename,
        size,
        content_type,
    })
}

/// Decimal digits only: `str::parse` would also take a leading `+`.
pub fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The name a file is served under: the last path component of what the
/// client sent, without control characters (no header or log injection),
/// trimmed, at most [`MAX_FILENAME_BYTES`]. `None` if nothing usable is
/// left. The name never touches the file system: files are stored under
/// their slot id.
pub fn sanitise_filename(raw: &str) -> Option<String> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let clean: String = last.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        return None;
    }
    if clean.len() <= MAX_FILENAME_BYTES {
        return Some(clean.to_owned());
    }
    let ext = match clean.rfind('.') {
        Some(i) if i > 0 && clean.len() - i <= 16 => &clean[i..],
        _ => "",
    };
    let mut cut = MAX_FILENAME_BYTES - ext.len();
    while !clean.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(format!("{}{ext}", clean[..cut].trim_end()))
}

/// `type/subtype` with optional parameters, in visible ASCII: it is sent
/// back verbatim as the download's Content-Type header.
pub fn valid_content_type(t: &str) -> bool {
    let essence = t.split(';').next().unwrap_or("").trim();
    t.len() <= MAX_CONTENT_TYPE_BYTES
        && t.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
        && essence
            .split_once('/')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('/'))
}

/// Whether a PUT's Content-Type agrees with the slot's (XEP-0363 §6: the
/// service SHOULD reject a mismatch). Only the media type is compared, and
/// a slot for `application/octet-stream` takes anything, since that is
/// what it will be served as.
pub fn content_type_fits(slot: &str, put: Option<&str>) -> bool {
    let essence = |t: &str| {
        t.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    match put {
        None => true,
        Some(p) => essence(slot) == DEFAULT_CONTENT_TYPE || essence(slot) == essence(p),
    }
}

/// Percent-encodes one URL path segment.
pub use xmpp_core::invite::percent_encode as encode_segment;

/// A slot id: 128 random bits in lower-case hex, so that URLs cannot be
/// guessed (XEP-0363 §8) and the id is safe as a file name.
pub fn new_slot_id() -> Option<String> {
    let mut b = [0u8; 16];
    rand::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

pub fn is_slot_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A PUT token (256 random bits) and the hash that is stored for it.
pub fn new_token() -> Option<(String, Vec<u8>)> {
    let mut b = [0u8; 32];
    rand::fill(&mut b).ok()?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let hash = token_hash(&token);
    Some((token, hash))
}

pub fn token_hash(token: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// Checks a PUT's `Authorization` header (`Bearer <token>`) against the
/// slot's stored hash, in constant time.
pub fn token_matches(authorization: Option<&str>, stored_hash: &[u8]) -> bool {
    let Some(token) = authorization.and_then(|h| h.trim().strip_prefix("Bearer ")) else {
        return false;
    };
    constant_time::verify_slices_are_equal(&token_hash(token.trim()), stored_hash).is_ok()
}

/// When a request for `size` more bytes would fit in `quota`, given what
/// the owner holds and when each of those frees its bytes (a stored file
/// at its expiry, an unused slot at its deadline). `None`: never, by
/// waiting alone.
pub fn retry_at(held: &[Upload], size: u64, quota: u64, expire_after: u64) -> Option<u64> {
    if size > quota {
        return None;
    }
    let mut frees: Vec<(u64, u64)> = Vec::with_capacity(held.len());
    for u in held {
        let expires = (expire_after > 0).then(|| u.created.saturating_add(expire_after));
        let at = match u.state {
            UploadState::Pending => Some(expires.map_or(u.put_deadline, |e| e.min(u.put_deadline))),
            _ => expires,
        };
        if let Some(at) = at {
            frees.push((at, u.size));
        }
    }
    frees.sort_unstable();
    let mut used: u64 = held.iter().map(|u| u.size).sum();
    for (at, bytes) in frees {
        used = used.saturating_sub(bytes);
        if used.saturating_add(size) <= quota {
            return Some(at);
        }
    }
    None
}

/// `<data_dir>/uploads`: one file per slot, named by its id, and
/// `<id>.part` while its PUT is streaming in.
pub fn dir(config: &Config) -> PathBuf {
    config.data_dir.join("uploads")
}

pub fn file_path(dir: &Path, slot: &str) -> PathBuf {
    dir.join(slot)
}

pub fn part_path(dir: &Path, slot: &str) -> PathBuf {
    dir.join(format!("{slot}.part"))
}

/// The URL of a slot (both the PUT and the GET: the token is a header).
pub fn url(config: &Config, slot: &str, filename: &str) -> String {
    format!(
        "{}{HTTP_PATH}/{slot}/{}",
        config.upload_base_url(),
        encode_segment(filename)
    )
}

/// Deletes what has expired at `now`: files `upload.expire_after_secs`
/// after their slot was handed out, unused slots at their deadline. The
/// files go first and then the rows, so a crash in between leaves rows
/// without files (served as 404, swept next time), never files that
/// nothing points to. Returns how many slots were removed.
pub async fn expire<S: Uploads + ?Sized>(
    store: &S,
    config: &Config,
    now: u64,
) -> Result<usize, StoreError> {
    let after = super::retention::keep_secs(config).unwrap_or(0);
    let created_before = (after > 0).then(|| now.saturating_sub(after));
    let dir = dir(config);
    let mut gone = Vec::new();
    for slot in store.expired_uploads(created_before, now).await? {
        let mut ok = true;
        for p in [file_path(&dir, &slot), part_path(&dir, &slot)] {
            match tokio::fs::remove_file(&p).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot delete an expired upload; will retry");
                    ok = false;
                }
            }
        }
        if ok {
            gone.push(slot);
        }
    }
    store.delete_uploads(&gone).await?;
    if !gone.is_empty() {
        tracing::info!(count = gone.len(), "expired uploads deleted");
    }
    Ok(gone.len())
}

fn handle<'a>(srv: &'a Server, s: &'a Session, to: Jid, el: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        match el.name() {
            "iq" => {}
            "message" if el.attr("type") != Some("error") => {
                s.send(&stanza::error_reply(&el, "service-unavailable", None));
                return;
            }
            _ => return,
        }
        let ty = el.attr("type").unwrap_or("");
        if matches!(ty, "result" | "error") {
            return;
        }
        let payload = stanza::iq_payload(&el);
        if !matches!(ty, "get" | "set") || el.attr("id").is_none() || payload.is_none() {
            s.send(&stanza::error_reply(&el, "bad-request", None));
            return;
        }
        let bare_domain = to.node().is_none() && to.resource().is_none();
        match payload {
            Some(p) if bare_domain && ty == "get" && p.is("request", ns::HTTP_UPLOAD) => {
                request_slot(srv, s, &el, p).await;
            }
            Some(p) if bare_domain && ty == "get" && p.is("query", ns::DISCO_ITEMS) => {
                s.answer_get(&el, || Some(Element::bare("query", ns::DISCO_ITEMS)));
            }
            _ => s.send(&stanza::error_reply(&el, "service-unavailable", None)),
        }
    })
}

/// An error reply with an application-specific condition (XEP-0363 §5).
fn app_error(iq: &Element, condition: &str, text: &str, app: Element) -> Element {
    let mut reply = stanza::error_reply(iq, condition, Some(text));
    if let Some(e) = reply.get_child_mut("error", ns::CLIENT) {
        e.append_child(app);
    }
    reply
}

async fn request_slot(srv: &Server, s: &Session, iq: &Element, req: &Element) {
    let cfg = &srv.config.upload;
    // As Prosody: uploads are for the server's own users. A guest's files
    // outlive the guest, so unless the operator gives guests a quota of
    // their own, shared by all of them and owned by their host, they have
    // none.
    let (owner, quota) = if s.anonymous {
        if cfg.guest_quota_bytes == 0 {
            let text = "Guests cannot upload files";
            s.send(&stanza::error_reply(iq, "forbidden", Some(text)));
            return;
        }
        let host = s.bare().rsplit_once('@').map_or(s.bare(), |(_, d)| d);
        (host.to_owned(), cfg.guest_quota_bytes)
    } else {
        (s.bare().to_owned(), cfg.quota_bytes)
    };
    let req = match parse_request(req) {
        Ok(r) => r,
        Err(why) => {
            s.send(&stanza::error_reply(iq, "bad-request", Some(why)));
            return;
        }
    };
    if req.size > cfg.max_file_bytes {
        let max = cfg.max_file_bytes.to_string();
        let too_large = Element::bare("file-too-large", ns::HTTP_UPLOAD).text_child(
            "max-file-size",
            ns::HTTP_UPLOAD,
            &max,
        );
        let text = format!("File too large: the limit is {max} bytes");
        s.send(&app_error(iq, "not-acceptable", &text, too_large));
        return;
    }
    let (Some(slot), Some((token, token_hash))) = (new_slot_id(), new_token()) else {
        s.send(&stanza::error_reply(iq, "internal-server-error", None));
        return;
    };
    let now = time::now_unix();
    let upload = Upload {
        slot,
        owner: owner.clone(),
        filename: req.filename,
        size: req.size,
        content_type: req.content_type,
        token_hash,
        created: now,
        put_deadline: now.saturating_add(cfg.slot_ttl_secs),
        state: UploadState::Pending,
    };
    match srv.store.create_slot(&upload, quota, now).await {
        Ok(()) => {}
        Err(StoreError::Quota) => {
            let held = srv
                .store
                .owner_uploads(&owner, now)
                .await
                .unwrap_or_default();
            tracing::info!(owner = %owner, size = req.size, "upload refused: quota");
            let keep = super::retention::keep_secs(&srv.config).unwrap_or(0);
            let reply = match retry_at(&held, req.size, quota, keep) {
                Some(at) => {
                    let retry =
                        Element::bare("retry", ns::HTTP_UPLOAD).with("stamp", &time::datetime(at));
                    app_error(iq, "resource-constraint", "Upload quota reached", retry)
                }
                None => stanza::error_reply(iq, "not-allowed", Some("Upload quota reached")),
            };
            s.send(&reply);
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot record an upload slot");
            s.send(&stanza::error_reply(iq, "internal-server-error", None));
            return;
        }
    }
    tracing::info!(
        owner = s.bare(),
        size = upload.size,
        content_type = %upload.content_type,
        "upload slot granted"
    );
    let url = url(&srv.config, &upload.slot, &upload.filename);
    let mut header = Element::bare("header", ns::HTTP_UPLOAD).with("name", "Authorization");
    header.append_text(format!("Bearer {token}"));
    let mut put = Element::bare("put", ns::HTTP_UPLOAD).with("url", &url);
    put.append_child(header);
    let mut slot_el = Element::bare("slot", ns::HTTP_UPLOAD);
    slot_el.append_child(put);
    slot_el.append_child(Element::bare("get", ns::HTTP_UPLOAD).with("url", &url));
    let mut reply = stanza::iq_result(iq);
    reply.append_child(slot_el);
    s.send(&reply);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attrs: &[(&str, &str)]) -> Element {
        let mut e = Element::bare("request", ns::HTTP_UPLOAD);
        for (k, v) in attrs {
            e.set(k, v);
        }
        e
    }

    #[test]
    fn parses_and_checks_requests() {
        let r = parse_request(&request(&[
            ("filename", "holiday photo.jpg"),
            ("size", "23456"),
            ("content-type", "image/jpeg"),
        ]))
        .unwrap();
        assert_eq!(
            r,
            SlotRequest {
                filename: "holiday photo.jpg".into(),
                size: 23456,
                content_type: "image/jpeg".into()
            }
        );
        let r = parse_request(&request(&[("filename", "a"), ("size", "0")])).unwrap();
        assert_eq!(r.content_type, DEFAULT_CONTENT_TYPE);
        for bad in [
            &[("filename", "a.txt")][..],
            &[("filename", "a.txt"), ("size", "-1")],
            &[("filename", "a.txt"), ("size", "+5")],
            &[("filename", "a.txt"), ("size", "1e3")],
            &[("filename", "a.txt"), ("size", "99999999999999999999999")],
            &[("size", "5")],
            &[("filename", " "), ("size", "5")],
            &[("filename", "../"), ("size", "5")],
            &[("filename", "a"), ("size", "5"), ("content-type", "text")],
            &[
                ("filename", "a"),
                ("size", "5"),
                ("content-type", "a/b\r\nX: y"),
            ],
        ] {
            assert!(parse_request(&request(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn filenames_are_sanitised() {
        assert_eq!(sanitise_filename("a.txt").as_deref(), Some("a.txt"));
        assert_eq!(
            sanitise_filename("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(
            sanitise_filename("C:\\Users\\x\\cv.pdf").as_deref(),
            Some("cv.pdf")
        );
        assert_eq!(
            sanitise_filename(" na\u{0}me\n.png ").as_deref(),
            Some("name.png")
        );
        assert_eq!(sanitise_filename("Фото.jpg").as_deref(), Some("Фото.jpg"));
        assert_eq!(sanitise_filename(".."), None);
        assert_eq!(sanitise_filename("dir/"), None);
        let long = format!("{}.tar.gz", "ж".repeat(300));
        let s = sanitise_filename(&long).unwrap();
        assert!(s.len() <= MAX_FILENAME_BYTES && s.ends_with(".gz"), "{s}");
        assert_eq!(encode_segment("a b/ü?.txt"), "a%20b%2F%C3%BC%3F.txt");
    }

    #[test]
    fn tokens_and_slot_ids() {
        let (token, hash) = new_token().unwrap();
        assert!(token_matches(Some(&format!("Bearer {token}")), &hash));
        assert!(!token_matches(Some(&format!("Bearer {token}x")), &hash));
        assert!(!token_matches(Some(&format!("Basic {token}")), &hash));
        assert!(!token_matches(Some("Bearer "), &hash));
        assert!(!token_matches(None, &hash));
        let (other, _) = new_token().unwrap();
        assert_ne!(token, other);
        let id = new_slot_id().unwrap();
        assert!(is_slot_id(&id));
        assert!(!is_slot_id("../../../../../../../../etc/pass"));
        assert!(!is_slot_id(&id.to_uppercase()));
    }

    #[test]
    fn content_types() {
        assert!(content_type_fits("image/png", Some("image/PNG")));
        assert!(content_type_fits(
            "text/plain",
            Some("text/plain; charset=utf-8")
        ));
        assert!(content_type_fits("text/plain", None));
        assert!(!content_type_fits("image/png", Some("text/html")));
        assert!(content_type_fits(DEFAULT_CONTENT_TYPE, Some("text/html")));
    }

    fn held(size: u64, created: u64, state: UploadState) -> Upload {
        Upload {
            slot: String::new(),
            owner: String::new(),
            filename: String::new(),
            size,
            content_type: String::new(),
            token_hash: Vec::new(),
            created,
            put_deadline: created + 300,
            state,
        }
    }

    #[test]
    fn retry_when_enough_expires() {
        let h = [
            held(400, 100, UploadState::Stored),
            held(400, 50, UploadState::Stored),
            held(100, 900, UploadState::Pending),
        ];
        // 900 held of 1000: 150 more fits once the oldest file expires.
        assert_eq!(retry_at(&h, 150, 1000, 1000), Some(1050));
        // 600 more needs both files gone.
        assert_eq!(retry_at(&h, 600, 1000, 1000), Some(1100));
        // The pending slot frees its bytes at its deadline, before any expiry.
        assert_eq!(retry_at(&h, 150, 1000, 100_000), Some(1200));
        // Larger than the quota itself, or nothing ever expires.
        assert_eq!(retry_at(&h, 1001, 1000, 1000), None);
        assert_eq!(retry_at(&h, 600, 1000, 0), None);
        assert_eq!(retry_at(&h, 150, 1000, 0), Some(1200));
    }
}
