//! XMPP over TCP: client streams with STARTTLS on one port and direct TLS
//! (XEP-0368) on another, and XEP-0114 component streams (plain TCP) on a
//! third.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use conclave_server::Server;
use conclave_server::limits::{ConnGuard, ConnLimiter};
use conclave_server::limits::{Pace, Throttle};
use conclave_server::transport::{ConnInfo, Event, FrameReader, FrameWriter, Transport};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use xmpp_core::framing::{Frame, FramingError, StreamParser};
use xmpp_core::sasl::ChannelBinding;
use xmpp_core::stanza;

use crate::Live;

/// Size of each worker thread's read buffer: a full TLS record's
/// plaintext, so that one read takes a burst whole.
const READ_BUF: usize = 16 * 1024;

thread_local! {
    /// Connections read into their thread's buffer and parse the bytes in
    /// the same poll, so that no connection holds a read buffer while it
    /// waits: idle sessions are most of a server's sessions.
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; READ_BUF].into_boxed_slice());
}

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Gone,
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

/// Bytes to frames, shared by the negotiating transport and the reader
/// half. Parse errors are held back until the frames before them are out.
struct Inbound {
    parser: StreamParser,
    frames: VecDeque<Frame>,
    error: Option<FramingError>,
    max: usize,
    max_token: usize,
    max_depth: usize,
    /// Negotiation parses one frame at a time and keeps the bytes after it
    /// here: they may belong to the stream the next restart opens.
    stepwise: bool,
    pending: Vec<u8>,
    /// Bytes per second (`limits.rate_*`): past them the socket is read
    /// later, never dropped from.
    pace: Pace,
}

impl Inbound {
    fn new(max: usize, max_token: usize, max_depth: usize, throttle: Throttle) -> Self {
        Inbound {
            parser: StreamParser::with_limits(max, max_token, max_depth),
            frames: VecDeque::new(),
            error: None,
            max,
            max_token,
            max_depth,
            stepwise: true,
            pending: Vec::new(),
            pace: Pace::new(throttle),
        }
    }

    /// The stream is established: no restart can come, so the reader
    /// parses greedily from here (the bytes read ahead go first).
    fn established(mut self) -> Self {
        self.stepwise = false;
        self
    }

    /// Parses what was read ahead: one frame while negotiating, all of it
    /// once established.
    fn parse_pending(&mut self) {
        if !self.stepwise {
            let data = std::mem::take(&mut self.pending);
            self.consume(&data);
            return;
        }
        let mut rest = &self.pending[..];
        match self.parser.feed_one(&mut rest) {
            Ok(Some(f)) => {
                self.frames.push_back(f);
                let used = self.pending.len() - rest.len();
                self.pending.drain(..used);
            }
            // The lexer holds a partial token: everything was used.
            Ok(None) => self.pending.clear(),
            Err(e) => {
                self.error = Some(e);
                self.pending.clear();
            }
        }
    }

    /// Drops what the client sent in the clear after `<starttls/>`
    /// (RFC 6120 §5.4.3.3: none of it may reach the TLS stream) and says
    /// whether it was more than whitespace: an injection attempt or a
    /// broken client, not to be talked to.
    fn discard_plaintext(&mut self) -> bool {
        let clean = self.pending.iter().all(u8::is_ascii_whitespace);
        self.pending = Vec::new();
        self.frames.clear();
        !clean
    }

    /// Bytes just read: kept whole while negotiating (see `pending`),
    /// parsed into frames once established.
    fn consume(&mut self, data: &[u8]) {
        self.pace.charge(data.len());
        if self.stepwise {
            self.pending.extend_from_slice(data);
        } else if let Err(e) = self.parser.feed(data, &mut self.frames) {
            self.error = Some(e);
        }
    }

    async fn recv<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Event {
        loop {
            if let Some(f) = self.frames.pop_front() {
                return Event::Frame(f);
            }
            if let Some(e) = self.error.take() {
                return Event::Error(e);
            }
            if !self.pending.is_empty() {
                self.parse_pending();
                continue;
            }
            // About to wait: give back what the last burst grew.
            if self.frames.capacity() != 0 {
                self.frames = VecDeque::new();
            }
            self.parser.release_temporaries();
            self.pace.wait().await;
            let open = std::future::poll_fn(|cx| {
                READ_SCRATCH.with_borrow_mut(|buf| {
                    let mut rb = ReadBuf::new(buf);
                    match Pin::new(&mut *r).poll_read(cx, &mut rb) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(Err(_)) => Poll::Ready(false),
                        Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(false),
                        Poll::Ready(Ok(())) => {
                            self.consume(rb.filled());
                            Poll::Ready(true)
                        }
                    }
                })
            })
            .await;
            if !open {
                return Event::Gone;
            }
        }
    }

    /// Bytes the client pipelined after the element that ended the old
    /// stream stay in `pending` for the new parser.
    fn restart(&mut self) {
        self.parser = StreamParser::with_limits(self.max, self.max_token, self.max_depth);
        self.frames.clear();
    }
}

pub struct TcpTransport {
    stream: Stream,
    inbound: Inbound,
    acceptor: TlsAcceptor,
    info: ConnInfo,
    header_sent: bool,
    first_host: String,
    mode: Mode,
    guard: ConnGuard,
}

/// What a listening port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Client streams, TLS after STARTTLS.
    StartTls,
    /// Client streams inside TLS from the first byte (XEP-0368).
    DirectTls,
    /// XEP-0114 component streams: plain TCP, their own namespace.
    Component,
}

impl Mode {
    fn header(self, from: &str, id: &str) -> String {
        match self {
            Mode::StartTls | Mode::DirectTls => format!(
                "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='{}' from='{}' version='1.0' xml:lang='en'>",
                stanza::escape(id),
                stanza::escape(from)
            ),
            Mode::Component => xmpp_core::component::header(from, id),
        }
    }
}

async fn close_stream<W: AsyncWrite + Unpin>(w: &mut W, condition: Option<&str>) {
    let mut out = String::new();
    if let Some(c) = condition {
        out.push_str(&stanza::stream_error(c, None));
    }
    out.push_str("</stream:stream>");
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let _ = w.write_all(out.as_bytes()).await;
        let _ = w.flush().await;
        let _ = w.shutdown().await;
    })
    .await;
}

impl Transport for TcpTransport {
    type Reader = TcpReader;
    type Writer = TcpWriter;

    fn info(&self) -> ConnInfo {
        self.info.clone()
    }

    async fn recv(&mut self) -> Event {
        self.inbound.recv(&mut self.stream).await
    }

    async fn send_header(&mut self, from: &str, id: &str) -> io::Result<()> {
        self.header_sent = true;
        let h = self.mode.header(from, id);
        self.send(h.as_bytes()).await
    }

    async fn send(&mut self, xml: &[u8]) -> io::Result<()> {
        self.stream.write_all(xml).await?;
        self.stream.flush().await
    }

    async fn starttls(&mut self) -> io::Result<()> {
        if self.inbound.discard_plaintext() {
            tracing::info!(peer = %self.info.peer, "data pipelined after <starttls/>; closing");
            return Err(io::ErrorKind::InvalidData.into());
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        let tls = self.acceptor.accept(tcp).await?;
        self.stream = Stream::Tls(Box::new(tls));
        self.info.secure = true;
        self.info.starttls_available = false;
        Ok(())
    }

    fn restart(&mut self) {
        self.inbound.restart();
    }

    fn channel_binding(&self) -> ChannelBinding {
        channel_binding(&self.stream)
    }

    async fn close(mut self, condition: Option<&str>) {
        if !self.header_sent && condition.is_some() {
            // RFC 6120 §4.9.1.2: an error before the client's header still
            // needs ours first.
            let h = self
                .mode
                .header(&self.first_host, &conclave_server::session::random_id());
            let _ = self.stream.write_all(h.as_bytes()).await;
        }
        close_stream(&mut self.stream, condition).await;
    }

    fn split(self) -> (TcpReader, TcpWriter) {
        let (r, w) = tokio::io::split(self.stream);
        (
            TcpReader {
                read: r,
                inbound: self.inbound.established(),
            },
            TcpWriter {
                write: w,
                buf: Vec::new(),
                _guard: self.guard,
            },
        )
    }
}

/// RFC 9266 tls-exporter, only on TLS 1.3 (on 1.2 it is safe only with
/// extended master secret, which cannot be checked here).
fn channel_binding(s: &Stream) -> ChannelBinding {
    let Stream::Tls(tls) = s else {
        return ChannelBinding::None;
    };
    let conn = tls.get_ref().1;
    if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return ChannelBinding::None;
    }
    let mut out = vec![0u8; 32];
    match conn.export_keying_material(&mut out, b"EXPORTER-Channel-Binding", None) {
        Ok(_) => ChannelBinding::TlsExporter(out),
        Err(_) => ChannelBinding::None,
    }
}

pub struct TcpReader {
    read: ReadHalf<Stream>,
    inbound: Inbound,
}

impl FrameReader for TcpReader {
    async fn recv(&mut self) -> Event {
        self.inbound.recv(&mut self.read).await
    }
}

pub struct TcpWriter {
    write: WriteHalf<Stream>,
    /// Batches a burst of stanzas into one write; released after it, so
    /// that an idle session keeps no buffer.
    buf: Vec<u8>,
    _guard: ConnGuard,
}

impl FrameWriter for TcpWriter {
    async fn send(&mut self, xml: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(xml);
        if self.buf.len() >= 64 * 1024 {
            self.flush().await?;
        }
        Ok(())
    }

    async fn send_parts(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        if self.buf.len() >= 64 * 1024 {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.write.write_all(&self.buf).await?;
            // Freed, not cleared: most sessions are idle most of the time,
            // and an allocation per burst costs less than keeping it.
            self.buf = Vec::new();
        }
        self.write.flush().await
    }

    async fn close(mut self, condition: Option<&str>) {
        let _ = self.flush().await;
        close_stream(&mut self.write, condition).await;
    }
}

/// Accepts connections on one client or component port until the server
/// shuts down.
pub async fn listen(
    server: Arc<Server>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mode: Mode,
    limiter: ConnLimiter,
    live: Live,
) {
    let mut shutdown = server.shutdown_signal();
    loop {
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let server = server.clone();
        let acceptor = acceptor.clone();
        let limiter = limiter.clone();
        let token = live.enter();
        // The accept phase (TLS handshake) has a task of its own, ended
        // before the session's begins: the session's task is sized for
        // what an idle session holds, not for the handshake.
        tokio::spawn(async move {
            let Some(t) = accept(server.clone(), tcp, addr, acceptor, mode, limiter).await else {
                return;
            };
            spawn_session(server, t, mode, token);
        });
    }
}

/// A plain function, not an `async` block, and `map` rather than an
/// `async move { run.await }`: either would keep a second copy of the
/// session's future (or of the transport) beside it for its life.
fn spawn_session(server: Arc<Server>, t: TcpTransport, mode: Mode, token: crate::LiveToken) {
    let done = move |()| drop(token);
    if mode == Mode::Component {
        tokio::spawn(conclave_server::component::run(server, t).map(done));
    } else {
        tokio::spawn(conclave_server::session::run(server, t).map(done));
    }
}

async fn accept(
    server: Arc<Server>,
    tcp: TcpStream,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    mode: Mode,
    limiter: ConnLimiter,
) -> Option<TcpTransport> {
    let _ = tcp.set_nodelay(true);
    let first_host = server.config.hosts.first().cloned().unwrap_or_default();
    let guard = limiter.acquire(addr.ip(), server.config.limits.max_connections_per_ip);
    let handshake =
        std::time::Duration::from_secs(server.config.limits.unauthenticated_timeout_secs);
    let direct_tls = mode == Mode::DirectTls;
    let mut stream = if direct_tls {
        match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
            _ => return None,
        }
    } else {
        Stream::Plain(tcp)
    };
    let Some(guard) = guard else {
        // Refused in the stream's own terms (over TLS on the direct-TLS
        // port), so the client can tell the user why.
        tracing::info!(peer = %addr.ip(), "too many connections from this address");
        let refuse = format!(
            "{}{}</stream:stream>",
            mode.header(&first_host, "refused"),
            stanza::stream_error(
                "policy-violation",
                Some("too many connections from your address")
            )
        );
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            let _ = stream.write_all(refuse.as_bytes()).await;
            let _ = stream.shutdown().await;
        })
        .await;
        return None;
    };
    let t = TcpTransport {
        stream,
        inbound: Inbound::new(
            server.config.limits.max_stanza_bytes,
            server.config.limits.max_token_bytes,
            server.config.limits.max_depth,
            if mode == Mode::Component {
                Throttle::none()
            } else {
                Throttle::new(&server.config.limits, &server.rates, addr.ip())
            },
        ),
        acceptor,
        info: ConnInfo {
            peer: addr.ip(),
            secure: direct_tls,
            starttls_available: mode == Mode::StartTls,
            kind: match mode {
                Mode::StartTls => "tcp",
                Mode::DirectTls => "tls",
                Mode::Component => "component",
            },
        },
        header_sent: false,
        first_host,
        mode,
        guard,
    };
    Some(t)
}
