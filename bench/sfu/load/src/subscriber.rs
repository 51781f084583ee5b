//! One receiving WebRTC endpoint: str0m in RTP mode behind its own UDP
//! socket. It answers what it is offered, does ICE, DTLS-SRTP and the RTCP
//! feedback a browser would (receiver reports, NACK, transport-cc), and
//! counts what it receives instead of decoding it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use serde::Serialize;
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpPacket;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use crate::latency::Histogram;
use crate::rtp::{LossCounter, read_stamp};
use crate::sys::{self, Batch};
use crate::vp8::{self, FrameStart};

/// How often str0m reports ingress stats, which carry the NACKs it sent.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// A stamp further in the past than this is not ours (or not a stamp).
const MAX_PLAUSIBLE_LATENCY_NS: u64 = 60_000_000_000;
/// Socket receive buffer asked for per subscriber.
const RECV_BUFFER: usize = 1 << 20;
/// Incoming streams tracked per subscriber (each costs a linear scan).
const MAX_SSRCS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Audio,
    /// Video, and whether its packets are VP8 (the only payload parsed).
    Video {
        vp8: bool,
    },
    Other,
}

struct Incoming {
    ssrc: u32,
    kind: Kind,
    loss: LossCounter,
    last_ts: Option<u32>,
}

/// A subscriber's figures for the window, as `stats` reports them.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counters {
    pub connected: bool,
    pub packets: u64,
    /// RTP bytes (header and payload, after SRTP) of those packets.
    pub bytes: u64,
    pub lost: u64,
    /// Packets whose sequence number had come already (retransmissions,
    /// padding made of old packets): not counted anywhere else.
    pub duplicates: u64,
    pub nacks: u64,
    pub video_packets: u64,
    pub audio_packets: u64,
    pub keyframes: u64,
    pub width: u32,
    pub height: u32,
    pub frames: u64,
}

/// A bad link in front of this receiver, applied as its datagrams arrive:
/// the kernel here has no netem, so delay and random loss are made in the
/// receiver, behind whatever rate cap the kernel applies (tc tbf).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    pub delay: Duration,
    /// The share of datagrams dropped, 0 to 1.
    pub loss: f64,
}

/// A datagram held back by `Impairment::delay`.
struct Delayed {
    due: Instant,
    source: SocketAddr,
    data: Vec<u8>,
}

pub struct Subscriber {
    pub id: String,
    pub socket: mio::net::UdpSocket,
    local: SocketAddr,
    rtc: Rtc,
    /// When this endpoint next needs `on_timeout`: str0m's own deadline or
    /// the next delayed datagram's, whichever is first.
    pub deadline: Instant,
    rtc_deadline: Instant,
    impairment: Impairment,
    delayed: VecDeque<Delayed>,
    /// xorshift64 state for the loss draw: reproducible per subscriber.
    rng: u64,
    counters: Counters,
    incoming: Vec<Incoming>,
    /// Cumulative NACKs per (mid, rid), as str0m's stats last said.
    nacks: Vec<(Mid, Option<Rid>, u64)>,
    nacks_at_reset: u64,
    /// Set when str0m failed: the endpoint stays, silent, until closed.
    failed: bool,
}

pub fn rtc_config(cert: &DtlsCert) -> str0m::RtcConfig {
    // Default codecs and header extensions: the answer keeps what the offer
    // and str0m share, which is how a browser answers too. No BWE: a
    // receiver only sends feedback.
    Rtc::builder()
        .set_rtp_mode(true)
        .set_ice_lite(false)
        .set_stats_interval(Some(STATS_INTERVAL))
        .set_dtls_cert(cert.clone())
}

impl Subscriber {
    /// `bind` must be an address of this host (binding fails otherwise), so
    /// no subscriber can take traffic from elsewhere.
    pub fn new(
        id: String,
        cert: &DtlsCert,
        bind: SocketAddr,
        now: Instant,
    ) -> Result<Subscriber, String> {
        let socket = mio::net::UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
        sys::set_recv_buffer(socket.as_raw_fd(), RECV_BUFFER);
        let local = socket
            .local_addr()
            .map_err(|e| format!("local_addr: {e}"))?;
        let mut rtc = rtc_config(cert).build(now);
        let cand = Candidate::host(local, "udp").map_err(|e| format!("candidate: {e}"))?;
        rtc.add_local_candidate(cand);
        let mut sub = Subscriber {
            id,
            socket,
            local,
            rtc,
            deadline: now,
            rtc_deadline: now,
            impairment: Impairment::default(),
            delayed: VecDeque::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
            counters: Counters::default(),
            incoming: Vec::new(),
            nacks: Vec::new(),
            nacks_at_reset: 0,
            failed: false,
        };
        sub.drain(None, &mut Histogram::default());
        Ok(sub)
    }

    pub fn impair(&mut self, impairment: Impairment) {
        self.impairment = impairment;
    }

    /// Whether the link loses this datagram.
    fn lose(&mut self) -> bool {
        if self.impairment.loss <= 0.0 {
            return false;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64 <= self.impairment.loss
    }

    /// Answers an offer, the first or a renegotiation.
    pub fn accept(&mut self, offer: &str, hist: &mut Histogram) -> Result<String, String> {
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| format!("offer: {e}"))?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| format!("str0m refused the offer: {e}"));
        self.drain(None, hist);
        Ok(answer?.to_sdp_string())
    }

    /// Reads everything queued on the socket. `Err` only for socket errors
    /// other than "nothing left".
    pub fn on_readable(&mut self, batch: &mut Batch, hist: &mut Histogram) {
        loop {
            let n = match batch.recv(self.socket.as_raw_fd()) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // ICMP errors (a peer's port closed) surface here; the
                // socket itself is fine, so keep reading.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => {
                    eprintln!("sfu-load: {}: recv: {e}", self.id);
                    return;
                }
            };
            let now = Instant::now();
            let wall = crate::wall_ns();
            for i in 0..n {
                let Some((source, data)) = batch.get(i) else {
                    continue;
                };
                if self.failed {
                    continue;
                }
                if self.impairment != Impairment::default() {
                    if !self.lose() {
                        self.delayed.push_back(Delayed {
                            due: now + self.impairment.delay,
                            source,
                            data: data.to_vec(),
                        });
                    }
                    continue;
                }
                let Ok(r) = Receive::new(Protocol::Udp, source, self.local, data) else {
                    continue;
                };
                if let Err(e) = self.rtc.handle_input(Input::Receive(now, r)) {
                    eprintln!("sfu-load: {}: input: {e}", self.id);
                }
                self.drain(Some(wall), hist);
            }
            self.deliver_delayed(now, hist);
            // epoll reports every datagram that arrives after this read,
            // so a short batch means the queue was empty: skip the EAGAIN call.
            if n < crate::sys::BATCH {
                return;
            }
        }
    }

    pub fn on_timeout(&mut self, now: Instant, hist: &mut Histogram) {
        if self.failed {
            return;
        }
        self.deliver_delayed(now, hist);
        // Early is harmless: str0m does what is due and names its next time.
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            eprintln!("sfu-load: {}: timeout: {e}", self.id);
        }
        self.drain(None, hist);
    }

    /// Hands str0m the delayed datagrams now due (a constant delay keeps
    /// the queue in arrival order).
    fn deliver_delayed(&mut self, now: Instant, hist: &mut Histogram) {
        while let Some(d) = self.delayed.front() {
            if d.due > now || self.failed {
                break;
            }
            let d = self.delayed.pop_front().expect("front was Some");
            if let Ok(r) = Receive::new(Protocol::Udp, d.source, self.local, &d.data)
                && let Err(e) = self.rtc.handle_input(Input::Receive(now, r))
            {
                eprintln!("sfu-load: {}: input: {e}", self.id);
            }
            self.drain(Some(crate::wall_ns()), hist);
        }
        self.set_deadline();
    }

    fn set_deadline(&mut self) {
        self.deadline = match self.delayed.front() {
            Some(d) => d.due.min(self.rtc_deadline),
            None => self.rtc_deadline,
        };
    }

    /// Runs str0m until it wants time to pass: the one loop all its output
    /// goes through. `wall` is when the datagram that caused it arrived.
    fn drain(&mut self, wall: Option<u64>, hist: &mut Histogram) {
        while !self.failed {
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("sfu-load: {}: str0m failed: {e}", self.id);
                    self.failed = true;
                    self.counters.connected = false;
                    self.rtc_deadline = Instant::now() + Duration::from_secs(3600);
                    self.set_deadline();
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    self.rtc_deadline = t;
                    self.set_deadline();
                    return;
                }
                Output::Transmit(t) => {
                    // A full socket buffer on loopback only drops feedback.
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Output::Event(e) => self.on_event(e, wall, hist),
            }
        }
    }

    fn on_event(&mut self, e: Event, wall: Option<u64>, hist: &mut Histogram) {
        match e {
            Event::RtpPacket(p) => self.on_rtp(&p, wall.unwrap_or_else(crate::wall_ns), hist),
            Event::Connected => self.counters.connected = true,
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.counters.connected = false
            }
            Event::MediaIngressStats(s) => {
                match self
                    .nacks
                    .iter_mut()
                    .find(|(m, r, _)| *m == s.mid && *r == s.rid)
                {
                    Some(entry) => entry.2 = s.nacks,
                    None => self.nacks.push((s.mid, s.rid, s.nacks)),
                }
            }
            _ => {}
        }
    }

    fn kind_of(&self, pt: u8) -> Kind {
        let Some(params) = self.rtc.codec_config().find(|p| *p.pt() == pt) else {
            return Kind::Other;
        };
        let codec = params.spec().codec;
        match codec.kind() {
            MediaKind::Audio => Kind::Audio,
            MediaKind::Video => Kind::Video {
                vp8: codec == Codec::Vp8,
            },
        }
    }

    fn on_rtp(&mut self, p: &RtpPacket, wall: u64, hist: &mut Histogram) {
        let ssrc = *p.header.ssrc;
        let pt = *p.header.payload_type;
        let idx = match self.incoming.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => i,
            None if self.incoming.len() < MAX_SSRCS => {
                let kind = self.kind_of(pt);
                self.incoming.push(Incoming {
                    ssrc,
                    kind,
                    loss: LossCounter::default(),
                    last_ts: None,
                });
                self.incoming.len() - 1
            }
            None => return,
        };
        let c = &mut self.counters;
        let s = &mut self.incoming[idx];
        if !s.loss.on_packet(p.header.sequence_number) {
            c.duplicates += 1;
            return;
        }
        c.packets += 1;
        c.bytes += (p.header.header_len + p.payload.len()) as u64;
        if let Some(sent) = read_stamp(&p.payload) {
            let ns = wall.saturating_sub(sent);
            if ns < MAX_PLAUSIBLE_LATENCY_NS {
                hist.record(ns / 1000);
            }
        }
        match s.kind {
            Kind::Audio => c.audio_packets += 1,
            Kind::Video { vp8 } => {
                c.video_packets += 1;
                let ts = p.header.timestamp;
                if s.last_ts
                    .is_none_or(|last| (ts.wrapping_sub(last) as i32) > 0)
                {
                    s.last_ts = Some(ts);
                    c.frames += 1;
                }
                if vp8 && let Some(FrameStart::Key { width, height }) = vp8::frame_start(&p.payload)
                {
                    c.keyframes += 1;
                    c.width = u32::from(width);
                    c.height = u32::from(height);
                }
            }
            Kind::Other => {}
        }
    }

    fn nacks_total(&self) -> u64 {
        self.nacks.iter().map(|n| n.2).sum()
    }

    /// Starts a window: counters to zero; the last keyframe's size and the
    /// connection state are facts, not counts, and stay.
    pub fn reset(&mut self) {
        let c = &self.counters;
        self.counters = Counters {
            connected: c.connected,
            width: c.width,
            height: c.height,
            ..Counters::default()
        };
        for s in &mut self.incoming {
            s.loss.reset();
        }
        self.nacks_at_reset = self.nacks_total();
    }

    pub fn counters(&self) -> Counters {
        let mut c = self.counters.clone();
        c.lost = self.incoming.iter().map(|s| s.loss.lost()).sum();
        c.nacks = self.nacks_total().saturating_sub(self.nacks_at_reset);
        c
    }
}
