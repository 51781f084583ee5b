//! parse → route → serialise for one typical 1:1 chat message between two
//! online users: the hot path of every message the server carries.
//!
//! `cargo bench -p conclave-server --bench route`; stanzas per second per
//! core is 1 / (time per iteration). The store is SQLite in a temporary
//! directory and is never touched on this path (online delivery does not
//! wait on the database).

use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave_server::hub::Session;
use conclave_server::router::{Outbound, PresenceState, SessionHandle};
use conclave_server::{Config, Server};
use conclave_store::SqliteStore;
use criterion::{Criterion, criterion_group, criterion_main};
use xmpp_core::framing::{Frame, StreamParser};

/// The allocator the server runs with (see the binary's main.rs).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xml:lang='en' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
const MESSAGE: &[u8] = b"<message to='bob@localhost' type='chat' id='a1b2c3d4-e5f6'><body>Are we still meeting at three? I have booked the small room.</body><active xmlns='http://jabber.org/protocol/chatstates'/><request xmlns='urn:xmpp:receipts'/><origin-id xmlns='urn:xmpp:sid:0' id='5f1e3c2a-9b7d-4c6e-8a1f-2d3b4c5d6e7f'/></message>";

fn session(server: &Server, user: &str) -> (Session, conclave_server::router::OutRx) {
    let (tx, rx) = conclave_server::router::queue();
    let handle = Arc::new(SessionHandle {
        id: server.router.next_id(),
        full: format!("{user}@localhost/bench"),
        bare: format!("{user}@localhost"),
        tx,
        state: std::sync::Mutex::new(PresenceState {
            available: true,
            ..Default::default()
        }),
        inactive: Default::default(),
        flow: Default::default(),
    });
    server.router.bind(handle.clone());
    (
        Session {
            handle,
            user: user.into(),
            host: "localhost".into(),
            anonymous: false,
        },
        rx,
    )
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("conclave-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = rt
        .block_on(SqliteStore::open(&dir.join("db.sqlite")))
        .expect("store");
    let server = Server::new(Config::default(), Arc::new(store));
    let (alice, _alice_rx) = session(&server, "alice");
    let (_bob, bob_rx) = session(&server, "bob");
    let mut parser = StreamParser::new(256 * 1024);
    let mut frames = Vec::new();
    parser.feed(HEADER, &mut frames).expect("header");
    frames.clear();

    c.bench_function("message parse-route-serialise", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    parser.feed(MESSAGE, &mut frames).expect("parse");
                    for f in frames.drain(..) {
                        if let Frame::Stanza(el) = f {
                            server.handle_stanza(&alice, el).await.expect("route");
                        }
                    }
                    match bob_rx.try_recv() {
                        Ok(Outbound::Stanza(b)) => {
                            std::hint::black_box(b);
                        }
                        other => panic!("bob got {other:?}"),
                    }
                }
                start.elapsed()
            })
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
