//! XEP-0202: Entity Time. The server keeps UTC.

use minidom::Element;
use xmpp_core::stanza::ElementExt;
use xmpp_core::{ns, time};

use crate::hub::{HandlerFuture, IqRoute, Module, Server, Session, Target};

pub const MODULE: Module = Module {
    name: "time",
    features: &[ns::TIME],
    account_features: &[],
    account_identities: &[],
    iq: &[IqRoute {
        target: Target::Server,
        ns: ns::TIME,
        handler: handle,
    }],
    enabled: super::always,
};

fn handle<'a>(_: &'a Server, s: &'a Session, _: &'a str, iq: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        s.answer_get(&iq, || {
            Some(
                Element::bare("time", ns::TIME)
                    .text_child("tzo", ns::TIME, "+00:00")
                    .text_child("utc", ns::TIME, &time::datetime(time::now_unix())),
            )
        });
    })
}
