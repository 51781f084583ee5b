//! A scripted client connection for tests that drive real sessions:
//! the test plays the client's frames and reads what the server writes.
#![allow(dead_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use conclave_server::Server;
use conclave_server::transport::{ConnInfo, Event, FrameReader, FrameWriter, Transport};
use tokio::sync::mpsc;
use xmpp_core::framing::{Frame, StreamHeader, parse_element};
use xmpp_core::sasl::ChannelBinding;

/// What the test feeds the session: a frame, or a panic in its read loop.
pub enum In {
    Frame(Frame),
    Panic,
}

pub struct Scripted {
    input: mpsc::UnboundedReceiver<In>,
    output: mpsc::UnboundedSender<String>,
}

pub struct Reader(mpsc::UnboundedReceiver<In>);
pub struct Writer(mpsc::UnboundedSender<String>);

async fn next(input: &mut mpsc::UnboundedReceiver<In>) -> Event {
    match input.recv().await {
        Some(In::Frame(f)) => Event::Frame(f),
        Some(In::Panic) => panic!("a bug in stanza handling"),
        None => Event::Gone,
    }
}

impl Transport for Scripted {
    type Reader = Reader;
    type Writer = Writer;

    fn info(&self) -> ConnInfo {
        ConnInfo {
            peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
            secure: true,
            starttls_available: false,
            kind: "test",
        }
    }
    async fn recv(&mut self) -> Event {
        next(&mut self.input).await
    }
    async fn send_header(&mut self, _from: &str, _id: &str) -> io::Result<()> {
        Ok(())
    }
    async fn send(&mut self, xml: &[u8]) -> io::Result<()> {
        let _ = self.output.send(String::from_utf8_lossy(xml).into_owned());
        Ok(())
    }
    async fn starttls(&mut self) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn restart(&mut self) {}
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::None
    }
    async fn close(self, condition: Option<&str>) {
        let _ = self.output.send(format!("CLOSE {condition:?}"));
    }
    fn split(self) -> (Reader, Writer) {
        (Reader(self.input), Writer(self.output))
    }
}

impl FrameReader for Reader {
    async fn recv(&mut self) -> Event {
        next(&mut self.0).await
    }
}

impl FrameWriter for Writer {
    async fn send(&mut self, xml: &[u8]) -> io::Result<()> {
        let _ = self.0.send(String::from_utf8_lossy(xml).into_owned());
        Ok(())
    }
    async fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    async fn close(self, condition: Option<&str>) {
        let _ = self.0.send(format!("CLOSE {condition:?}"));
    }
}

pub struct Client {
    pub input: mpsc::UnboundedSender<In>,
    pub output: mpsc::UnboundedReceiver<String>,
    pub jid: String,
}

impl Client {
    pub fn send(&self, xml: &str) {
        let el = parse_element(xml.as_bytes(), 1 << 16).expect("test stanza");
        let _ = self.input.send(In::Frame(Frame::Stanza(el)));
    }

    pub async fn until(&mut self, what: &str) -> String {
        let wait = async {
            loop {
                match self.output.recv().await {
                    Some(s) if s.contains(what) => return s,
                    Some(_) => {}
                    None => panic!("connection ended before {what}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .unwrap_or_else(|_| panic!("nothing with {what} within 5 s"))
    }
}

/// A guest (SASL ANONYMOUS) session on the scripted transport, bound.
pub async fn guest(server: &Arc<Server>) -> Client {
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    tokio::spawn(conclave_server::session::run(
        server.clone(),
        Scripted {
            input: in_rx,
            output: out_tx,
        },
    ));
    let open = || {
        In::Frame(Frame::Open(StreamHeader {
            to: Some("guest.localhost".into()),
            version: Some("1.0".into()),
            ns: xmpp_core::ns::STREAM.into(),
            default_ns: Some(xmpp_core::ns::CLIENT.into()),
            ..Default::default()
        }))
    };
    let mut c = Client {
        input: in_tx,
        output: out_rx,
        jid: String::new(),
    };
    let _ = c.input.send(open());
    c.until("ANONYMOUS").await;
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>");
    c.until("<success").await;
    let _ = c.input.send(open());
    c.until("bind").await;
    c.send("<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
    let bound = c.until("<jid>").await;
    let start = bound.find("<jid>").map_or(0, |i| i + 5);
    let end = bound.find("</jid>").unwrap_or(start);
    c.jid = bound[start..end].to_owned();
    c.send("<presence xmlns='jabber:client'/>");
    c
}

/// Waits until exactly `n` sessions are bound.
pub async fn bound(server: &Server, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.router.count() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} sessions bound, not {n}",
            server.router.count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
