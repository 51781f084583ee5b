//! MUC fan-out: one groupchat message into a room of N occupants, from
//! bytes off the wire to every occupant's bytes in its write buffer (parse,
//! route, one serialisation, N queue pushes, N address splices).
//!
//! `cargo bench -p conclave-server --bench muc`; CPU per delivered stanza
//! is the time per iteration divided by N (criterion's throughput line
//! reports it as elements per second).

use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave_server::hub::Session;
use conclave_server::router::{Outbound, PresenceState, SessionHandle};
use conclave_server::{Config, Server};
use conclave_store::SqliteStore;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use xmpp_core::framing::{Frame, StreamParser, parse_element};
use xmpp_core::stanza;

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xml:lang='en' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
const MESSAGE: &[u8] = b"<message to='bench@conference.localhost' type='groupchat' id='8f2c1d'><body>The build is green again; deploying to staging in five minutes.</body><origin-id xmlns='urn:xmpp:sid:0' id='0b7e5a1c-4d2f-4e8a-9c3b-1f6d2e8a7b90'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>";

/// The allocator the server runs with (see the binary's main.rs).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Member {
    session: Session,
    rx: conclave_server::router::OutRx,
    /// What the session's writer would hold.
    buf: Vec<u8>,
    to_attr: String,
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("conclave-bench-muc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = rt
        .block_on(SqliteStore::open(&dir.join("db.sqlite")))
        .expect("store");
    let server = Server::new(Config::default(), Arc::new(store));
    let mut group = c.benchmark_group("muc fan-out");
    for n in [10usize, 100, 500] {
        let room = format!("bench{n}@conference.localhost");
        let message = String::from_utf8_lossy(MESSAGE).replace("bench@conference.localhost", &room);
        let mut members: Vec<Member> = (0..n)
            .map(|i| {
                let (tx, rx) = conclave_server::router::queue();
                let full = format!("user{i}@localhost/desk");
                let handle = Arc::new(SessionHandle {
                    id: server.router.next_id(),
                    full: full.clone(),
                    bare: format!("user{i}@localhost"),
                    tx,
                    state: std::sync::Mutex::new(PresenceState::default()),
                    inactive: Default::default(),
                    flow: Default::default(),
                });
                server.router.bind(handle.clone());
                Member {
                    session: Session {
                        handle,
                        user: format!("user{i}"),
                        host: "localhost".into(),
                        anonymous: false,
                    },
                    rx,
                    buf: Vec::with_capacity(64 * 1024),
                    to_attr: format!(" to='{full}'"),
                }
            })
            .collect();
        rt.block_on(async {
            for (i, m) in members.iter().enumerate() {
                let p = parse_element(
                    format!("<presence xmlns='jabber:client' to='{room}/nick{i}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>").as_bytes(),
                    1 << 16,
                )
                .expect("presence");
                server.handle_stanza(&m.session, p).await.expect("join");
            }
        });
        for m in &mut members {
            while m.rx.try_recv().is_ok() {}
        }
        let mut parser = StreamParser::new(256 * 1024);
        let mut frames = Vec::new();
        parser.feed(HEADER, &mut frames).expect("header");
        frames.clear();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{n} occupants"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        parser.feed(message.as_bytes(), &mut frames).expect("parse");
                        for f in frames.drain(..) {
                            if let Frame::Stanza(el) = f {
                                server
                                    .handle_stanza(&members[0].session, el)
                                    .await
                                    .expect("route");
                            }
                        }
                        for m in &mut members {
                            match m.rx.try_recv() {
                                Ok(Outbound::ToSelf(b)) => {
                                    let at = stanza::name_end(&b);
                                    m.buf.extend_from_slice(&b[..at]);
                                    m.buf.extend_from_slice(m.to_attr.as_bytes());
                                    m.buf.extend_from_slice(&b[at..]);
                                    m.buf.clear();
                                }
                                other => panic!("occupant got {other:?}"),
                            }
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
