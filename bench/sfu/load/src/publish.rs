//! Publishers: recordings replayed in real time as plain RTP, looping, on a
//! thread of their own so a busy subscriber loop never delays a send.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::recording::Recording;
use crate::rtp::{RawRtp, rewrite_header, stamp};
use crate::wall_ns;

/// Silence between the last packet of a pass and the first of the next:
/// one frame at 30 fps, so a loop looks like any other frame boundary.
const PASS_GAP_NS: u64 = 33_333_333;
/// How long the thread sleeps with nothing to send before it looks at its
/// commands again.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Largest datagram replayed (recordings hold UDP payloads).
const MAX_DATAGRAM: usize = 65_535;
/// Up to ~20 publishers are expected; more is a mistake worth refusing.
pub const MAX_PUBLISHERS: usize = 100;

/// A `map` entry: the SSRC and payload type a recorded stream goes out with.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub ssrc: u32,
    pub pt: u8,
    /// The stream's RTP clock, when the recording's measured one is wrong.
    #[serde(default)]
    pub clock: Option<u32>,
}

/// How one recorded stream is sent: its new identity, and how far its
/// sequence numbers and timestamps move on at each pass.
#[derive(Debug, Clone, Copy)]
struct Out {
    ssrc: u32,
    pt: u8,
    seq_step: u64,
    ts_step: u64,
}

pub struct Publisher {
    id: String,
    rec: Arc<Recording>,
    socket: UdpSocket,
    outs: Vec<Option<Out>>,
    start: Instant,
    pass_ns: u64,
    pass: u64,
    next: usize,
    buf: Vec<u8>,
    send_errors: u64,
}

impl Publisher {
    /// Checks the map against the recording and opens the socket; errors are
    /// for the caller to answer with.
    pub fn new(
        id: String,
        rec: Arc<Recording>,
        dest: SocketAddr,
        map: &HashMap<String, Mapping>,
    ) -> Result<Publisher, String> {
        let mut outs = vec![None; rec.streams.len()];
        let pass_ns = rec.duration_ns() + PASS_GAP_NS;
        for (key, m) in map {
            let ssrc: u32 = key
                .parse()
                .map_err(|_| format!("map key {key:?} is not a decimal SSRC"))?;
            if m.pt > 127 {
                return Err(format!("map {key}: pt {} is over 127", m.pt));
            }
            if m.clock == Some(0) {
                return Err(format!("map {key}: clock 0"));
            }
            let Some(idx) = rec.streams.iter().position(|s| s.ssrc == ssrc) else {
                return Err(format!("map {key}: no such SSRC in the recording"));
            };
            let s = &rec.streams[idx];
            let clock = u128::from(m.clock.unwrap_or(s.clock));
            outs[idx] = Some(Out {
                ssrc: m.ssrc,
                pt: m.pt,
                seq_step: s.seq_span,
                ts_step: (u128::from(pass_ns) * clock / 1_000_000_000) as u64,
            });
        }
        if outs.iter().all(Option::is_none) {
            return Err("map selects no stream of the recording".into());
        }
        let bind: SocketAddr = if dest.is_ipv4() {
            SocketAddr::from(([127, 0, 0, 1], 0))
        } else {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
        };
        let socket = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
        socket
            .connect(dest)
            .map_err(|e| format!("connect {dest}: {e}"))?;
        Ok(Publisher {
            id,
            rec,
            socket,
            outs,
            start: Instant::now(),
            pass_ns,
            pass: 0,
            next: 0,
            buf: Vec::with_capacity(MAX_DATAGRAM),
            send_errors: 0,
        })
    }

    fn due(&self) -> Instant {
        let p = &self.rec.packets[self.next];
        let ns = self.pass * self.pass_ns + p.offset_ns;
        self.start + Duration::from_nanos(ns)
    }

    /// Sends every packet whose time has come; behind schedule, it catches up
    /// in a burst rather than drift.
    fn send_due(&mut self, now: Instant) {
        let rec = Arc::clone(&self.rec);
        while self.due() <= now {
            let p = rec.packets[self.next];
            if let Some(out) = rec.stream_of(&p).and_then(|s| self.outs[s]) {
                self.send(rec.bytes(&p), out);
            }
            self.next += 1;
            if self.next == self.rec.packets.len() {
                self.next = 0;
                self.pass += 1;
            }
        }
    }

    fn send(&mut self, data: &[u8], out: Out) {
        let Some(r) = RawRtp::parse(data) else {
            return;
        };
        self.buf.clear();
        self.buf.extend_from_slice(data);
        let seq = (u64::from(r.seq) + self.pass * out.seq_step) as u16;
        let ts = (u64::from(r.ts) + self.pass * out.ts_step) as u32;
        rewrite_header(&mut self.buf, out.pt, seq, ts, out.ssrc);
        stamp(&mut self.buf[r.payload], wall_ns());
        if let Err(e) = self.socket.send(&self.buf) {
            // A closed port answers with ICMP; keep pacing, say it once.
            if self.send_errors == 0 {
                eprintln!("sfu-load: publisher {}: send: {e}", self.id);
            }
            self.send_errors += 1;
        }
    }
}

pub enum Command {
    Start(Box<Publisher>),
    Stop(String),
}

/// Starts the publishing thread; it ends when the sender is dropped.
pub fn spawn() -> std::io::Result<Sender<Command>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("publishers".into())
        .spawn(move || pace(rx))?;
    Ok(tx)
}

fn pace(rx: Receiver<Command>) {
    let mut pubs: Vec<Box<Publisher>> = Vec::new();
    loop {
        let now = Instant::now();
        let mut wake = now + IDLE_WAIT;
        for p in &mut pubs {
            p.send_due(now);
            wake = wake.min(p.due());
        }
        match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Ok(Command::Start(p)) => pubs.push(p),
            Ok(Command::Stop(id)) => pubs.retain(|p| p.id != id),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
