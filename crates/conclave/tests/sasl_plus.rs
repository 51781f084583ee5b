//! SCRAM-*-PLUS with tls-exporter channel binding against the real binary,
//! driven by rsasl's client (an implementation we did not write): slixmpp
//! cannot bind to tls-exporter, so this is the -PLUS end-to-end test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::mechanisms::scram::{SCRAM_SHA1, SCRAM_SHA1_PLUS, SCRAM_SHA256, SCRAM_SHA256_PLUS};
use rsasl::prelude::{
    ChannelBindingCallback, Mechname, Registry, SASLClient, SASLConfig, SessionError,
};
use rsasl::property::{AuthId, Password};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use xmpp_core::Element;
use xmpp_core::framing::{Frame, StreamParser};

const BIN: &str = env!("CARGO_BIN_EXE_conclave");

struct Server {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn conclave(dir: &PathBuf, port: u16) -> Command {
    let mut c = Command::new(BIN);
    c.env("CONCLAVE_DATA_DIR", dir)
        .env("CONCLAVE_C2S__STARTTLS_PORT", "0")
        .env("CONCLAVE_C2S__DIRECT_TLS_PORT", port.to_string())
        .env("CONCLAVE_HTTP__PORT", "0")
        .env("CONCLAVE_LOG__LEVEL", "warn");
    c
}

fn start() -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = std::env::temp_dir().join(format!("conclave-plus-{}-{port}", std::process::id()));
    let mut add = conclave(&dir, port)
        .args(["user", "add", "juliet@localhost"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("user add");
    add.stdin
        .take()
        .expect("stdin")
        .write_all_sync("r0m30 ü\n".as_bytes());
    assert!(add.wait().expect("user add").success());
    let child = conclave(&dir, port).arg("serve").spawn().expect("serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, dir, port }
}

trait WriteAllSync {
    fn write_all_sync(self, b: &[u8]);
}

impl WriteAllSync for std::process::ChildStdin {
    fn write_all_sync(mut self, b: &[u8]) {
        std::io::Write::write_all(&mut self, b).expect("write password");
    }
}

struct Creds {
    password: &'static str,
}

impl SessionCallback for Creds {
    fn callback(
        &self,
        _: &SessionData,
        _: &Context,
        request: &mut Request<'_>,
    ) -> Result<(), SessionError> {
        request
            .satisfy::<AuthId>("juliet")?
            .satisfy::<Password>(self.password.as_bytes())?;
        Ok(())
    }

    fn enable_channel_binding(&self) -> bool {
        true
    }
}

struct Exporter(Vec<u8>);

impl ChannelBindingCallback for Exporter {
    fn get_cb_data(&self, cbname: &str) -> Option<&[u8]> {
        (cbname == "tls-exporter").then_some(self.0.as_slice())
    }
}

struct Conn {
    tls: TlsStream<TcpStream>,
    parser: StreamParser,
    frames: std::collections::VecDeque<Frame>,
}

impl Conn {
    async fn open(srv: &Server) -> Conn {
        let cert = srv.dir.join("tls/cert.pem");
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&cert).expect("cert") {
            roots.add(c.expect("cert")).expect("root");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(("127.0.0.1", srv.port))
            .await
            .expect("connect");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("tls handshake");
        let mut c = Conn {
            tls,
            parser: StreamParser::new(1 << 20),
            frames: Default::default(),
        };
        c.send("<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>").await;
        assert!(matches!(c.next().await, Frame::Open(_)));
        c
    }

    async fn send(&mut self, s: &str) {
        self.tls.write_all(s.as_bytes()).await.expect("write");
    }

    async fn next(&mut self) -> Frame {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(f) = self.frames.pop_front() {
                return f;
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.tls.read(&mut buf))
                .await
                .expect("server answered in time")
                .expect("read");
            assert!(n > 0, "server closed the connection");
            let mut out = Vec::new();
            self.parser
                .feed(&buf[..n], &mut out)
                .expect("server sent well-formed XML");
            self.frames.extend(out);
        }
    }

    async fn element(&mut self) -> Element {
        match self.next().await {
            Frame::Stanza(e) => e,
            f => panic!("expected an element, got {f:?}"),
        }
    }

    fn exporter(&self) -> Vec<u8> {
        let mut out = vec![0u8; 32];
        self.tls
            .get_ref()
            .1
            .export_keying_material(&mut out, b"EXPORTER-Channel-Binding", None)
            .expect("exporter");
        out
    }

    /// Runs one SASL exchange with rsasl; returns the final element's name
    /// and, on failure, its condition.
    async fn authenticate(
        &mut self,
        mech: &str,
        password: &'static str,
        cb: Vec<u8>,
    ) -> (String, String) {
        let mechs: &'static [rsasl::prelude::Mechanism] = Box::leak(Box::new([
            SCRAM_SHA1,
            SCRAM_SHA1_PLUS,
            SCRAM_SHA256,
            SCRAM_SHA256_PLUS,
        ]));
        let config = SASLConfig::builder()
            .with_registry(Registry::with_mechanisms(mechs))
            .with_callback(Creds { password })
            .expect("config");
        let name = Mechname::parse(mech.as_bytes()).expect("mechname");
        let mut session = SASLClient::with_cb(config, Exporter(cb))
            .start_suggested(&[name])
            .expect("mechanism");
        let mut out = Vec::new();
        session.step(None, &mut out).expect("client-first");
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{}</auth>",
            B64.encode(&out)
        ))
        .await;
        loop {
            let el = self.element().await;
            match el.name() {
                "challenge" => {
                    let data = B64.decode(el.text().trim()).expect("base64 challenge");
                    let mut out = Vec::new();
                    session.step(Some(&data), &mut out).expect("client-final");
                    self.send(&format!(
                        "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
                        B64.encode(&out)
                    ))
                    .await;
                }
                "success" => {
                    let data = B64.decode(el.text().trim()).expect("base64 success");
                    // rsasl checks the server signature: the server proved
                    // it knows the keys and saw the same channel.
                    let state = session
                        .step(Some(&data), &mut Vec::new())
                        .expect("server signature verifies");
                    assert!(state.is_finished());
                    return ("success".into(), String::new());
                }
                "failure" => {
                    let cond = el
                        .children()
                        .next()
                        .map(|c| c.name().to_owned())
                        .unwrap_or_default();
                    return ("failure".into(), cond);
                }
                other => panic!("unexpected {other}"),
            }
        }
    }
}

async fn features(c: &mut Conn) -> Vec<String> {
    let f = c.element().await;
    assert_eq!(f.name(), "features");
    f.get_child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
        .expect("mechanisms offered")
        .children()
        .map(|m| m.text())
        .collect()
}

#[tokio::test]
async fn scram_plus_binds_to_the_tls_channel() {
    let srv = start();
    for mech in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"] {
        let mut c = Conn::open(&srv).await;
        let offered = features(&mut c).await;
        assert!(
            offered.iter().any(|m| m == mech),
            "{mech} offered in {offered:?}"
        );
        let cb = c.exporter();
        assert_eq!(
            c.authenticate(mech, "r0m30 ü", cb).await,
            ("success".into(), String::new())
        );
    }
    // Channel-binding data from another channel (a man in the middle's)
    // does not match this TLS session.
    let mut c = Conn::open(&srv).await;
    features(&mut c).await;
    assert_eq!(
        c.authenticate("SCRAM-SHA-256-PLUS", "r0m30 ü", vec![7u8; 32])
            .await,
        ("failure".into(), "not-authorized".into())
    );
    // A binding-capable client told only of plain SCRAM (a stripped
    // -PLUS offer) says 'y'; the server did offer -PLUS, so it refuses.
    let mut c = Conn::open(&srv).await;
    features(&mut c).await;
    let cb = c.exporter();
    assert_eq!(
        c.authenticate("SCRAM-SHA-256", "r0m30 ü", cb).await,
        ("failure".into(), "not-authorized".into())
    );
    // And a wrong password fails with -PLUS as well.
    let mut c = Conn::open(&srv).await;
    features(&mut c).await;
    let cb = c.exporter();
    assert_eq!(
        c.authenticate("SCRAM-SHA-256-PLUS", "wrong", cb).await,
        ("failure".into(), "not-authorized".into())
    );
}
