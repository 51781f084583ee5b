//! The invitation landing page (XEP-0379 §3.3, XEP-0401 §5.2):
//! `GET /invite/<token>` says what the invitation is for, links its `xmpp:`
//! URI for apps that handle it, and offers a registration form that
//! `POST /invite/<token>` answers, with the same username rules and errors
//! as in-band registration.
//!
//! The page is self-contained (no scripts, no external resources) under a
//! strict CSP. The token is in the path, so the page sends no referrer and
//! is not cached, and nothing here logs the path. Unknown tokens and failed
//! posts count against the address like failed logins.

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{Extension, Form, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use conclave_server::Server;
use conclave_server::modules::invites;
use conclave_server::modules::register::AccountError;
use conclave_store::{Invite, InviteKind};
use serde::Deserialize;
use xmpp_core::stanza::escape;

use crate::http::Peer;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#222}\
h1{font-size:1.5rem}a.button,button{display:inline-block;padding:.6rem 1.2rem;border:0;border-radius:.4rem;background:#2a6ebb;color:#fff;text-decoration:none;font-size:1rem;cursor:pointer}\
label{display:block;margin-top:.8rem}input{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}\
.error{background:#fde8e8;border:1px solid #e0a0a0;padding:.6rem;border-radius:.4rem}\
code{background:#f2f2f2;padding:.1rem .3rem;border-radius:.2rem;word-break:break-all}";

/// Only this page's own inline style; no scripts, images, frames or
/// foreign form targets.
static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, STYLE.as_bytes());
    format!(
        "default-src 'none'; style-src 'sha256-{}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        base64::engine::general_purpose::STANDARD.encode(hash.as_ref())
    )
});

pub fn routes<S: Clone + Send + Sync + 'static>(server: Arc<Server>) -> Router<S> {
    Router::new()
        .route("/invite/{token}", get(show).post(submit))
        .with_state(server)
}

#[derive(Deserialize)]
struct Submitted {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

async fn show(
    State(srv): State<Arc<Server>>,
    Extension(Peer(ip)): Extension<Peer>,
    Path(token): Path<String>,
) -> Response {
    if srv.auth_limiter.blocked(ip) {
        return throttled();
    }
    match invites::lookup(&srv, &token, xmpp_core::time::now_unix()).await {
        Some(i) => page(
            StatusCode::OK,
            "Invitation",
            &invitation(&i, &token, None, ""),
        ),
        None => unknown(&srv, ip),
    }
}

async fn submit(
    State(srv): State<Arc<Server>>,
    Extension(Peer(ip)): Extension<Peer>,
    Path(token): Path<String>,
    Form(f): Form<Submitted>,
) -> Response {
    if srv.auth_limiter.blocked(ip) {
        return throttled();
    }
    let Some(i) = invites::lookup(&srv, &token, xmpp_core::time::now_unix()).await else {
        return unknown(&srv, ip);
    };
    let refused = |status: StatusCode, why: &str| {
        srv.auth_limiter.failed(ip);
        page(
            status,
            "Invitation",
            &invitation(&i, &token, Some(why), &f.username),
        )
    };
    if f.password != f.confirm {
        return refused(StatusCode::BAD_REQUEST, "The passwords differ.");
    }
    match invites::register_web(&srv, &token, &f.username, f.password.clone()).await {
        Ok(jid) => page(
            StatusCode::OK,
            "Welcome",
            &format!(
                "<h1>Your account is ready</h1><p>Your address is <strong>{jid}</strong>.</p>\
                 <p>Sign in with any XMPP app (for example Conversations, Gajim, Dino or \
                 Monal) using this address and the password you chose.</p>",
                jid = escape(&jid)
            ),
        ),
        Err(AccountError::InvalidInvite) => unknown(&srv, ip),
        Err(e @ (AccountError::Conflict | AccountError::Reserved)) => {
            refused(StatusCode::CONFLICT, &sentence(e.text()))
        }
        Err(AccountError::Store) => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error",
            "<h1>Something went wrong</h1><p>The account could not be created. Please try again later.</p>",
        ),
        Err(e) => refused(StatusCode::BAD_REQUEST, &sentence(e.text())),
    }
}

/// "that name is taken" → "That name is taken."
fn sentence(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => format!("{}{}.", f.to_uppercase(), c.as_str()),
        None => String::new(),
    }
}

fn unknown(srv: &Server, ip: IpAddr) -> Response {
    srv.auth_limiter.failed(ip);
    page(
        StatusCode::NOT_FOUND,
        "Invitation not found",
        "<h1>This invitation is not valid</h1><p>It may have expired, been used already \
         or been revoked. Ask the person who invited you for a new link.</p>",
    )
}

fn throttled() -> Response {
    page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        "<h1>Too many attempts</h1><p>Too many failed attempts came from your address. \
         Please wait a minute and try again.</p>",
    )
}

/// What the invitation is for, its `xmpp:` link and the registration form
/// (with `error` shown above it and `username` refilled).
fn invitation(i: &Invite, token: &str, error: Option<&str>, username: &str) -> String {
    let host = escape(&i.host);
    let uri = escape(&invites::uri(i, token));
    let what = match (i.kind, i.inviter.as_deref()) {
        (InviteKind::Subscription, Some(inviter)) => format!(
            "<h1>{} invites you to chat</h1><p>Add them as a contact: you will see each \
             other in your contact lists.</p>",
            escape(inviter)
        ),
        (InviteKind::Contact, Some(inviter)) => format!(
            "<h1>{} invites you to chat</h1><p>Create an account on <strong>{host}</strong>: \
             you and {0} will see each other in your contact lists.</p>",
            escape(inviter)
        ),
        (_, Some(inviter)) => format!(
            "<h1>You are invited to {host}</h1><p>Create your account on <strong>{host}</strong>; \
             {} will be in your contact list.</p>",
            escape(inviter)
        ),
        _ => format!(
            "<h1>You are invited to {host}</h1><p>This link lets you create an account on \
             <strong>{host}</strong>.</p>"
        ),
    };
    if i.kind == InviteKind::Subscription {
        return format!(
            "{what}<p>Open the invitation in your XMPP app, signed in to your account:</p>\
             <p><a class=\"button\" href=\"{uri}\">Open in your app</a></p>\
             <p>Or copy this into your app: <code>{uri}</code></p>\
             <p>This invitation expires {}.</p>",
            xmpp_core::time::datetime(i.expires)
        );
    }
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let user_field = match &i.username {
        Some(u) => format!(
            "<input id=\"username\" name=\"username\" value=\"{}\" readonly>",
            escape(u)
        ),
        None => format!(
            "<input id=\"username\" name=\"username\" value=\"{}\" required autocomplete=\"username\" \
             autocapitalize=\"none\" spellcheck=\"false\">",
            escape(username)
        ),
    };
    format!(
        "{what}\
         <p>If you have an XMPP app installed, open the invitation in it:</p>\
         <p><a class=\"button\" href=\"{uri}\">Open in your app</a></p>\
         <p>Or copy this into your app: <code>{uri}</code></p>\
         <h2>Or create the account here</h2>{error}\
         <form method=\"post\">\
         <label for=\"username\">Username (your address will be <em>username</em>@{host})</label>{user_field}\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" required autocomplete=\"new-password\">\
         <label for=\"confirm\">Password again</label>\
         <input id=\"confirm\" name=\"confirm\" type=\"password\" required autocomplete=\"new-password\">\
         <p><button type=\"submit\">Create account</button></p>\
         </form>\
         <p>This invitation expires {}.</p>",
        xmpp_core::time::datetime(i.expires)
    )
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    );
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&CSP) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_and_links_the_uri() {
        let token = "0123456789abcdef0123456789abcdef";
        let i = Invite {
            token_hash: vec![0; 32],
            host: "example.org".into(),
            kind: InviteKind::Contact,
            username: None,
            inviter: Some("romeo@example.org".into()),
            created: 0,
            expires: 86400,
        };
        let html = invitation(&i, token, Some("<b>bad</b>"), "<x>");
        assert!(html.contains(&format!(
            "href=\"xmpp:romeo@example.org?roster;preauth={token};ibr=y\""
        )));
        assert!(html.contains("&lt;b&gt;bad&lt;/b&gt;"));
        assert!(html.contains("value=\"&lt;x&gt;\""));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn the_csp_allows_only_the_inline_style() {
        assert!(CSP.starts_with("default-src 'none'; style-src 'sha256-"));
        assert!(!CSP.contains("unsafe"));
    }
}
