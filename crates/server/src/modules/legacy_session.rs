//! RFC 3921 session establishment. RFC 6121 made it a no-op, but older
//! clients (Strophe, some bots) still send it after bind and give up on an
//! error; the stream feature says `<optional/>`.

use minidom::Element;
use xmpp_core::{ns, stanza};

use crate::hub::{HandlerFuture, IqRoute, Module, Server, Session, Target};

pub const MODULE: Module = Module {
    name: "legacy_session",
    features: &[],
    account_features: &[],
    account_identities: &[],
    iq: &[IqRoute {
        target: Target::Server,
        ns: ns::SESSION,
        handler: handle,
    }],
    enabled: super::always,
};

fn handle<'a>(_: &'a Server, s: &'a Session, _: &'a str, iq: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        if iq.attr("type") == Some("set") {
            s.send(&stanza::iq_result(&iq));
        } else {
            s.send(&stanza::error_reply(&iq, "bad-request", None));
        }
    })
}
