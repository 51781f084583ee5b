//! Invitations: XEP-0401 (easy user onboarding), XEP-0445 (pre-authenticated
//! in-band registration) and XEP-0379 (pre-authenticated roster
//! subscription).
//!
//! An invitation is a random token, stored only as its hash, valid for
//! `invites.ttl_secs` and used once. Before authentication a client shows it
//! with `<preauth xmlns='urn:xmpp:pars:0'/>`; the stream remembers it and
//! then accepts one XEP-0077 registration even while `registration.allow`
//! is off. The registration and the token's use are one store transaction.
//! A contact invitation also leaves the new account and the inviter
//! subscribed to each other; an existing account takes one up by sending
//! its subscription request with the `<preauth/>` (XEP-0379 §3.4).
//! Admins make invitations with the ad-hoc commands (`adhoc`), the operator
//! with `conclave invite`, and the HTTPS landing page registers too.

use std::net::IpAddr;

use minidom::Element;
use xmpp_core::invite::{self, NS_PARS};
use xmpp_core::stanza::{self, ElementExt};

use conclave_store::{Invite, InviteKind, Invites, StoreError};

use crate::config::Config;
use crate::hub::Server;
use crate::modules::register::{self, AccountError};
use crate::modules::roster;
use crate::session::nodeprep;

/// A new invitation, as shown to whoever made it.
#[derive(Debug, Clone)]
pub struct Created {
    pub token: String,
    /// The `xmpp:` URI (XEP-0401 `uri`).
    pub uri: String,
    /// The HTTPS landing page (XEP-0401 `landing-url`), when there is one.
    pub landing_url: Option<String>,
    /// Unix time.
    pub expires: u64,
}

/// Why an invitation could not be made.
#[derive(Debug)]
pub enum CreateError {
    /// The fixed username is not a valid localpart.
    BadUsername,
    /// The fixed username is taken by an account.
    Taken,
    /// The random source or the store failed (logged).
    Failed,
}

/// Makes an invitation on `host` valid from `now` for `ttl` seconds.
/// `username` (account invitations only) is the one name it may register;
/// `inviter` (a bare JID) is subscribed to the new account. Shared by the
/// ad-hoc commands and the CLI, which has the store but no server.
#[allow(clippy::too_many_arguments)]
pub async fn create<S: Invites + conclave_store::Accounts + ?Sized>(
    store: &S,
    cfg: &Config,
    host: &str,
    kind: InviteKind,
    username: Option<&str>,
    inviter: Option<&str>,
    now: u64,
    ttl: u64,
) -> Result<Created, CreateError> {
    let username = match username.map(str::trim).filter(|u| !u.is_empty()) {
        Some(u) => {
            let u = nodeprep(u, host).ok_or(CreateError::BadUsername)?;
            match store.user_exists(host, &u).await {
                Ok(false) => Some(u),
                Ok(true) => return Err(CreateError::Taken),
                Err(e) => {
                    tracing::error!(error = %e, "account lookup failed");
                    return Err(CreateError::Failed);
                }
            }
        }
        None => None,
    };
    let token = invite::new_token().ok_or(CreateError::Failed)?;
    let expires = now.saturating_add(ttl);
    let row = Invite {
        token_hash: invite::token_hash(&token),
        host: host.to_owned(),
        kind,
        username: username.clone(),
        inviter: inviter.map(str::to_owned),
        created: now,
        expires,
    };
    if let Err(e) = store.create_invite(&row).await {
        tracing::error!(error = %e, "storing an invitation failed");
        return Err(CreateError::Failed);
    }
    let uri = uri(&row, &token);
    let landing_url = cfg
        .invite_base_url()
        .map(|b| invite::landing_url(&b, &token));
    tracing::info!(
        id = %invite::token_id(&row.token_hash),
        %host,
        kind = kind.as_str(),
        inviter = inviter.unwrap_or("-"),
        "invitation created"
    );
    Ok(Created {
        token,
        uri,
        landing_url,
        expires,
    })
}

/// The `xmpp:` URI of an invitation: a contact's (`ibr=y` when it
/// registers too) or an account's.
pub fn uri(i: &Invite, token: &str) -> String {
    match (i.kind, i.inviter.as_deref().and_then(|j| j.split_once('@'))) {
        (InviteKind::Contact, Some((user, domain))) => {
            invite::contact_uri(user, domain, token, true)
        }
        (InviteKind::Subscription, Some((user, domain))) => {
            invite::contact_uri(user, domain, token, false)
        }
        _ => invite::account_uri(&i.host, i.username.as_deref(), token),
    }
}

/// An invitation a stream accepted with `<preauth/>`: the registration
/// that follows on the same stream may use it.
#[derive(Debug, Clone)]
pub struct Accepted {
    hash: Vec<u8>,
    /// When it was checked: XEP-0445 §4 has expiry checked then, not at
    /// the registration that follows.
    at: u64,
    /// The only name it may register.
    pub username: Option<String>,
}

/// The valid invitation behind `token` at `now`, if any.
pub async fn lookup(srv: &Server, token: &str, now: u64) -> Option<Invite> {
    if !invite::is_token(token) {
        return None;
    }
    match srv.store.invite(&invite::token_hash(token), now).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "invitation lookup failed");
            None
        }
    }
}

/// `<iq type='set'><preauth xmlns='urn:xmpp:pars:0' token='…'/></iq>` on an
/// unauthenticated stream to `host` (XEP-0445 §4). Unknown, used or expired
/// tokens get `item-not-found` and count as failed logins from `peer`, so
/// guessing is as slow as guessing passwords.
pub async fn preauth(
    srv: &Server,
    host: &str,
    peer: IpAddr,
    iq: &Element,
) -> (Element, Option<Accepted>) {
    let Some(p) = stanza::iq_payload(iq).filter(|p| p.is("preauth", NS_PARS)) else {
        return (stanza::error_reply(iq, "bad-request", None), None);
    };
    if iq.attr("type") != Some("set") {
        return (stanza::error_reply(iq, "bad-request", None), None);
    }
    if srv.auth_limiter.blocked(peer) {
        return (
            stanza::error_reply(
                iq,
                "resource-constraint",
                Some("too many failed attempts from this address; try again later"),
            ),
            None,
        );
    }
    let now = xmpp_core::time::now_unix();
    let token = p.attr("token").unwrap_or_default();
    let reply = |mut r: Element| {
        r.unset("to");
        r
    };
    match lookup(srv, token, now).await {
        Some(i) if i.host == host && i.kind != InviteKind::Subscription => {
            tracing::info!(id = %invite::token_id(&i.token_hash), "invitation presented");
            (
                reply(stanza::iq_result(iq)),
                Some(Accepted {
                    hash: i.token_hash,
                    at: now,
                    username: i.username,
                }),
            )
        }
        _ => {
            srv.auth_limiter.failed(peer);
            tracing::info!(%peer, "unknown or expired invitation presented");
            (
                reply(stanza::error_reply(
                    iq,
                    "item-not-found",
                    Some("The provided token is invalid or expired"),
                )),
                None,
            )
        }
    }
}

/// Registers `user` (nodeprepped) on `host` with an accepted invitation,
/// using it up in the same transaction, then subscribes the new account
/// and the inviter to each other.
pub async fn register_with(
    srv: &Server,
    host: &str,
    accepted: &Accepted,
    user: &str,
    password: String,
) -> Result<(), AccountError> {
    if accepted.username.as_deref().is_some_and(|u| u != user) {
        return Err(AccountError::OtherUsername);
    }
    let keys = register::checked_keys(srv, password).await?;
    let used = srv
        .store
        .redeem_invite(&accepted.hash, accepted.at, host, user, &keys)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => AccountError::InvalidInvite,
            e => register::store_error(e, "registration with an invitation"),
        })?;
    tracing::info!(
        id = %invite::token_id(&used.token_hash),
        %user,
        %host,
        "account registered with an invitation"
    );
    if let Some(inviter) = used.inviter.as_deref() {
        let new = format!("{user}@{host}");
        if srv.user_exists(inviter).await {
            roster::subscribe_mutually(srv, inviter, &new).await;
        }
    }
    Ok(())
}

/// Registration from the landing page: the token is checked and used in
/// one step. Returns the new bare JID.
pub async fn register_web(
    srv: &Server,
    token: &str,
    user: &str,
    password: String,
) -> Result<String, AccountError> {
    let now = xmpp_core::time::now_unix();
    let invite = lookup(srv, token, now)
        .await
        .filter(|i| i.kind != InviteKind::Subscription)
        .ok_or(AccountError::InvalidInvite)?;
    let user = nodeprep(user.trim(), &invite.host).ok_or(AccountError::BadUsername)?;
    let accepted = Accepted {
        hash: invite.token_hash,
        at: now,
        username: invite.username,
    };
    register_with(srv, &invite.host, &accepted, &user, password).await?;
    Ok(format!("{user}@{}", invite.host))
}

/// XEP-0379 §3.4 for an existing account: `user` asks to subscribe to the
/// local `contact` with `contact`'s contact invitation. If the token is
/// one, valid, it is used up and the two are subscribed to each other at
/// once (the request is the invitee's consent, the invitation the
/// inviter's); `false` leaves the request to the ordinary flow.
pub async fn subscribe_with(srv: &Server, user: &str, contact: &str, presence: &Element) -> bool {
    let Some(token) = presence
        .get_child("preauth", NS_PARS)
        .and_then(|p| p.attr("token"))
    else {
        return false;
    };
    let now = xmpp_core::time::now_unix();
    let fits = lookup(srv, token, now).await.is_some_and(|i| {
        matches!(i.kind, InviteKind::Contact | InviteKind::Subscription)
            && i.inviter.as_deref() == Some(contact)
            && contact != user
    });
    if !fits {
        return false;
    }
    match srv.store.take_invite(&invite::token_hash(token), now).await {
        Ok(i) => {
            tracing::info!(id = %invite::token_id(&i.token_hash), "contact invitation accepted");
            roster::subscribe_mutually(srv, contact, user).await;
            true
        }
        // Used by someone else just now.
        Err(StoreError::NotFound) => false,
        Err(e) => {
            tracing::error!(error = %e, "using an invitation failed");
            false
        }
    }
}
