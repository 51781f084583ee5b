//! What a session needs from a connection, whatever carries it (TCP with
//! or without TLS, WebSocket, BOSH). The runtime implements these.

use std::future::Future;
use std::io;
use std::net::IpAddr;

use xmpp_core::framing::{Frame, FramingError};
use xmpp_core::sasl::ChannelBinding;

#[derive(Debug)]
pub enum Event {
    Frame(Frame),
    /// The stream broke a framing rule; close with this condition.
    Error(FramingError),
    /// The peer went away (EOF, reset, BOSH session expired).
    Gone,
}

/// Facts about the connection that negotiation decides on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: IpAddr,
    pub secure: bool,
    pub starttls_available: bool,
    /// Label for logs and metrics: "tcp", "tls", "websocket", "bosh".
    pub kind: &'static str,
}

/// A connection during negotiation: it may upgrade to TLS and restart.
pub trait Transport: Send + 'static {
    type Reader: FrameReader;
    type Writer: FrameWriter;

    fn info(&self) -> ConnInfo;
    fn recv(&mut self) -> impl Future<Output = Event> + Send;
    /// Sends the transport's stream header (`<stream:stream>` or `<open/>`).
    fn send_header(&mut self, from: &str, id: &str) -> impl Future<Output = io::Result<()>> + Send;
    fn send(&mut self, xml: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Upgrades to TLS after `<proceed/>` was sent. Only called when
    /// `info().starttls_available`.
    fn starttls(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Forgets parser state: the client opens a new stream next.
    fn restart(&mut self);
    fn channel_binding(&self) -> ChannelBinding;
    /// Sends a stream error if any, closes the stream and the connection.
    fn close(self, condition: Option<&str>) -> impl Future<Output = ()> + Send;
    fn split(self) -> (Self::Reader, Self::Writer);
}

pub trait FrameReader: Send + 'static {
    fn recv(&mut self) -> impl Future<Output = Event> + Send;
}

pub trait FrameWriter: Send + 'static {
    /// Queues bytes; nothing need reach the peer before `flush`.
    fn send(&mut self, xml: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    fn close(self, condition: Option<&str>) -> impl Future<Output = ()> + Send;

    /// Sends one stanza given in parts (a shared body with an address
    /// spliced in). Transports that frame per stanza join the parts.
    fn send_parts(&mut self, parts: &[&[u8]]) -> impl Future<Output = io::Result<()>> + Send {
        let joined = parts.concat();
        async move { self.send(&joined).await }
    }
}
