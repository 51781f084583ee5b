//! A service from another crate (the conference focus will be one) plugs
//! into the hub through `Server::with_services`: the hub routes its domain
//! to it and answers its disco#info without knowing what it speaks, and
//! the service finds its own state again through `Server::extension`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{bound, guest};
use conclave_server::hub::{HandlerFuture, Service, Session};
use conclave_server::{Config, Server};
use conclave_store::SqliteStore;
use jid::Jid;
use minidom::Element;
use xmpp_core::stanza::{self, ElementExt};

/// The service's own state, kept by the server for it.
#[derive(Default)]
struct Calls(AtomicUsize);

const NS: &str = "urn:example:counter";

static COUNTER: Service = Service {
    name: "counter",
    subdomain: "counter",
    identity: ("component", "generic", "Counter"),
    host_identity: Some(("component", "counter")),
    features: &[NS],
    info_form: |_| None,
    handle,
    enabled: |_| true,
};

fn handle<'a>(srv: &'a Server, s: &'a Session, to: Jid, el: Element) -> HandlerFuture<'a> {
    Box::pin(async move {
        let Some(calls) = srv.extension::<Calls>() else {
            return s.bounce(&el, "internal-server-error");
        };
        let n = calls.0.fetch_add(1, Ordering::Relaxed) + 1;
        let mut reply = stanza::iq_result(&el);
        reply.set("from", to.as_str());
        reply.append_child(Element::bare("count", NS).with("n", &n.to_string()));
        s.send(&reply);
    })
}

const DISCO_INFO: &str = "<query xmlns='http://jabber.org/protocol/disco#info'/>";
const DISCO_ITEMS: &str = "<query xmlns='http://jabber.org/protocol/disco#items'/>";

/// Sends an IQ get and returns what came back with its id.
async fn ask(c: &mut common::Client, to: &str, id: &str, payload: &str) -> String {
    c.send(&format!(
        "<iq xmlns='jabber:client' to='{to}' type='get' id='{id}'>{payload}</iq>"
    ));
    c.until(&format!("id='{id}'")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_from_another_crate_gets_its_domain_and_its_state() {
    let dir = std::env::temp_dir().join(format!("conclave-seam-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(&dir.join("db.sqlite")).await.unwrap();
    let server = Server::with_services(Config::default(), Arc::new(store), &[&COUNTER]);
    assert!(server.extension::<Calls>().is_none());
    server.set_extension(Arc::new(Calls::default()));

    let mut c = guest(&server).await;
    bound(&server, 1).await;

    // disco#info on the bare domain comes from the service's declaration
    let info = ask(&mut c, "counter.localhost", "d", DISCO_INFO).await;
    assert!(info.contains("type='result'"), "{info}");
    assert!(info.contains("name='Counter'"), "{info}");
    assert!(info.contains(NS), "{info}");

    // everything else addressed to the domain reaches the handler, which
    // finds its state through the server
    for (id, n) in [("c1", "1"), ("c2", "2")] {
        let got = ask(
            &mut c,
            "counter.localhost",
            id,
            &format!("<count xmlns='{NS}'/>"),
        )
        .await;
        assert!(got.contains("type='result'"), "{got}");
        assert!(got.contains(&format!("n='{n}'")), "{got}");
    }
    // the host's disco#items lists it beside the built-in services
    let items = ask(&mut c, "localhost", "i", DISCO_ITEMS).await;
    assert!(items.contains("counter.localhost"), "{items}");
    assert!(items.contains("conference.localhost"), "{items}");
    // and the host's disco#info names it by the identity it declared
    let host = ask(&mut c, "localhost", "h", DISCO_INFO).await;
    assert!(
        host.contains("type='counter'") && host.contains("name='counter.localhost'"),
        "{host}"
    );

    let _ = std::fs::remove_dir_all(dir);
}
