//! XEP-0199: XMPP Ping. The model for every module: a feature and a hook.

use minidom::Element;
use xmpp_core::{ns, stanza};

use crate::hub::{HandlerFuture, IqRoute, Module, Server, Session, Target};

pub const MODULE: Module = Module {
    name: "ping",
    features: &[ns::PING],
    account_features: &[],
    iq: &[IqRoute {
        target: Target::Server,
        ns: ns::PING,
        handler: handle,
    }],
    enabled: super::always,
};

fn handle<'a>(_: &'a Server, s: &'a Session, _: &'a str, iq: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        if iq.attr("type") == Some("get") {
            s.send(&stanza::iq_result(&iq));
        } else {
            s.send(&stanza::error_reply(&iq, "bad-request", None));
        }
    })
}
