//! The hub's dispatch without sockets: sessions are channels, the store is
//! SQLite in a temporary directory.

use std::sync::Arc;

use conclave_server::hub::Session;
use conclave_server::router::{Outbound, PresenceState, SessionHandle};
use conclave_server::{Config, Server};
use conclave_store::{Accounts, SqliteStore};
use xmpp_core::Element;
use xmpp_core::framing::parse_element;

struct Env {
    server: Arc<Server>,
    dir: std::path::PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn env(name: &str) -> Env {
    env_with(name, Config::default()).await
}

async fn env_with(name: &str, config: Config) -> Env {
    let dir = std::env::temp_dir().join(format!("conclave-routing-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(&dir.join("db.sqlite")).await.unwrap();
    for u in ["alice", "bob"] {
        store.create_user("localhost", u, &[]).await.unwrap();
    }
    Env {
        server: Server::new(config, Arc::new(store)),
        dir,
    }
}

fn bind(
    server: &Server,
    user: &str,
    resource: &str,
    available: bool,
) -> (Session, conclave_server::router::OutRx) {
    let (tx, rx) = conclave_server::router::queue();
    let handle = Arc::new(SessionHandle {
        id: server.router.next_id(),
        full: format!("{user}@localhost/{resource}"),
        bare: format!("{user}@localhost"),
        tx,
        state: std::sync::Mutex::new(PresenceState {
            available,
            ..Default::default()
        }),
        inactive: Default::default(),
        flow: Default::default(),
    });
    server.router.bind(handle.clone());
    let s = Session {
        handle,
        user: user.into(),
        host: "localhost".into(),
        anonymous: false,
    };
    (s, rx)
}

fn el(xml: &str) -> Element {
    parse_element(xml.as_bytes(), 1 << 20).unwrap()
}

fn recv(rx: &mut conclave_server::router::OutRx) -> Option<Element> {
    match rx.try_recv() {
        Ok(Outbound::Stanza(b)) => Some(parse_element(&b, 1 << 20).unwrap()),
        _ => None,
    }
}

#[tokio::test]
async fn message_to_bare_jid_reaches_every_available_resource_once_and_is_stamped() {
    let e = env("bare").await;
    let (alice, _a) = bind(&e.server, "alice", "phone", true);
    let (_b1, mut rx1) = bind(&e.server, "bob", "one", true);
    let (_b2, mut rx2) = bind(&e.server, "bob", "two", true);
    let (_b3, mut rx3) = bind(&e.server, "bob", "away", false);
    let m = el(
        "<message xmlns='jabber:client' to='Bob@LOCALHOST' type='chat'><body>hi</body><x xmlns='urn:unknown'><y a='1'/></x></message>",
    );
    e.server.handle_stanza(&alice, m).await.unwrap();
    for rx in [&mut rx1, &mut rx2] {
        let got = recv(rx).expect("delivered");
        assert_eq!(got.attr("from"), Some("alice@localhost/phone"));
        assert_eq!(got.attr("to"), Some("bob@localhost"));
        // Unknown payloads pass through untouched.
        assert_eq!(
            got.get_child("x", "urn:unknown")
                .unwrap()
                .get_child("y", "urn:unknown")
                .unwrap()
                .attr("a"),
            Some("1")
        );
        assert!(recv(rx).is_none(), "exactly once");
    }
    assert!(recv(&mut rx3).is_none(), "not to an unavailable resource");
}

#[tokio::test]
async fn spoofed_from_is_a_stream_error() {
    let e = env("spoof").await;
    let (alice, _a) = bind(&e.server, "alice", "r", true);
    let m = el(
        "<message xmlns='jabber:client' from='bob@localhost/x' to='bob@localhost'><body>x</body></message>",
    );
    assert_eq!(e.server.handle_stanza(&alice, m).await, Err("invalid-from"));
    let own = el(
        "<message xmlns='jabber:client' from='alice@localhost' to='bob@localhost'><body>x</body></message>",
    );
    assert_eq!(e.server.handle_stanza(&alice, own).await, Ok(()));
}

#[tokio::test]
async fn unknown_iq_namespace_gets_service_unavailable() {
    let e = env("iq").await;
    let (alice, mut rx) = bind(&e.server, "alice", "r", true);
    let iq = el(
        "<iq xmlns='jabber:client' type='get' id='q1' to='localhost'><query xmlns='urn:example:nothing'/></iq>",
    );
    e.server.handle_stanza(&alice, iq).await.unwrap();
    let reply = recv(&mut rx).unwrap();
    assert_eq!(reply.attr("type"), Some("error"));
    assert_eq!(reply.attr("id"), Some("q1"));
    let err = reply.get_child("error", "jabber:client").unwrap();
    assert!(err.has_child("service-unavailable", "urn:ietf:params:xml:ns:xmpp-stanzas"));
}

#[tokio::test]
async fn message_to_offline_user_is_stored_before_the_next_stanza() {
    let e = env("offline").await;
    let (alice, mut rx) = bind(&e.server, "alice", "r", true);
    let m = el(
        "<message xmlns='jabber:client' to='bob@localhost' type='chat'><body>later</body></message>",
    );
    e.server.handle_stanza(&alice, m).await.unwrap();
    // Nothing bounced, and the store has it already.
    assert!(recv(&mut rx).is_none());
    let stored = e.server.store.list("bob@localhost").await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].stanza.contains("later"));
    // A user that does not exist bounces.
    let m = el(
        "<message xmlns='jabber:client' to='nobody@localhost' type='chat'><body>x</body></message>",
    );
    e.server.handle_stanza(&alice, m).await.unwrap();
    let bounce = recv(&mut rx).unwrap();
    assert_eq!(bounce.attr("type"), Some("error"));
}

#[tokio::test]
async fn groupchat_to_a_user_is_refused() {
    let e = env("gc").await;
    let (alice, mut rx) = bind(&e.server, "alice", "r", true);
    let (_bob, mut brx) = bind(&e.server, "bob", "r", true);
    let m = el(
        "<message xmlns='jabber:client' to='bob@localhost' type='groupchat'><body>x</body></message>",
    );
    e.server.handle_stanza(&alice, m).await.unwrap();
    assert!(recv(&mut brx).is_none());
    assert_eq!(recv(&mut rx).unwrap().attr("type"), Some("error"));
}

#[tokio::test]
async fn disco_lists_what_modules_registered() {
    let e = env("disco").await;
    let (alice, mut rx) = bind(&e.server, "alice", "r", true);
    let iq = el(
        "<iq xmlns='jabber:client' type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    e.server.handle_stanza(&alice, iq).await.unwrap();
    let reply = recv(&mut rx).unwrap();
    let q = reply
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    let features: Vec<String> = q
        .children()
        .filter(|c| c.name() == "feature")
        .filter_map(|c| c.attr("var").map(str::to_owned))
        .collect();
    assert_eq!(
        features.iter().map(String::as_str).collect::<Vec<_>>(),
        e.server.server_features().to_vec()
    );
    for f in [
        "urn:xmpp:ping",
        "vcard-temp",
        "jabber:iq:version",
        "urn:xmpp:time",
        "urn:xmpp:extdisco:2",
    ] {
        assert!(features.iter().any(|x| x == f), "{f}");
    }
}

/// A component's connection as the hub sees it: a session on its domain,
/// reached through no router entry.
fn component_session(domain: &str) -> (Session, conclave_server::router::OutRx) {
    let (tx, rx) = conclave_server::router::queue();
    let handle = Arc::new(SessionHandle {
        id: 1_000_000,
        full: domain.into(),
        bare: domain.into(),
        tx,
        state: Default::default(),
        inactive: Default::default(),
        flow: Default::default(),
    });
    let s = Session {
        handle,
        user: String::new(),
        host: domain.into(),
        anonymous: false,
    };
    (s, rx)
}

fn condition(reply: &Element) -> Option<String> {
    reply
        .get_child("error", "jabber:client")?
        .children()
        .find(|c| c.ns() == "urn:ietf:params:xml:ns:xmpp-stanzas")
        .map(|c| c.name().to_owned())
}

#[tokio::test]
async fn component_stanzas_are_routed_and_confined_to_its_domain() {
    let mut cfg = Config::default();
    cfg.components.list = vec![conclave_server::config::ComponentEntry {
        domain: "bot.localhost".into(),
        secret: "s".into(),
    }];
    let e = env_with("component", cfg).await;
    let (bot, mut rx) = component_session("bot.localhost");
    let (alice, mut arx) = bind(&e.server, "alice", "r", true);

    // Any address in its domain, kept as sent; to a bare JID like any message.
    let m = el(
        "<message xmlns='jabber:client' from='Echo@bot.localhost/x' to='alice@localhost' type='chat'><body>hi</body></message>",
    );
    e.server.handle_component_stanza(&bot, m).await.unwrap();
    let got = recv(&mut arx).expect("delivered");
    assert_eq!(got.attr("from"), Some("echo@bot.localhost/x"));
    // No `from`: the domain itself.
    let m = el("<message xmlns='jabber:client' to='alice@localhost'><body>x</body></message>");
    e.server.handle_component_stanza(&bot, m).await.unwrap();
    assert_eq!(recv(&mut arx).unwrap().attr("from"), Some("bot.localhost"));

    // Outside its domain: the stream closes.
    for from in ["alice@localhost", "localhost", "x@other.localhost", "@@"] {
        let m = el(&format!(
            "<message xmlns='jabber:client' from='{from}' to='alice@localhost'><body>x</body></message>"
        ));
        assert_eq!(
            e.server.handle_component_stanza(&bot, m).await,
            Err("invalid-from"),
            "{from}"
        );
    }
    assert!(recv(&mut arx).is_none());

    // No `to`: bad-request. Services are not for the addresses a
    // component speaks for; only the component itself (its domain, as a
    // bridge in the brewery room) reaches them.
    let iq = el(
        "<iq xmlns='jabber:client' type='get' id='a' from='b@bot.localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    e.server.handle_component_stanza(&bot, iq).await.unwrap();
    assert_eq!(
        condition(&recv(&mut rx).unwrap()).as_deref(),
        Some("bad-request")
    );
    let iq = el(
        "<iq xmlns='jabber:client' type='get' id='b' from='b@bot.localhost' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
    );
    e.server.handle_component_stanza(&bot, iq).await.unwrap();
    assert_eq!(
        condition(&recv(&mut rx).unwrap()).as_deref(),
        Some("service-unavailable")
    );
    let iq = el(
        "<iq xmlns='jabber:client' type='get' id='b2' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
    );
    e.server.handle_component_stanza(&bot, iq).await.unwrap();
    let r = recv(&mut rx).unwrap();
    assert_eq!((r.attr("type"), r.attr("id")), (Some("result"), Some("b2")));

    // Read-only questions to the server are answered; account business is not its.
    let iq = el(
        "<iq xmlns='jabber:client' type='get' id='c' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    e.server.handle_component_stanza(&bot, iq).await.unwrap();
    let r = recv(&mut rx).unwrap();
    assert_eq!(
        (r.attr("type"), r.attr("to")),
        (Some("result"), Some("bot.localhost"))
    );
    for payload in [
        "<query xmlns='jabber:iq:register'><remove/></query>",
        "<query xmlns='jabber:iq:roster'/>",
        "<services xmlns='urn:xmpp:extdisco:2'/>",
    ] {
        let iq = el(&format!(
            "<iq xmlns='jabber:client' type='set' id='d' to='localhost'>{payload}</iq>"
        ));
        e.server.handle_component_stanza(&bot, iq).await.unwrap();
        assert_eq!(
            condition(&recv(&mut rx).unwrap()).as_deref(),
            Some("service-unavailable"),
            "{payload}"
        );
    }
    assert!(e.server.user_exists("alice@localhost").await);

    // A client writing to the component while it is away gets an error.
    let m = el(
        "<message xmlns='jabber:client' to='echo@bot.localhost' type='chat'><body>x</body></message>",
    );
    e.server.handle_stanza(&alice, m).await.unwrap();
    assert_eq!(
        condition(&recv(&mut arx).unwrap()).as_deref(),
        Some("service-unavailable")
    );
    // A subscription request gets the roster's answer for an unknown
    // contact: subscriptions with components are not supported.
    let p = el("<presence xmlns='jabber:client' to='echo@bot.localhost' type='subscribe'/>");
    e.server.handle_stanza(&alice, p).await.unwrap();
    let mut answered = false;
    while let Some(got) = recv(&mut arx) {
        answered |= got.name() == "presence"
            && got.attr("type") == Some("unsubscribed")
            && got.attr("from") == Some("echo@bot.localhost");
    }
    assert!(answered);
    // ... and the host lists it.
    assert!(
        e.server
            .services_of("localhost")
            .contains(&"bot.localhost".to_owned())
    );
}

#[tokio::test]
async fn a_user_who_blocked_a_component_hears_nothing_from_it() {
    let mut cfg = Config::default();
    cfg.components.list = vec![conclave_server::config::ComponentEntry {
        domain: "bot.localhost".into(),
        secret: "s".into(),
    }];
    let e = env_with("component-block", cfg).await;
    let (bot, mut rx) = component_session("bot.localhost");
    let (alice, mut arx) = bind(&e.server, "alice", "r", true);
    let block = el(
        "<iq xmlns='jabber:client' type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='bot.localhost'/></block></iq>",
    );
    e.server.handle_stanza(&alice, block).await.unwrap();
    assert_eq!(recv(&mut arx).unwrap().attr("type"), Some("result"));
    let m = el(
        "<message xmlns='jabber:client' from='news@bot.localhost' to='alice@localhost/r' type='chat'><body>hi</body></message>",
    );
    e.server.handle_component_stanza(&bot, m).await.unwrap();
    assert!(recv(&mut arx).is_none(), "delivered despite the block");
    assert_eq!(
        condition(&recv(&mut rx).unwrap()).as_deref(),
        Some("service-unavailable")
    );
    let p = el("<presence xmlns='jabber:client' from='news@bot.localhost' to='alice@localhost'/>");
    e.server.handle_component_stanza(&bot, p).await.unwrap();
    assert!(recv(&mut arx).is_none() && recv(&mut rx).is_none());
}
