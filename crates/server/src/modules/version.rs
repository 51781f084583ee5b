//! XEP-0092: Software Version. Names the software but not the operating
//! system, which would only help an attacker.

use minidom::Element;
use xmpp_core::ns;
use xmpp_core::stanza::ElementExt;

use crate::hub::{HandlerFuture, IqRoute, Module, SERVER_NAME, Server, Session, Target};

pub const MODULE: Module = Module {
    name: "version",
    features: &[ns::VERSION],
    account_features: &[],
    account_identities: &[],
    iq: &[IqRoute {
        target: Target::Server,
        ns: ns::VERSION,
        handler: handle,
    }],
    enabled: super::always,
};

fn handle<'a>(_: &'a Server, s: &'a Session, _: &'a str, iq: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        s.answer_get(&iq, || {
            Some(
                Element::bare("query", ns::VERSION)
                    .text_child("name", ns::VERSION, SERVER_NAME)
                    .text_child("version", ns::VERSION, env!("CARGO_PKG_VERSION")),
            )
        });
    })
}
