//! XEP-0199: XMPP Ping. The model for every module: a feature and a hook.

use minidom::Element;
use xmpp_core::ns;

use crate::hub::{HandlerFuture, IqRoute, Module, Server, Session, Target};

pub const MODULE: Module = Module {
    name: "ping",
    features: &[ns::PING],
    account_features: &[],
    account_identities: &[],
    iq: &[IqRoute {
        target: Target::Server,
        ns: ns::PING,
        handler: handle,
    }],
    enabled: super::always,
};

fn handle<'a>(_: &'a Server, s: &'a Session, _: &'a str, iq: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        s.answer_get(&iq, || None);
    })
}
