//! RFC 7395: XMPP over WebSocket. Every message is one complete element;
//! `<open/>` and `<close/>` stand in for the stream tags.

use std::io;
use std::net::IpAddr;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use conclave_server::transport::{ConnInfo, Event, FrameReader, FrameWriter, Transport};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use xmpp_core::framing::{FramingError, parse_ws_message};
use xmpp_core::sasl::ChannelBinding;
use xmpp_core::stanza;

pub struct WsTransport {
    ws: WebSocket,
    peer: IpAddr,
    max: usize,
    depth: usize,
}

impl WsTransport {
    /// `max`: the largest stanza in bytes; `depth`: its deepest nesting.
    pub fn new(ws: WebSocket, peer: IpAddr, max: usize, depth: usize) -> Self {
        WsTransport {
            ws,
            peer,
            max,
            depth,
        }
    }
}

async fn recv_ws(
    ws: &mut (impl StreamExt<Item = Result<Message, axum::Error>> + Unpin),
    max: usize,
    depth: usize,
) -> Event {
    loop {
        let msg = match ws.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                // A frame over the size cap is a policy violation, not a
                // broken connection: say so before closing.
                let inner = e.into_inner();
                return match inner.downcast_ref::<tungstenite::Error>() {
                    Some(tungstenite::Error::Capacity(_)) => {
                        Event::Error(FramingError::PolicyViolation)
                    }
                    _ => Event::Gone,
                };
            }
            None => return Event::Gone,
        };
        match msg {
            Message::Text(t) => {
                return match parse_ws_message(t.as_bytes(), max, depth) {
                    Ok(f) => Event::Frame(f),
                    Err(e) => Event::Error(e),
                };
            }
            Message::Binary(_) => return Event::Error(FramingError::NotWellFormed),
            Message::Close(_) => return Event::Gone,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

fn text(xml: &[u8]) -> io::Result<Message> {
    let s = std::str::from_utf8(xml).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    Ok(Message::Text(Utf8Bytes::from(s)))
}

fn closing(condition: Option<&str>) -> Vec<Message> {
    let mut out = Vec::new();
    if let Some(c) = condition {
        out.push(Message::Text(Utf8Bytes::from(stanza::stream_error(
            c, None,
        ))));
    }
    out.push(Message::Text(Utf8Bytes::from_static(
        "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
    )));
    out
}

fn io_err(_: axum::Error) -> io::Error {
    io::ErrorKind::BrokenPipe.into()
}

impl Transport for WsTransport {
    type Reader = WsReader;
    type Writer = WsWriter;

    fn info(&self) -> ConnInfo {
        ConnInfo {
            peer: self.peer,
            secure: true,
            starttls_available: false,
            kind: "websocket",
        }
    }

    async fn recv(&mut self) -> Event {
        recv_ws(&mut self.ws, self.max, self.depth).await
    }

    async fn send_header(&mut self, from: &str, id: &str) -> io::Result<()> {
        let open = format!(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='{}' id='{}' version='1.0' xml:lang='en'/>",
            stanza::escape(from),
            stanza::escape(id)
        );
        self.ws
            .send(Message::Text(open.into()))
            .await
            .map_err(io_err)
    }

    async fn send(&mut self, xml: &[u8]) -> io::Result<()> {
        self.ws.send(text(xml)?).await.map_err(io_err)
    }

    async fn starttls(&mut self) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn restart(&mut self) {}

    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::None
    }

    async fn close(mut self, condition: Option<&str>) {
        for m in closing(condition) {
            let _ = self.ws.send(m).await;
        }
        let _ = self.ws.close().await;
    }

    fn split(self) -> (WsReader, WsWriter) {
        let (sink, stream) = self.ws.split();
        (
            WsReader {
                stream,
                max: self.max,
                depth: self.depth,
            },
            WsWriter { sink },
        )
    }
}

pub struct WsReader {
    stream: SplitStream<WebSocket>,
    max: usize,
    depth: usize,
}

impl FrameReader for WsReader {
    async fn recv(&mut self) -> Event {
        recv_ws(&mut self.stream, self.max, self.depth).await
    }
}

pub struct WsWriter {
    sink: SplitSink<WebSocket, Message>,
}

impl FrameWriter for WsWriter {
    async fn send(&mut self, xml: &[u8]) -> io::Result<()> {
        self.sink.feed(text(xml)?).await.map_err(io_err)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.sink.flush().await.map_err(io_err)
    }

    async fn close(mut self, condition: Option<&str>) {
        for m in closing(condition) {
            let _ = self.sink.feed(m).await;
        }
        let _ = self.sink.flush().await;
        let _ = self.sink.close().await;
    }
}
