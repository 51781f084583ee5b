//! XEP-0077: in-band registration (before authentication, only when the
//! operator allows it), password change and account removal (always, for
//! the authenticated user itself).

use minidom::Element;
use xmpp_core::ns;
use xmpp_core::sasl::{ScramCredentials, ScramHash};
use xmpp_core::stanza::{self, ElementExt};

use conclave_store::{ScramRecord, StoreError};

use crate::hub::{HandlerFuture, IqRoute, Module, Server, Session, Target};
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

fn field(q: &Element, name: &str) -> Option<String> {
    q.get_child(name, ns::REGISTER).map(|c| c.text())
}

fn form() -> Element {
    Element::bare("query", ns::REGISTER)
        .text_child(
            "instructions",
            ns::REGISTER,
            "Choose a username and password.",
        )
        .text_child("username", ns::REGISTER, "")
        .text_child("password", ns::REGISTER, "")
}

/// Handles a registration IQ on a not yet authenticated stream.
pub async fn before_auth(srv: &Server, host: &str, iq: &Element) -> Element {
    let Some(q) = stanza::iq_payload(iq) else {
        return stanza::error_reply(iq, "bad-request", None);
    };
    match iq.attr("type") {
        Some("get") => {
            let mut r = stanza::iq_result(iq);
            r.unset("to");
            r.append_child(form());
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
            let Some(user) = nodeprep(user.trim(), host) else {
                return stanza::error_reply(
                    iq,
                    "not-acceptable",
                    Some("that username is not allowed"),
                );
            };
            if password.is_empty() {
                return stanza::error_reply(iq, "not-acceptable", Some("the password is empty"));
            }
            let Some(keys) = keys_for(password, srv.config.auth.scram_iterations).await else {
                return stanza::error_reply(
                    iq,
                    "not-acceptable",
                    Some("that password is not allowed"),
                );
            };
            match srv.store.create_user(host, &user, &keys).await {
                Ok(()) => {
                    tracing::info!(%user, %host, "account registered in-band");
                    stanza::iq_result(iq)
                }
                Err(StoreError::Conflict) => stanza::error_reply(iq, "conflict", None),
                Err(e) => {
                    tracing::error!(error = %e, "registration failed");
                    stanza::error_reply(iq, "internal-server-error", None)
                }
            }
        }
        _ => stanza::error_reply(iq, "bad-request", None),
    }
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
                match srv.store.delete_user(&s.host, &s.user).await {
                    Ok(()) => {
                        tracing::info!(user = %s.user, host = %s.host, "account removed by its owner");
                        s.send(&stanza::iq_result(&iq));
                        for h in srv.router.sessions(s.bare()) {
                            h.close(None);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "account removal failed");
                        s.send(&stanza::error_reply(&iq, "internal-server-error", None));
                    }
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
                if password.is_empty() {
                    s.send(&stanza::error_reply(&iq, "not-acceptable", None));
                    return;
                }
                let Some(keys) = keys_for(password, srv.config.auth.scram_iterations).await else {
                    s.send(&stanza::error_reply(&iq, "not-acceptable", None));
                    return;
                };
                match srv.store.set_keys(&s.host, &s.user, &keys).await {
                    Ok(()) => {
                        tracing::info!(user = %s.user, host = %s.host, "password changed");
                        s.send(&stanza::iq_result(&iq));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "password change failed");
                        s.send(&stanza::error_reply(&iq, "internal-server-error", None));
                    }
                }
            }
            _ => s.send(&stanza::error_reply(&iq, "bad-request", None)),
        }
    })
}
