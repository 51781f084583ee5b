//! RFC 7395: XMPP over WebSocket. Every message is one complete element;
//! `<open/>` and `<close/>` stand in for the stream tags.
//!
//! The upgrade is done here rather than by axum's `WebSocketUpgrade` so
//! that the client's bytes pass through [`Watched`] before tungstenite
//! sees them: tungstenite assembles fragments out of sight, and only the
//! bytes say when a message began.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use conclave_server::limits::Pace;
use conclave_server::transport::{ConnInfo, Event, FrameReader, FrameWriter, Transport};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use xmpp_core::framing::{FramingError, parse_ws_message};
use xmpp_core::sasl::ChannelBinding;
use xmpp_core::stanza;

type Socket = WebSocketStream<Watched<TokioIo<Upgraded>>>;

/// The limits one WebSocket connection is read under.
#[derive(Clone, Copy)]
pub struct WsLimits {
    /// The largest stanza in bytes.
    pub max: usize,
    /// Its deepest nesting.
    pub depth: usize,
    /// How long a message may take from its first byte to its last.
    pub message_timeout: Duration,
}

impl WsLimits {
    /// Frames and messages a little over the stanza cap are still read, so
    /// that the parser reports them; past this they are refused unread.
    fn wire_cap(&self) -> usize {
        self.max.saturating_add(1024)
    }
}

pub struct WsTransport {
    ws: Socket,
    peer: IpAddr,
    max: usize,
    depth: usize,
    pace: Pace,
}

impl WsTransport {
    /// Runs the WebSocket protocol over an upgraded connection.
    pub async fn new(io: Upgraded, peer: IpAddr, limits: WsLimits, pace: Pace) -> Self {
        let cap = limits.wire_cap();
        let config = WebSocketConfig::default()
            // Checked against each frame's header, before its payload is
            // read or room is made for it.
            .max_frame_size(Some(cap))
            // The fragments of one message together.
            .max_message_size(Some(cap));
        let io = Watched::new(TokioIo::new(io), cap as u64, limits.message_timeout);
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        WsTransport {
            ws,
            peer,
            max: limits.max,
            depth: limits.depth,
            pace,
        }
    }
}

async fn recv_ws(
    ws: &mut (impl StreamExt<Item = Result<Message, tungstenite::Error>> + Unpin),
    max: usize,
    depth: usize,
    pace: &mut Pace,
) -> Event {
    loop {
        pace.wait().await;
        let msg = match ws.next().await {
            Some(Ok(m)) => m,
            // A frame or message over the size cap, or one too slow to
            // finish, is a policy violation, not a broken connection: say
            // so before closing.
            Some(Err(tungstenite::Error::Capacity(_))) => {
                return Event::Error(FramingError::PolicyViolation);
            }
            Some(Err(tungstenite::Error::Io(e))) if Refused::is(&e) => {
                return Event::Error(FramingError::PolicyViolation);
            }
            Some(Err(_)) | None => return Event::Gone,
        };
        match msg {
            Message::Text(t) => {
                pace.charge(t.len());
                return match parse_ws_message(t.as_bytes(), max, depth) {
                    Ok(f) => Event::Frame(f),
                    Err(e) => Event::Error(e),
                };
            }
            Message::Binary(_) => return Event::Error(FramingError::NotWellFormed),
            Message::Close(_) => return Event::Gone,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
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

fn io_err(_: tungstenite::Error) -> io::Error {
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
        recv_ws(&mut self.ws, self.max, self.depth, &mut self.pace).await
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
        let _ = self.ws.close(None).await;
    }

    fn split(self) -> (WsReader, WsWriter) {
        let (sink, stream) = self.ws.split();
        (
            WsReader {
                stream,
                max: self.max,
                depth: self.depth,
                pace: self.pace,
            },
            WsWriter { sink },
        )
    }
}

pub struct WsReader {
    stream: SplitStream<Socket>,
    max: usize,
    depth: usize,
    pace: Pace,
}

impl FrameReader for WsReader {
    async fn recv(&mut self) -> Event {
        recv_ws(&mut self.stream, self.max, self.depth, &mut self.pace).await
    }
}

pub struct WsWriter {
    sink: SplitSink<Socket, Message>,
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

/// Why [`Watched`] stopped reading a connection; either closes the stream
/// with policy-violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// A frame, or the fragments of one message together, announced more
    /// than the cap.
    TooBig,
    /// A message (or a frame) not finished in time.
    TooSlow,
}

impl Refused {
    fn error(self) -> io::Error {
        io::Error::other(self)
    }

    fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|i| i.is::<Refused>())
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::TooBig => "websocket message over the size cap",
            Refused::TooSlow => "websocket message not finished in time",
        })
    }
}

impl std::error::Error for Refused {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Gathering a frame header (`head_len` bytes so far).
    Head,
    /// This many payload bytes of the current frame are still to come.
    Payload(u64),
}

/// Follows the client's frames (RFC 6455 §5.2) in its bytes as they
/// arrive, ahead of tungstenite and without copying payloads: what each
/// frame announces, and where a message begins and ends across its
/// fragments. It does not judge anything else; tungstenite does.
#[derive(Debug)]
struct FrameWatch {
    cap: u64,
    part: Part,
    /// The frame header being gathered: at most 2 + 8 + 4 bytes.
    head: [u8; 14],
    head_len: usize,
    /// A data frame without FIN was announced: its message is unfinished.
    open: bool,
    /// The message's payload so far, as its frames announced it.
    total: u64,
}

impl FrameWatch {
    fn new(cap: u64) -> Self {
        FrameWatch {
            cap,
            part: Part::Head,
            head: [0; 14],
            head_len: 0,
            open: false,
            total: 0,
        }
    }

    /// Something has begun and not finished: a frame, or a message.
    fn busy(&self) -> bool {
        self.part != Part::Head || self.head_len > 0 || self.open
    }

    /// The header's full size, once its first two bytes are known.
    fn head_size(&self) -> usize {
        if self.head_len < 2 {
            return 2;
        }
        let b1 = self.head[1];
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
    }

    /// Takes the bytes of one read. `Ok(true)` if a message (or a frame
    /// outside any message) ended in them: whatever is now unfinished
    /// began after that.
    fn feed(&mut self, mut bytes: &[u8]) -> Result<bool, Refused> {
        let mut ended = false;
        loop {
            match self.part {
                Part::Payload(0) => {
                    self.part = Part::Head;
                    ended |= !self.open;
                }
                Part::Payload(left) => {
                    if bytes.is_empty() {
                        return Ok(ended);
                    }
                    let n = left.min(bytes.len() as u64);
                    // n <= bytes.len(), so it fits a usize.
                    bytes = &bytes[n as usize..];
                    self.part = Part::Payload(left - n);
                }
                Part::Head => {
                    let want = self.head_size();
                    if self.head_len == want {
                        let len = self.begin_frame()?;
                        self.part = Part::Payload(len);
                        continue;
                    }
                    if bytes.is_empty() {
                        return Ok(ended);
                    }
                    let n = (want - self.head_len).min(bytes.len());
                    self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
                    self.head_len += n;
                    bytes = &bytes[n..];
                }
            }
        }
    }

    /// A whole header is in `head`: checks what it announces and returns
    /// the payload length.
    fn begin_frame(&mut self) -> Result<u64, Refused> {
        let h = &self.head;
        let len = match h[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
            n => u64::from(n),
        };
        let fin = h[0] & 0x80 != 0;
        let opcode = h[0] & 0x0f;
        self.head_len = 0;
        if len > self.cap {
            return Err(Refused::TooBig);
        }
        // Control frames (opcode 8 and up) may come between fragments
        // and belong to no message.
        if opcode & 0x08 == 0 {
            self.total = if opcode == 0 {
                self.total.saturating_add(len)
            } else {
                len
            };
            if self.total > self.cap {
                return Err(Refused::TooBig);
            }
            self.open = !fin;
        }
        Ok(len)
    }
}

/// The upgraded connection as tungstenite reads it: every byte the client
/// sends passes through a [`FrameWatch`], which refuses a frame or message
/// announcing more than the cap as soon as its header is in, and a timer
/// runs while something is unfinished, so that a message not complete
/// within `timeout` of its first byte ends the stream. The timer is set
/// up once per connection and only moved per message.
pub struct Watched<S> {
    io: S,
    frames: FrameWatch,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl<S> Watched<S> {
    fn new(io: S, cap: u64, timeout: Duration) -> Self {
        Watched {
            io,
            frames: FrameWatch::new(cap),
            timeout,
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = buf.filled().get(before..).unwrap_or_default();
                if new.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                let ended = match this.frames.feed(new) {
                    Ok(e) => e,
                    Err(r) => return Poll::Ready(Err(r.error())),
                };
                if !this.frames.busy() {
                    this.armed = false;
                } else if ended || !this.armed {
                    this.timer.as_mut().reset(Instant::now() + this.timeout);
                    this.armed = true;
                } else if Instant::now() >= this.timer.deadline() {
                    // Still dribbling in, but too late.
                    return Poll::Ready(Err(Refused::TooSlow.error()));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if this.armed && this.timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(Refused::TooSlow.error()));
                }
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame header (masked, mask key zero) for `len` bytes.
    fn head(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
        let mut v = vec![if fin { 0x80 } else { 0 } | opcode];
        if len < 126 {
            v.push(0x80 | len as u8);
        } else if len <= 0xffff {
            v.push(0x80 | 126);
            v.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            v.push(0x80 | 127);
            v.extend_from_slice(&len.to_be_bytes());
        }
        v.extend_from_slice(&[0; 4]);
        v
    }

    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = head(fin, opcode, payload.len() as u64);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn whole_messages_leave_it_idle() {
        let mut w = FrameWatch::new(1000);
        let mut bytes = frame(true, 1, b"<open/>");
        bytes.extend(frame(true, 1, &[b'x'; 300]));
        assert_eq!(w.feed(&bytes), Ok(true));
        assert!(!w.busy());
    }

    #[test]
    fn byte_by_byte() {
        let mut w = FrameWatch::new(1000);
        let bytes = frame(true, 1, &[b'x'; 200]);
        let (last, rest) = bytes.split_last().unwrap();
        for b in rest {
            assert_eq!(w.feed(&[*b]), Ok(false));
            assert!(w.busy());
        }
        assert_eq!(w.feed(&[*last]), Ok(true));
        assert!(!w.busy());
    }

    #[test]
    fn an_empty_final_frame_ends_at_its_header() {
        let mut w = FrameWatch::new(1000);
        assert_eq!(w.feed(&frame(false, 1, b"ab")), Ok(false));
        assert!(w.busy());
        assert_eq!(w.feed(&head(true, 0, 0)), Ok(true));
        assert!(!w.busy());
    }

    #[test]
    fn fragments_and_a_ping_between_them() {
        let mut w = FrameWatch::new(1000);
        assert_eq!(w.feed(&frame(false, 1, b"<message>")), Ok(false));
        assert!(w.busy());
        // A ping in the middle ends no message.
        assert_eq!(w.feed(&frame(true, 9, b"p")), Ok(false));
        assert!(w.busy());
        let mut last = frame(true, 0, b"</message>");
        // The next message begins in the same read.
        last.extend(head(true, 1, 10));
        assert_eq!(w.feed(&last), Ok(true));
        assert!(w.busy());
        assert_eq!(w.feed(&[b'y'; 10]), Ok(true));
        assert!(!w.busy());
    }

    #[test]
    fn a_frame_over_the_cap_is_refused_at_its_header() {
        let mut w = FrameWatch::new(1000);
        assert_eq!(w.feed(&head(true, 1, 10 << 20)), Err(Refused::TooBig));
        let mut w = FrameWatch::new(1000);
        assert_eq!(w.feed(&head(true, 2, u64::MAX)), Err(Refused::TooBig));
    }

    #[test]
    fn fragments_count_together() {
        let mut w = FrameWatch::new(1000);
        assert_eq!(w.feed(&frame(false, 1, &[b'x'; 600])), Ok(false));
        assert_eq!(w.feed(&head(false, 0, 600)), Err(Refused::TooBig));
        // A new message starts the count again.
        let mut w = FrameWatch::new(1000);
        assert_eq!(w.feed(&frame(true, 1, &[b'x'; 600])), Ok(true));
        assert_eq!(w.feed(&frame(true, 1, &[b'x'; 600])), Ok(true));
    }
}
