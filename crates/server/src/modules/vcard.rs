//! XEP-0054: vcard-temp. Anyone may read a user's vCard; only the user may
//! write it. Stored as the XML the client sent, bounded by the stanza cap;
//! its PHOTO is kept in step with the PEP avatar (XEP-0398, `avatar`).

use minidom::Element;
use xmpp_core::framing::parse_element;
use xmpp_core::{ns, stanza};

use crate::hub::{HandlerFuture, IqRoute, Module, Server, Session, Target};

pub const MODULE: Module = Module {
    name: "vcard",
    features: &[ns::VCARD],
    account_features: &[ns::VCARD],
    account_identities: &[],
    iq: &[IqRoute {
        target: Target::Account,
        ns: ns::VCARD,
        handler: handle,
    }],
    enabled: super::always,
};

fn handle<'a>(srv: &'a Server, s: &'a Session, owner: &'a str, iq: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        let Some(payload) = stanza::iq_payload(&iq).filter(|p| p.name() == "vCard") else {
            s.send(&stanza::error_reply(&iq, "bad-request", None));
            return;
        };
        match iq.attr("type") {
            Some("get") => {
                if !srv.user_exists(owner).await {
                    s.send(&stanza::error_reply(&iq, "service-unavailable", None));
                    return;
                }
                let stored = srv.store.vcard(owner).await;
                let card = match stored {
                    Ok(Some(xml)) => parse_element(xml.as_bytes(), usize::MAX)
                        .unwrap_or_else(|_| Element::bare("vCard", ns::VCARD)),
                    Ok(None) => Element::bare("vCard", ns::VCARD),
                    Err(e) => {
                        tracing::error!(error = %e, "vcard read failed");
                        s.send(&stanza::error_reply(&iq, "internal-server-error", None));
                        return;
                    }
                };
                let card = super::avatar::vcard_for(srv, owner, s.bare(), card).await;
                let mut reply = stanza::iq_result(&iq);
                reply.append_child(card);
                s.send(&reply);
            }
            _ => {
                if owner != s.bare() {
                    s.send(&stanza::error_reply(&iq, "forbidden", None));
                    return;
                }
                if s.anonymous {
                    s.send(&stanza::error_reply(&iq, "not-allowed", None));
                    return;
                }
                if let Err(c) = super::avatar::from_vcard(srv, s, payload).await {
                    s.send(&stanza::error_reply(&iq, c, None));
                    return;
                }
                let xml = stanza::to_bytes(payload);
                let xml = String::from_utf8_lossy(&xml);
                match srv.store.set_vcard(owner, &xml).await {
                    Ok(()) => s.send(&stanza::iq_result(&iq)),
                    Err(e) => {
                        tracing::error!(error = %e, "vcard write failed");
                        s.send(&stanza::error_reply(&iq, "internal-server-error", None));
                    }
                }
            }
        }
    })
}
