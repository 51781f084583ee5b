//! XEP-0077: in-band registration (before authentication, only when the
//! operator allows it), password change and account removal (always, for
//! the authenticated user itself).

use minidom::Element;
use xmpp_core::ns;
use xmpp_core::sasl::{ScramCredentials, ScramHash};
use xmpp_core::stanza::{self, ElementExt};

use conclave_store::{ScramRecord, StoreError};

use crate::hub::{HandlerFuture, IqRoute, Module, Server, Session, Target};
use crate::modules::invites;
use crate::session::nodeprep;

pub const MODULE: Module = Module {
    name: "register",
    features: &[ns::REGISTER],
    account_features: &[],
    account_identities: &[],
    iq: &[IqRoute {
        target: Target::Server,
        ns: ns::REGISTER,
        handler: after_auth,
    }],
    enabled: super::always,
};

/// The SCRAM keys to store for a password: one record per hash. Runs the
/// PBKDF2 rounds on a blocking thread.
pub async fn keys_for(password: String, iterations: u32) -> Option<Vec<ScramRecord>> {
    tokio::task::spawn_blocking(move || {
        [ScramHash::Sha256, ScramHash::Sha1]
            .into_iter()
            .map(|h| {
                ScramCredentials::generate(h, &password, iterations)
                    .ok()
                    .map(|c| ScramRecord {
                        mechanism: h.name().to_owned(),
                        salt: c.salt,
                        iterations: c.iterations,
                        stored_key: c.stored_key,
                        server_key: c.server_key,
                    })
            })
            .collect::<Option<Vec<_>>>()
    })
    .await
    .ok()
    .flatten()
}

/// Why an account could not be created, changed or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountError {
    EmptyPassword,
    /// The password fails SASLprep.
    BadPassword,
    Conflict,
    NotFound,
    /// The username is not a valid localpart.
    BadUsername,
    /// An unused invitation keeps the name for its invitee.
    Reserved,
    /// The invitation is unknown, used, revoked or expired.
    InvalidInvite,
    /// The invitation is for another username.
    OtherUsername,
    /// The store failed (logged where it happened).
    Store,
}

impl AccountError {
    /// The stanza error condition (RFC 6120 §8.3.3).
    pub fn condition(self) -> &'static str {
        match self {
            AccountError::EmptyPassword
            | AccountError::BadPassword
            | AccountError::BadUsername
            | AccountError::OtherUsername => "not-acceptable",
            AccountError::Conflict | AccountError::Reserved => "conflict",
            AccountError::InvalidInvite => "forbidden",
            AccountError::NotFound => "item-not-found",
            AccountError::Store => "internal-server-error",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            AccountError::EmptyPassword => "the password is empty",
            AccountError::BadPassword => "that password is not allowed",
            AccountError::Conflict => "that account already exists",
            AccountError::NotFound => "no such account",
            AccountError::BadUsername => "that username is not allowed",
            AccountError::Reserved => "that username is reserved for an invitation",
            AccountError::InvalidInvite => "the invitation is invalid, used or expired",
            AccountError::OtherUsername => "this invitation is for another username",
            AccountError::Store => "the account store failed",
        }
    }
}

pub(crate) async fn checked_keys(
    srv: &Server,
    password: String,
) -> Result<Vec<ScramRecord>, AccountError> {
    if password.is_empty() {
        return Err(AccountError::EmptyPassword);
    }
    keys_for(password, srv.config.auth.scram_iterations)
        .await
        .ok_or(AccountError::BadPassword)
}

pub(crate) fn store_error(e: StoreError, what: &str) -> AccountError {
    match e {
        StoreError::Conflict => AccountError::Conflict,
        StoreError::NotFound => AccountError::NotFound,
        e => {
            tracing::error!(error = %e, "{what} failed");
            AccountError::Store
        }
    }
}

/// Creates `user@host` (`user` already nodeprepped) with only the SCRAM
/// keys of `password` stored.
pub async fn create_account(
    srv: &Server,
    host: &str,
    user: &str,
    password: String,
) -> Result<(), AccountError> {
    write_keys(srv, host, user, password, true).await
}

/// Replaces the SCRAM keys of an existing account.
pub async fn set_password(
    srv: &Server,
    host: &str,
    user: &str,
    password: String,
) -> Result<(), AccountError> {
    write_keys(srv, host, user, password, false).await
}

async fn write_keys(
    srv: &Server,
    host: &str,
    user: &str,
    password: String,
    create: bool,
) -> Result<(), AccountError> {
    let keys = checked_keys(srv, password).await?;
    let written = if create {
        srv.store.create_user(host, user, &keys).await
    } else {
        srv.store.set_keys(host, user, &keys).await
    };
    written.map_err(|e| {
        store_error(
            e,
            if create {
                "account creation"
            } else {
                "password change"
            },
        )
    })
}

/// Removes an account with everything stored for it; the caller ends its
/// sessions ([`end_sessions`]) once it has answered.
pub async fn delete_account(srv: &Server, host: &str, user: &str) -> Result<(), AccountError> {
    srv.store
        .delete_user(host, user)
        .await
        .map_err(|e| store_error(e, "account removal"))
}

/// Closes every stream of a removed account.
pub fn end_sessions(srv: &Server, bare: &str) {
    for h in srv.router.sessions(bare) {
        h.close(None);
    }
}

fn field(q: &Element, name: &str) -> Option<String> {
    q.get_child(name, ns::REGISTER).map(|c| c.text())
}

fn form(username: Option<&str>) -> Element {
    Element::bare("query", ns::REGISTER)
        .text_child(
            "instructions",
            ns::REGISTER,
            "Choose a username and password.",
        )
        .text_child("username", ns::REGISTER, username.unwrap_or_default())
        .text_child("password", ns::REGISTER, "")
}

/// Handles a registration IQ on a not yet authenticated stream: open
/// registration when `open`, else only with an invitation the stream has
/// accepted (`invites::preauth`).
pub async fn before_auth(
    srv: &Server,
    host: &str,
    iq: &Element,
    open: bool,
    invite: Option<&invites::Accepted>,
) -> Element {
    let Some(q) = stanza::iq_payload(iq) else {
        return stanza::error_reply(iq, "bad-request", None);
    };
    if !open && invite.is_none() {
        return stanza::error_reply(
            iq,
            "not-allowed",
            Some("registration is by invitation only"),
        );
    }
    match iq.attr("type") {
        Some("get") => {
            let mut r = stanza::iq_result(iq);
            r.unset("to");
            r.append_child(form(invite.and_then(|i| i.username.as_deref())));
            r
        }
        Some("set") => {
            let (Some(user), Some(password)) = (field(q, "username"), field(q, "password")) else {
                return stanza::error_reply(
                    iq,
                    "not-acceptable",
                    Some("username and password are required"),
                );
            };
            let created = match nodeprep(user.trim(), host) {
                None => Err(AccountError::BadUsername),
                Some(user) => match invite {
                    Some(i) => invites::register_with(srv, host, i, &user, password)
                        .await
                        .map(|()| user),
                    None => register_open(srv, host, &user, password)
                        .await
                        .map(|()| user),
                },
            };
            match created {
                Ok(user) => {
                    tracing::info!(%user, %host, "account registered in-band");
                    stanza::iq_result(iq)
                }
                Err(e) => stanza::error_reply(iq, e.condition(), Some(e.text())),
            }
        }
        _ => stanza::error_reply(iq, "bad-request", None),
    }
}

/// Open registration: any free name that no invitation keeps.
async fn register_open(
    srv: &Server,
    host: &str,
    user: &str,
    password: String,
) -> Result<(), AccountError> {
    let now = xmpp_core::time::now_unix();
    match srv.store.username_reserved(host, user, now).await {
        Ok(false) => {}
        Ok(true) => return Err(AccountError::Reserved),
        Err(e) => return Err(store_error(e, "invitation lookup")),
    }
    create_account(srv, host, user, password).await
}

fn after_auth<'a>(srv: &'a Server, s: &'a Session, _: &'a str, iq: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        let Some(q) = stanza::iq_payload(&iq) else {
            s.send(&stanza::error_reply(&iq, "bad-request", None));
            return;
        };
        if s.anonymous {
            s.send(&stanza::error_reply(&iq, "not-allowed", None));
            return;
        }
        match iq.attr("type") {
            Some("get") => {
                let mut r = stanza::iq_result(&iq);
                let mut query = Element::bare("query", ns::REGISTER);
                query.append_child(Element::bare("registered", ns::REGISTER));
                r.append_child(query.text_child("username", ns::REGISTER, &s.user));
                s.send(&r);
            }
            Some("set") if q.has_child("remove", ns::REGISTER) => {
                match delete_account(srv, &s.host, &s.user).await {
                    Ok(()) => {
                        tracing::info!(user = %s.user, host = %s.host, "account removed by its owner");
                        // The reply goes out before the streams close.
                        s.send(&stanza::iq_result(&iq));
                        end_sessions(srv, s.bare());
                    }
                    Err(e) => s.send(&stanza::error_reply(&iq, e.condition(), None)),
                }
            }
            Some("set") => {
                let (Some(user), Some(password)) = (field(q, "username"), field(q, "password"))
                else {
                    s.send(&stanza::error_reply(&iq, "bad-request", None));
                    return;
                };
                if nodeprep(user.trim(), &s.host).as_deref() != Some(s.user.as_str()) {
                    s.send(&stanza::error_reply(&iq, "not-authorized", None));
                    return;
                }
                match set_password(srv, &s.host, &s.user, password).await {
                    Ok(()) => {
                        tracing::info!(user = %s.user, host = %s.host, "password changed");
                        s.send(&stanza::iq_result(&iq));
                    }
                    Err(e) => s.send(&stanza::error_reply(&iq, e.condition(), None)),
                }
            }
            _ => s.send(&stanza::error_reply(&iq, "bad-request", None)),
        }
    })
}
