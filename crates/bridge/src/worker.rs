//! The media worker: owns the UDP socket and every endpoint's str0m
//! instance, and moves packets between them. One task, no locks on the
//! packet path; the focus and the bridge channel talk to it through
//! `Command`s.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::DirectApi;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, KeyframeRequestKind, MediaKind as SKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc, Vp8Descriptor};
use str0m::{Candidate as SCandidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc};
use tokio::net::UdpSocket;

use crate::allocation::{self, Wanted};
use crate::api::{
    BridgeEvent, CODECS, ConferenceStats, EndpointKey, EndpointSources, Expiry, HEADER_EXTS,
    MediaKind, RemoteTransport,
};
use crate::channel::Channels;
use crate::demux;
use crate::forwarding::{
    Conference, LayerCap, LayerPacket, Projection, VideoCodec, layer_for_height, rank_seen_by,
    starts_keyframe, target_layer,
};
use crate::ingest;
use crate::svc::{self, av1_layer, vp9_layer};

pub(crate) enum Command {
    Allocate {
        key: EndpointKey,
        creds: IceCreds,
        /// A relay to another bridge, and whether it is ICE-controlling.
        relay: Option<bool>,
    },
    Connect {
        key: EndpointKey,
        remote: RemoteTransport,
    },
    IceRestart {
        key: EndpointKey,
        creds: IceCreds,
    },
    Sources {
        key: EndpointKey,
        sources: EndpointSources,
    },
    Expire {
        key: EndpointKey,
    },
    Mute {
        key: EndpointKey,
        kind: MediaKind,
        muted: bool,
    },
    /// `ReceiverVideoConstraints` from the endpoint's bridge channel.
    Constraints {
        key: EndpointKey,
        value: serde_json::Value,
    },
}

pub(crate) struct Settings {
    pub endpoint_timeout: Duration,
    pub max_receive_bps: Option<f64>,
    pub capacity_pps: f64,
    pub cert: str0m::config::DtlsCert,
}

struct Endpoint {
    key: EndpointKey,
    /// A relay to another bridge (cascading): it sends what that bridge's
    /// endpoints send, is sent every local layer as it came (no
    /// projection, no bandwidth allocation), and has no bridge channel.
    relay: bool,
    rtc: Rtc,
    ufrag: String,
    next: Instant,
    created: Instant,
    heard: Instant,
    connected: bool,
    /// ICE and DTLS were started with the client's answer.
    started: bool,
    /// The client's ICE ufrag: a different one in a transport-info is its
    /// answer to an in-place ICE restart.
    remote_ufrag: String,
    addrs: Vec<SocketAddr>,
    /// SSRCs it sends that str0m expects (every layer).
    rx: HashSet<u32>,
    /// Those and their RTX: RTP with any other SSRC is dropped unread.
    rx_known: HashSet<u32>,
    /// Streams it is sent, by the SSRC it knows them by.
    tx: HashSet<u32>,
    muted_audio: bool,
    muted_video: bool,
    /// Per stream it receives (by the SSRC it knows it by): the layer it
    /// is on and the renumbering.
    projections: HashMap<u32, Projection>,
    /// When its last RTP packet came, and whether the others were last
    /// told its media is flowing (EndpointConnectivityStatusChangeEvent).
    last_media: Option<Instant>,
    told_active: Option<bool>,
    /// What it was last told per source: the height wanted of it
    /// (SenderSourceConstraints), and which sources it is being sent
    /// (ForwardedSources).
    told_constraints: HashMap<String, u32>,
    told_forwarded: Option<Vec<String>>,
    /// RTP packets forwarded from and to it since the last figures.
    packets_in: u64,
    packets_out: u64,
    /// From str0m's last PeerStats: bytes received and sent, and loss.
    bytes: Option<(u64, u64, Instant)>,
    bitrate: (f64, f64),
    loss: (f64, f64),
    /// Its bandwidth estimate (bits/s): TWCC, or REMB from a receiver
    /// that sends only that; and what str0m was last asked to reach.
    estimate: Option<f64>,
    estimate_twcc: bool,
    bwe_asked: (f64, f64),
    /// `ReceiverVideoConstraints`: the default and per-source picture
    /// height it wants; `None` for no limit.
    max_height: Option<u32>,
    source_heights: HashMap<String, u32>,
    /// Video only from the last N speakers (`None`: from everyone), but
    /// always from the sources it selected or put on stage.
    last_n: Option<usize>,
    selected: Vec<String>,
}

impl Endpoint {
    /// The highest layer of a `layers`-layer stream this receiver wants;
    /// `None` for none at all (height 0).
    fn max_layer(&self, layers: usize, source: Option<&str>) -> Option<usize> {
        let h = source
            .and_then(|s| self.source_heights.get(s).copied())
            .or(self.max_height);
        match h {
            None => Some(usize::MAX),
            Some(h) => layer_for_height(layers, h),
        }
    }
}

pub(crate) struct Worker {
    socket: UdpSocket,
    /// Plain RTP for benchmarks (`ingest`), and whose SSRC is whose there.
    ingest: Option<UdpSocket>,
    by_ingest_ssrc: HashMap<u32, IngestStream>,
    local: SocketAddr,
    settings: Settings,
    endpoints: Vec<Option<Endpoint>>,
    free: Vec<usize>,
    by_key: HashMap<EndpointKey, usize>,
    by_ufrag: HashMap<String, usize>,
    by_addr: HashMap<SocketAddr, usize>,
    conferences: HashMap<String, Conference>,
    channels: Arc<Channels>,
    events: flume::Sender<BridgeEvent>,
    /// Events that need more than the endpoint that raised them.
    pending: Vec<(usize, Event)>,
    /// A packet's receivers, with their last-N ranks (reused buffer).
    receivers: Vec<(usize, Option<usize>)>,
    /// Scratch: which layers of the stream being forwarded are active.
    active: Vec<bool>,
    /// When each sender layer was last asked for a keyframe.
    keyframe_asked: HashMap<u32, Instant>,
    /// The conferences' figures, read by `/metrics`.
    stats: Arc<std::sync::Mutex<Vec<ConferenceStats>>>,
    next_conference: u64,
    /// Packet counts since start, handed to `/metrics` by `figures`, so the
    /// hot path does no metrics-registry lookup.
    counts: Counts,
}

/// Packets since start: RTP into the forwarder and datagrams sent, in all
/// and over relays.
#[derive(Default)]
struct Counts {
    packets_in: u64,
    packets_out: u64,
    relay: [u64; 2],
}

/// One stream on the plain-RTP ingest: its sender and last sequence
/// number, extended.
struct IngestStream {
    endpoint: usize,
    last_seq: Option<u64>,
}

const SPEAKER_TICK: Duration = Duration::from_millis(200);
/// How often endpoints' figures are taken (str0m's PeerStats) and the
/// conferences' figures for `/metrics` refreshed.
const STATS_EVERY: Duration = Duration::from_secs(2);
/// Where each receiver's bandwidth estimate starts: enough for a middle
/// layer and a thumbnail; probing finds more within seconds.
const INITIAL_ESTIMATE: Bitrate = Bitrate::kbps(1000);
/// Simulcast layers looked at per stream (browsers send three).
const MAX_LAYERS: usize = 4;
/// What a bridge-channel message told an endpoint, remembered once it
/// was delivered.
enum Told {
    Constraint(String, u32),
    Forwarded(Vec<String>),
}

/// An endpoint with no media for this long is reported inactive to the
/// others (EndpointConnectivityStatusChangeEvent).
const MEDIA_IDLE: Duration = Duration::from_secs(3);
/// The height told a sender when a receiver sets no limit (Jitsi's
/// default).
const UNLIMITED_HEIGHT: u32 = 2160;
/// How often one layer's sender may be asked for a keyframe.
const KEYFRAME_EVERY: Duration = Duration::from_millis(500);
/// Timeouts already due that one `drain` handles in a row (a frame's
/// packets, paced); the rest wait for the timer.
const MAX_DUE_TIMEOUTS: usize = 256;
/// Remote addresses one endpoint may be known by (its candidates and
/// the peer-reflexive ones its checks come from).
const MAX_ADDRS: usize = 16;

/// A packet to forward, whichever way it came: out of an endpoint's
/// str0m (SRTP), or plain on the benchmark ingest (`ingest`).
struct Incoming {
    ssrc: u32,
    pt: u8,
    seq: SeqNo,
    rtp_time: u32,
    marker: bool,
    payload: Arc<[u8]>,
    timestamp: Instant,
    audio_level: Option<i8>,
    voice_activity: Option<bool>,
    dd: Option<DdBytes>,
}

impl From<RtpPacket> for Incoming {
    fn from(p: RtpPacket) -> Self {
        let ext = &p.header.ext_vals;
        Incoming {
            ssrc: *p.header.ssrc,
            pt: *p.header.payload_type,
            seq: p.seq_no,
            rtp_time: p.header.timestamp,
            marker: p.header.marker,
            audio_level: ext.audio_level,
            voice_activity: ext.voice_activity,
            dd: ext.user_values.get::<DdBytes>().cloned(),
            payload: p.payload,
            timestamp: p.timestamp,
        }
    }
}

/// The next datagram on the ingest socket; with none configured, never.
async fn recv_ingest(socket: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<usize> {
    match socket {
        Some(s) => s.recv(buf).await,
        None => std::future::pending().await,
    }
}

fn rx_mid(ssrc: u32) -> Mid {
    Mid::from(format!("r{ssrc:x}").as_str())
}

fn tx_mid(ssrc: u32) -> Mid {
    Mid::from(format!("t{ssrc:x}").as_str())
}

fn tx_ssrc(mid: &Mid) -> Option<u32> {
    u32::from_str_radix(mid.strip_prefix('t')?, 16).ok()
}

fn skind(k: MediaKind) -> SKind {
    match k {
        MediaKind::Audio => SKind::Audio,
        MediaKind::Video => SKind::Video,
    }
}

/// The gauge counting endpoints of one kind: participants, or relays to
/// other bridges.
fn endpoint_gauge(relay: bool) -> &'static str {
    if relay {
        "conclave_bridge_relays"
    } else {
        "conclave_bridge_endpoints"
    }
}

fn dropped(reason: &'static str) {
    metrics::counter!("conclave_bridge_dropped_total", "reason" => reason).increment(1);
}

/// AV1's dependency descriptor, carried through as the sender wrote it
/// (str0m has no type for it). Its bytes are kept for `svc::av1_layer`
/// and written again on every forwarded packet.
#[derive(Debug)]
struct DependencyDescriptor;

/// A packet's dependency descriptor bytes.
#[derive(Debug, Clone)]
struct DdBytes(bytes::Bytes);

impl str0m::rtp::ExtensionSerializer for DependencyDescriptor {
    fn write_to(&self, buf: &mut [u8], ev: &ExtensionValues) -> usize {
        match ev.user_values.get::<DdBytes>() {
            Some(d) if d.0.len() <= buf.len() => {
                buf[..d.0.len()].copy_from_slice(&d.0);
                d.0.len()
            }
            _ => 0,
        }
    }
    fn parse_value(&self, buf: &[u8], ev: &mut ExtensionValues) -> bool {
        ev.user_values
            .set(DdBytes(bytes::Bytes::copy_from_slice(buf)));
        true
    }
    fn is_video(&self) -> bool {
        true
    }
    fn is_audio(&self) -> bool {
        false
    }
    fn requires_two_byte_form(&self, ev: &ExtensionValues) -> bool {
        ev.user_values
            .get::<DdBytes>()
            .is_some_and(|d| d.0.len() > 16)
    }
}

/// The str0m configuration every endpoint shares: RTP mode (the bridge
/// forwards packets, never frames), the offer's payload types, and only
/// the header extensions the bridge reads or writes itself. `mid` is left
/// out on purpose: see `api::HEADER_EXTS`.
fn rtc_config(cert: &str0m::config::DtlsCert) -> str0m::RtcConfig {
    let mut cfg = Rtc::builder()
        .set_rtp_mode(true)
        .enable_bwe(Some(INITIAL_ESTIMATE))
        .set_stats_interval(Some(STATS_EVERY))
        .set_ice_lite(false)
        .set_dtls_cert(cert.clone())
        .clear_codecs()
        .clear_extension_map();
    for h in HEADER_EXTS {
        let ext = match h.uri {
            "urn:ietf:params:rtp-hdrext:ssrc-audio-level" => Extension::AudioLevel,
            "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time" => {
                Extension::AbsoluteSendTime
            }
            u if u.contains("transport-wide-cc") => Extension::TransportSequenceNumber,
            svc::DD_URI => Extension::UnknownUri(h.uri.into(), Arc::new(DependencyDescriptor)),
            _ => continue,
        };
        cfg = cfg.set_extension(h.id, ext);
    }
    let cc = cfg.codec_config();
    for c in CODECS {
        let (codec, mut fmt) = match c.name {
            "opus" => (Codec::Opus, FormatParams::default()),
            "VP8" => (Codec::Vp8, FormatParams::default()),
            "VP9" => (Codec::Vp9, FormatParams::default()),
            "AV1" => (Codec::Av1, FormatParams::default()),
            "H264" => (Codec::H264, FormatParams::default()),
            _ => continue,
        };
        for (k, v) in c.params {
            match *k {
                "minptime" => fmt.min_p_time = v.parse().ok(),
                "useinbandfec" => fmt.use_inband_fec = Some(*v == "1"),
                "packetization-mode" => fmt.packetization_mode = v.parse().ok(),
                "level-asymmetry-allowed" => fmt.level_asymmetry_allowed = Some(*v == "1"),
                "profile-level-id" => fmt.profile_level_id = u32::from_str_radix(v, 16).ok(),
                _ => {}
            }
        }
        let channels = (c.channels > 0).then_some(c.channels);
        cc.add_config(
            Pt::from(c.pt),
            c.rtx_pt.map(Pt::from),
            codec,
            if c.clock_rate == 48_000 {
                Frequency::FORTY_EIGHT_KHZ
            } else {
                Frequency::NINETY_KHZ
            },
            channels,
            fmt,
        );
    }
    cfg
}

impl Worker {
    pub(crate) fn new(
        socket: UdpSocket,
        ingest: Option<UdpSocket>,
        local: SocketAddr,
        settings: Settings,
        channels: Arc<Channels>,
        events: flume::Sender<BridgeEvent>,
        stats: Arc<std::sync::Mutex<Vec<ConferenceStats>>>,
    ) -> std::io::Result<Self> {
        Ok(Worker {
            socket,
            ingest,
            by_ingest_ssrc: HashMap::new(),
            local,
            settings,
            endpoints: Vec::new(),
            free: Vec::new(),
            by_key: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            conferences: HashMap::new(),
            channels,
            events,
            pending: Vec::new(),
            receivers: Vec::new(),
            active: Vec::new(),
            keyframe_asked: HashMap::new(),
            stats,
            next_conference: 0,
            counts: Counts::default(),
        })
    }

    pub(crate) async fn run(mut self, commands: flume::Receiver<Command>) {
        let mut buf = vec![0u8; 2048];
        let mut ingest_buf = vec![0u8; 2048];
        let mut speakers_at = Instant::now() + SPEAKER_TICK;
        let mut stats_at = Instant::now() + STATS_EVERY;
        loop {
            // With no endpoint there is nothing to time: the worker sleeps
            // until a datagram or a command comes.
            let next = self
                .endpoints
                .iter()
                .flatten()
                .map(|e| e.next)
                .min()
                .map(|n| n.min(speakers_at))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.datagram(Instant::now(), from, &buf[..n]),
                    Err(e) => tracing::debug!(error = %e, "bridge socket"),
                },
                r = recv_ingest(self.ingest.as_ref(), &mut ingest_buf) => match r {
                    Ok(n) => self.ingested(Instant::now(), &ingest_buf[..n]),
                    Err(e) => tracing::debug!(error = %e, "ingest socket"),
                },
                c = commands.recv_async() => match c {
                    Ok(c) => self.command(c),
                    Err(_) => return,
                },
                _ = tokio::time::sleep_until(next.into()) => {
                    let now = Instant::now();
                    self.timeouts(now);
                    if now >= speakers_at {
                        self.speakers(now);
                        self.allocate_bandwidth(now, now - (speakers_at - SPEAKER_TICK));
                        self.tell(now);
                        speakers_at = now + SPEAKER_TICK;
                    }
                    if now >= stats_at {
                        self.figures(STATS_EVERY);
                        stats_at = now + STATS_EVERY;
                    }
                }
            }
            self.process();
        }
    }

    fn ep(&mut self, idx: usize) -> Option<&mut Endpoint> {
        self.endpoints.get_mut(idx).and_then(Option::as_mut)
    }

    fn datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let kind = demux::kind(data);
        let idx = match kind {
            demux::Kind::Garbage => return dropped("garbage"),
            demux::Kind::Stun => match demux::local_ufrag(data) {
                Some(u) => self.by_ufrag.get(u).copied(),
                None => self.by_addr.get(&from).copied(),
            },
            _ => self.by_addr.get(&from).copied(),
        };
        let Some(idx) = idx else {
            return dropped("unknown-address");
        };
        let Ok(recv) = Receive::new(Protocol::Udp, from, self.local, data) else {
            return dropped("garbage");
        };
        // A new address is learnt from a binding request (str0m then
        // checks its integrity); a few per endpoint at most, so that
        // requests from spoofed sources cannot grow the maps.
        if kind == demux::Kind::Stun
            && !self.by_addr.contains_key(&from)
            && let Some(ep) = self.ep(idx)
            && ep.addrs.len() < MAX_ADDRS
        {
            ep.addrs.push(from);
            self.by_addr.insert(from, idx);
        }
        let Some(ep) = self.ep(idx) else { return };
        // SSRC 0 is a bandwidth probe, which str0m takes without a stream.
        if let Some(ssrc) = demux::rtp_ssrc(data)
            && ssrc != 0
            && !ep.rx_known.contains(&ssrc)
        {
            return dropped("unknown-ssrc");
        }
        ep.heard = now;
        if let Err(e) = ep.rtc.handle_input(Input::Receive(now, recv)) {
            tracing::debug!(error = %e, "endpoint input refused");
            dropped("refused");
        }
        self.drain(idx);
    }

    /// A plain RTP packet on the ingest: forwarded as its signalled
    /// sender's, once; anything else (RTCP, unknown SSRCs) is dropped.
    fn ingested(&mut self, now: Instant, data: &[u8]) {
        let Some(rtp) = ingest::parse(data) else {
            return dropped("ingest-garbage");
        };
        let Some(stream) = self.by_ingest_ssrc.get_mut(&rtp.ssrc) else {
            return dropped("unknown-ssrc");
        };
        let seq = ingest::extend_seq(stream.last_seq, rtp.seq);
        stream.last_seq = Some(stream.last_seq.map_or(seq, |l| l.max(seq)));
        let from = stream.endpoint;
        let Some(ep) = self.ep(from) else { return };
        ep.heard = now;
        self.forward(
            from,
            Incoming {
                ssrc: rtp.ssrc,
                pt: rtp.pt,
                seq: SeqNo::from(seq),
                rtp_time: rtp.timestamp,
                marker: rtp.marker,
                payload: Arc::from(&data[rtp.payload]),
                timestamp: now,
                audio_level: None,
                voice_activity: None,
                dd: None,
            },
        );
        self.process();
    }

    fn timeouts(&mut self, now: Instant) {
        let timeout = self.settings.endpoint_timeout;
        let mut expired = Vec::new();
        for idx in 0..self.endpoints.len() {
            let Some(ep) = self.ep(idx) else { continue };
            let silent = now.duration_since(ep.heard.max(ep.created));
            if !ep.rtc.is_alive() || silent > timeout {
                let why = if ep.rtc.is_alive() {
                    Expiry::Timeout
                } else {
                    Expiry::Closed
                };
                expired.push((idx, why, ep.ufrag.clone()));
                continue;
            }
            if ep.next <= now {
                if let Err(e) = ep.rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(error = %e, "endpoint timeout input");
                }
                self.drain(idx);
            }
        }
        for (idx, reason, ufrag) in expired {
            if let Some(key) = self.remove(idx) {
                tracing::info!(conference = %key.conference, endpoint = %key.endpoint, ?reason, "endpoint expired");
                let _ = self
                    .events
                    .send(BridgeEvent::EndpointExpired { key, ufrag, reason });
            }
        }
    }

    fn speakers(&mut self, now: Instant) {
        let mut changes = Vec::new();
        for (name, c) in &mut self.conferences {
            if let Some(d) = c.speakers.tick(now) {
                let previous: Vec<usize> = c.speakers.previous().to_vec();
                changes.push((name.clone(), d, previous));
            }
        }
        for (conf, d, previous) in changes {
            let name = |i: usize| {
                self.endpoints
                    .get(i)
                    .and_then(Option::as_ref)
                    .filter(|e| !e.relay)
                    .map(|e| e.key.endpoint.clone())
            };
            let Some(dominant) = name(d) else { continue };
            let previous: Vec<String> = previous.into_iter().filter_map(name).collect();
            let msg = serde_json::json!({
                "colibriClass": "DominantSpeakerEndpointChangeEvent",
                "dominantSpeakerEndpoint": dominant,
                "previousSpeakers": previous,
                "silence": false,
            });
            self.channels
                .dominant_speaker(&conf, bytes::Bytes::from(msg.to_string()));
        }
    }

    /// Per receiver with an estimate: which layer of each video stream
    /// it can afford (`allocation`), into its projections; and str0m is
    /// asked to probe toward what the receiver would like.
    fn allocate_bandwidth(&mut self, now: Instant, dt: Duration) {
        let Worker {
            conferences,
            endpoints,
            settings,
            ..
        } = self;
        let cap = settings.max_receive_bps;
        let mut order: Vec<(u8, usize, u32)> = Vec::new();
        let mut rates: Vec<Vec<Option<f64>>> = Vec::new();
        let mut caps = Vec::new();
        for c in conferences.values_mut() {
            c.rate_tick(dt);
            for &idx in &c.endpoints {
                let Some(rec) = endpoints.get_mut(idx).and_then(Option::as_mut) else {
                    continue;
                };
                if rec.relay {
                    continue;
                }
                // The estimate, within the configured cap; the cap alone
                // for a receiver that gives no estimate yet, and no limit
                // with neither. str0m is still told what the receiver
                // wants: its estimator only grows toward a desired rate,
                // and its pacer sends at a multiple of the estimate, so a
                // receiver never asked for more would stay at the starting
                // estimate, its packets queued behind the pacer.
                let estimate = match (rec.estimate, cap) {
                    (Some(e), Some(c)) => e.min(c),
                    (e, c) => e.or(c).unwrap_or(f64::INFINITY),
                };
                let mut audio = 0.0;
                order.clear();
                for (owner, s) in c.streams_for(idx) {
                    let Some(first) = s.layers.first() else {
                        continue;
                    };
                    if !rec.tx.contains(&first.ssrc) {
                        continue;
                    }
                    if s.kind == MediaKind::Audio {
                        audio += c.measured(first.ssrc);
                        continue;
                    }
                    // SVC layers share one SSRC, whose rate is not split
                    // by layer yet: such a stream is not capped.
                    if c.is_svc(first.ssrc) {
                        rec.projections.entry(first.ssrc).or_default().cap = LayerCap::Any;
                        continue;
                    }
                    let selected = s.name.as_ref().is_some_and(|n| rec.selected.contains(n));
                    let rank = rank_seen_by(c.speakers.rank(owner), c.speakers.rank(idx));
                    if !selected && rec.last_n.is_some_and(|n| rank.is_none_or(|r| r >= n)) {
                        continue;
                    }
                    order.push((u8::from(!selected), rank.unwrap_or(usize::MAX), first.ssrc));
                }
                order.sort_unstable();
                rates.clear();
                // One entry per stream its constraints let it have, and
                // its rates in `rates`, in the same order.
                let mut wanted = Vec::with_capacity(order.len());
                let mut active = Vec::new();
                for &(_, _, visible) in &order {
                    let Some(s) = c.stream(visible) else { continue };
                    let max = rec.max_layer(s.layers.len(), s.name.as_deref());
                    let proj = rec.projections.entry(visible).or_default();
                    let Some(max) = max else {
                        proj.cap = LayerCap::Nothing;
                        continue;
                    };
                    let current = match proj.cap {
                        LayerCap::UpTo(l) => Some(l),
                        LayerCap::Any => proj.current(),
                        LayerCap::Nothing => None,
                    };
                    c.active_layers(visible, now, &mut active);
                    rates.push(
                        s.layers
                            .iter()
                            .enumerate()
                            .map(|(l, layer)| {
                                active
                                    .get(l)
                                    .copied()
                                    .unwrap_or(false)
                                    .then(|| c.rate(layer.ssrc, l))
                            })
                            .collect(),
                    );
                    wanted.push((visible, max, current));
                }
                let streams: Vec<Wanted<'_>> = wanted
                    .iter()
                    .zip(&rates)
                    .map(|(&(_, max_layer, current), r)| Wanted {
                        rates: r,
                        max_layer,
                        current,
                    })
                    .collect();
                let a = allocation::allocate(estimate - audio, &streams, &mut caps);
                for (&(visible, limit, _), &cap) in wanted.iter().zip(&caps) {
                    let proj = rec.projections.entry(visible).or_default();
                    let prev = match proj.cap {
                        // The first estimate: nothing was sent under one.
                        LayerCap::Any => None,
                        LayerCap::UpTo(l) => Some(Some(l)),
                        LayerCap::Nothing => Some(None),
                    };
                    let cap = match prev {
                        None => cap,
                        Some(prev) => allocation::hold_down(prev, limit, cap, &mut proj.hold, now),
                    };
                    proj.cap = cap.map_or(LayerCap::Nothing, LayerCap::UpTo);
                }
                let (minimum, desired) = (a.next + audio, a.ideal + audio);
                let (m0, d0) = rec.bwe_asked;
                if (minimum - m0).abs() > m0 * 0.05 || (desired - d0).abs() > d0 * 0.05 {
                    rec.bwe_asked = (minimum, desired);
                    rec.rtc.bwe().set_bitrate(
                        Bitrate::bps(minimum as u64),
                        Bitrate::bps(desired.max(minimum) as u64),
                    );
                }
            }
        }
    }

    /// What endpoints are told on their bridge channel when it changes:
    /// whose media stopped or came back, how large a picture anyone wants
    /// of each of their sources (nobody: 0, so they stop sending it), and
    /// which sources they are being sent. Told again until delivered.
    fn tell(&mut self, now: Instant) {
        let mut out: Vec<(EndpointKey, bytes::Bytes, Told)> = Vec::new();
        let mut broadcasts: Vec<(String, String, bytes::Bytes)> = Vec::new();
        for c in self.conferences.values() {
            for &idx in &c.endpoints {
                let Some(ep) = self.endpoints.get(idx).and_then(Option::as_ref) else {
                    continue;
                };
                // A relay is no participant: nobody hears of it.
                if ep.relay {
                    continue;
                }
                // Connectivity: media within MEDIA_IDLE, once it has sent any.
                if let Some(last) = ep.last_media {
                    let active = now.saturating_duration_since(last) < MEDIA_IDLE;
                    if ep.told_active != Some(active) {
                        let m = serde_json::json!({
                            "colibriClass": "EndpointConnectivityStatusChangeEvent",
                            "endpoint": ep.key.endpoint,
                            "active": if active { "true" } else { "false" },
                        });
                        broadcasts.push((
                            ep.key.conference.clone(),
                            ep.key.endpoint.clone(),
                            bytes::Bytes::from(m.to_string()),
                        ));
                    }
                }
                // The rest is for its own channel: nothing to do until open.
                if !self.channels.is_open(&ep.key) {
                    continue;
                }
                // SenderSourceConstraints: per video source, the largest
                // picture any connected receiver wants.
                for stream in c.streams_of(idx) {
                    if stream.kind != MediaKind::Video {
                        continue;
                    }
                    let Some(name) = &stream.name else { continue };
                    let wanted = c
                        .endpoints
                        .iter()
                        .filter(|&&r| r != idx)
                        .filter_map(|&r| self.endpoints.get(r).and_then(Option::as_ref))
                        .filter(|r| r.connected)
                        .map(|r| {
                            r.source_heights
                                .get(name)
                                .copied()
                                .or(r.max_height)
                                .unwrap_or(UNLIMITED_HEIGHT)
                        })
                        .max()
                        .unwrap_or(0);
                    if ep.told_constraints.get(name) != Some(&wanted) {
                        let m = serde_json::json!({
                            "colibriClass": "SenderSourceConstraints",
                            "sourceName": name,
                            "maxHeight": wanted,
                        });
                        let told = Told::Constraint(name.clone(), wanted);
                        out.push((ep.key.clone(), bytes::Bytes::from(m.to_string()), told));
                    }
                }
                // ForwardedSources: the video sources it is being sent.
                let mut forwarded: Vec<String> = ep
                    .projections
                    .iter()
                    .filter(|(_, p)| p.forwarding())
                    .filter_map(|(v, _)| c.stream(*v).and_then(|s| s.name.clone()))
                    .collect();
                forwarded.sort();
                if ep.told_forwarded.as_ref() != Some(&forwarded) {
                    let m = serde_json::json!({
                        "colibriClass": "ForwardedSources",
                        "forwardedSources": forwarded,
                    });
                    let m = bytes::Bytes::from(m.to_string());
                    out.push((ep.key.clone(), m, Told::Forwarded(forwarded)));
                }
            }
        }
        for (conference, endpoint, m) in broadcasts {
            self.channels.broadcast(&conference, Some(&endpoint), m);
            if let Some(&idx) = self.by_key.get(&EndpointKey {
                conference,
                endpoint,
            }) && let Some(ep) = self.ep(idx)
            {
                ep.told_active = ep
                    .last_media
                    .map(|l| now.saturating_duration_since(l) < MEDIA_IDLE);
            }
        }
        for (key, m, told) in out {
            if !self.channels.send(&key, m) {
                continue;
            }
            let Some(&idx) = self.by_key.get(&key) else {
                continue;
            };
            let Some(ep) = self.ep(idx) else { continue };
            match told {
                Told::Constraint(name, h) => {
                    ep.told_constraints.insert(name, h);
                }
                Told::Forwarded(f) => ep.told_forwarded = Some(f),
            }
        }
    }

    /// The conferences' figures for `/metrics` (per second over `every`).
    fn figures(&mut self, every: Duration) {
        let secs = every.as_secs_f64();
        metrics::counter!("conclave_bridge_packets_in_total").absolute(self.counts.packets_in);
        metrics::counter!("conclave_bridge_packets_out_total").absolute(self.counts.packets_out);
        for (dir, n) in ["in", "out"].into_iter().zip(self.counts.relay) {
            metrics::counter!("conclave_bridge_relay_packets_total", "direction" => dir)
                .absolute(n);
        }
        let mut out = Vec::with_capacity(self.conferences.len());
        for c in self.conferences.values() {
            let mut s = ConferenceStats {
                id: c.id,
                endpoints: c.endpoints.len().saturating_sub(c.relays().len()),
                bitrate_in: 0.0,
                bitrate_out: 0.0,
                packets_in: 0.0,
                packets_out: 0.0,
                loss_in: 0.0,
                loss_out: 0.0,
                estimate_min: None,
            };
            for &e in &c.endpoints {
                let Some(ep) = self.endpoints.get_mut(e).and_then(Option::as_mut) else {
                    continue;
                };
                s.bitrate_in += ep.bitrate.0;
                s.bitrate_out += ep.bitrate.1;
                s.packets_in += ep.packets_in as f64 / secs;
                s.packets_out += ep.packets_out as f64 / secs;
                // Loss is a mean over participants.
                if !ep.relay {
                    s.loss_in += ep.loss.0;
                    s.loss_out += ep.loss.1;
                }
                ep.packets_in = 0;
                ep.packets_out = 0;
                if let Some(e) = ep.estimate {
                    s.estimate_min = Some(s.estimate_min.map_or(e, |m: f64| m.min(e)));
                }
            }
            if s.endpoints > 0 {
                s.loss_in /= s.endpoints as f64;
                s.loss_out /= s.endpoints as f64;
            }
            out.push(s);
        }
        self.bridge_figures(&out);
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = out;
    }

    /// The whole bridge's figures in `/metrics`, from its conferences':
    /// what a focus placing conferences (or an operator) looks at.
    fn bridge_figures(&self, conferences: &[ConferenceStats]) {
        let sum = |f: fn(&ConferenceStats) -> f64| conferences.iter().map(f).sum::<f64>();
        let endpoints = conferences
            .iter()
            .map(|c| c.endpoints)
            .sum::<usize>()
            .max(1) as f64;
        // Loss is a mean per endpoint, weighted back by endpoints.
        let loss = |f: fn(&ConferenceStats) -> f64| {
            conferences
                .iter()
                .map(|c| f(c) * c.endpoints as f64)
                .sum::<f64>()
                / endpoints
        };
        let packets = sum(|c| c.packets_in) + sum(|c| c.packets_out);
        metrics::gauge!("conclave_bridge_conferences").set(conferences.len() as f64);
        for (dir, bits, pkts, lost) in [
            (
                "in",
                sum(|c| c.bitrate_in),
                sum(|c| c.packets_in),
                loss(|c| c.loss_in),
            ),
            (
                "out",
                sum(|c| c.bitrate_out),
                sum(|c| c.packets_out),
                loss(|c| c.loss_out),
            ),
        ] {
            metrics::gauge!("conclave_bridge_bitrate_bps", "direction" => dir).set(bits);
            metrics::gauge!("conclave_bridge_packet_rate", "direction" => dir).set(pkts);
            metrics::gauge!("conclave_bridge_loss_ratio", "direction" => dir).set(lost);
        }
        metrics::gauge!("conclave_bridge_stress").set(packets / self.settings.capacity_pps);
    }

    /// Takes everything the endpoint has to say: datagrams go out at
    /// once, events wait for `process`.
    fn drain(&mut self, idx: usize) {
        let Some(ep) = self.endpoints.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let mut due = 0;
        loop {
            match ep.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    // str0m's pacer lets one packet out per timeout: one
                    // already due is handled here, not after a trip through
                    // the timer (a millisecond at least), so a frame's
                    // packets leave together, as fast as the pacer allows.
                    let now = Instant::now();
                    if t <= now && due < MAX_DUE_TIMEOUTS {
                        due += 1;
                        if ep.rtc.handle_input(Input::Timeout(now)).is_ok() {
                            continue;
                        }
                    }
                    ep.next = t;
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    if self.socket.try_send_to(&t.contents, t.destination).is_err() {
                        dropped("send-failed");
                    } else {
                        self.counts.packets_out += 1;
                    }
                }
                Ok(Output::Event(e)) => self.pending.push((idx, e)),
                Err(e) => {
                    // A DTLS peer whose certificate is not the one its
                    // answer named ends here, as does any fatal error.
                    tracing::debug!(error = %e, "endpoint failed");
                    metrics::counter!("conclave_bridge_endpoint_failures_total").increment(1);
                    ep.rtc.disconnect();
                    ep.next = Instant::now();
                    break;
                }
            }
        }
    }

    fn process(&mut self) {
        while !self.pending.is_empty() {
            // In order: a batch holds one endpoint's packets as they came.
            for (idx, e) in std::mem::take(&mut self.pending) {
                self.event(idx, e);
            }
        }
    }

    fn event(&mut self, idx: usize, e: Event) {
        match e {
            Event::RtpPacket(p) => self.forward(idx, Incoming::from(p)),
            Event::Connected => {
                if let Some(ep) = self.ep(idx) {
                    ep.connected = true;
                }
                self.ask_keyframes_for(idx);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                if let Some(ep) = self.ep(idx) {
                    ep.connected = false;
                }
            }
            Event::PeerStats(ps) => {
                if let Some(ep) = self.ep(idx) {
                    if let Some((rx, tx, at)) = ep.bytes {
                        let dt = ps.timestamp.saturating_duration_since(at).as_secs_f64();
                        if dt > 0.0 {
                            ep.bitrate = (
                                ps.bytes_rx.saturating_sub(rx) as f64 * 8.0 / dt,
                                ps.bytes_tx.saturating_sub(tx) as f64 * 8.0 / dt,
                            );
                        }
                    }
                    ep.bytes = Some((ps.bytes_rx, ps.bytes_tx, ps.timestamp));
                    ep.loss = (
                        f64::from(ps.ingress_loss_fraction.unwrap_or(0.0)),
                        f64::from(ps.egress_loss_fraction.unwrap_or(0.0)),
                    );
                }
            }
            Event::KeyframeRequest(r) => {
                if let Some(visible) = tx_ssrc(&r.mid) {
                    self.ask_keyframe(idx, visible, r.kind);
                }
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                // str0m reports its starting value before any feedback has
                // come; until one differs, the receiver may not be sending
                // transport-cc at all (REMB only, or nothing), and is not
                // held to a number nobody measured.
                if let Some(ep) = self.ep(idx)
                    && (ep.estimate_twcc || estimate != INITIAL_ESTIMATE)
                {
                    tracing::trace!(endpoint = %ep.key.endpoint, bps = estimate.as_f64(), "estimate");
                    ep.estimate = Some(estimate.as_f64());
                    ep.estimate_twcc = true;
                }
            }
            Event::EgressBitrateEstimate(BweKind::Remb { estimate, .. }) => {
                if let Some(ep) = self.ep(idx)
                    && !ep.estimate_twcc
                {
                    ep.estimate = Some(estimate.as_f64());
                }
            }
            _ => {}
        }
    }

    fn forward(&mut self, from: usize, p: Incoming) {
        self.counts.packets_in += 1;
        let Some(ep) = self.endpoints.get(from).and_then(Option::as_ref) else {
            return;
        };
        let Some(conf) = self.conferences.get_mut(&ep.key.conference) else {
            return;
        };
        let ssrc = p.ssrc;
        let Some(route) = conf.route(ssrc) else {
            return dropped("unknown-ssrc");
        };
        let muted = match route.kind {
            MediaKind::Audio => ep.muted_audio,
            MediaKind::Video => ep.muted_video,
        };
        if muted {
            return dropped("muted");
        }
        conf.seen(ssrc, p.timestamp, p.payload.len());
        if let Some(e) = self.endpoints.get_mut(from).and_then(Option::as_mut) {
            e.packets_in += 1;
            e.last_media = Some(p.timestamp);
            if e.relay {
                self.counts.relay[0] += 1;
            }
        }
        if let Some(level) = p.audio_level {
            conf.speakers.level(from, level);
        }
        // The sender's place in the last-N order, and each receiver's (a
        // receiver does not count itself).
        let speaker_rank = conf.speakers.rank(from);
        // The RTX partner of what receivers are sent, for `declare_tx`.
        let tx_rtx = conf
            .stream(route.visible)
            .and_then(|s| s.layers.first())
            .and_then(|l| l.rtx);
        self.receivers.clear();
        let speakers = &conf.speakers;
        self.receivers
            .extend(conf.receivers(from).map(|r| (r, speakers.rank(r))));
        // Video: which layers are coming, and is this packet a keyframe.
        let video = if route.kind == MediaKind::Video {
            let codec = CODECS
                .iter()
                .find(|c| c.pt == p.pt)
                .and_then(|c| VideoCodec::from_name(c.name));
            // VP9 with layer indices, or AV1 with a dependency descriptor,
            // in one SSRC: SVC (see `svc`).
            let svc = match codec {
                Some(VideoCodec::Vp9) if route.layer == 0 => vp9_layer(&p.payload),
                Some(VideoCodec::Av1) if route.layer == 0 => {
                    p.dd.as_ref()
                        .and_then(|d| av1_layer(&d.0, &p.payload, conf.dd_structure(route.visible)))
                }
                _ => None,
            };
            if let Some(l) = &svc {
                conf.svc_seen(route.visible, l.spatial, p.timestamp);
            }
            conf.active_layers(route.visible, p.timestamp, &mut self.active);
            let stream = conf.stream(route.visible);
            let mut layer_ssrcs = [0u32; MAX_LAYERS];
            for (slot, l) in layer_ssrcs
                .iter_mut()
                .zip(stream.iter().flat_map(|s| &s.layers))
            {
                *slot = l.ssrc;
            }
            let lp = LayerPacket {
                layer: route.layer,
                seq: *p.seq,
                ts: p.rtp_time,
                keyframe: codec.is_some_and(|c| starts_keyframe(c, &p.payload)),
                picture_id: (codec == Some(VideoCodec::Vp8))
                    .then(|| {
                        Vp8Descriptor::parse(&p.payload)
                            .ok()
                            .and_then(|d| d.picture_id())
                    })
                    .flatten(),
            };
            // Per-source constraints name the stream (`<endpoint>-v0`);
            // the name is copied only when some receiver has such constraints.
            let endpoints = &self.endpoints;
            let named = self.receivers.iter().any(|&(r, _)| {
                endpoints
                    .get(r)
                    .and_then(Option::as_ref)
                    .is_some_and(|e| !e.source_heights.is_empty() || !e.selected.is_empty())
            });
            let name = if named {
                stream.and_then(|s| s.name.clone())
            } else {
                None
            };
            Some((lp, layer_ssrcs, name, svc))
        } else {
            None
        };
        let mut exts = ExtensionValues {
            audio_level: p.audio_level,
            voice_activity: p.voice_activity,
            ..Default::default()
        };
        if let Some(d) = &p.dd {
            exts.user_values.set(d.clone());
        }
        let tx_ssrc = Ssrc::from(route.visible);

        let receivers = std::mem::take(&mut self.receivers);
        // Layers some receiver waits for (a bit each).
        let mut wanted: u32 = 0;
        for &(to, own_rank) in &receivers {
            let Some(rec) = self.endpoints.get_mut(to).and_then(Option::as_mut) else {
                continue;
            };
            if rec.relay {
                // The other bridge gets every layer as it came, under its
                // own SSRC, and chooses for its receivers itself.
                if !rec.connected || !rec.tx.contains(&ssrc) {
                    continue;
                }
                let mut api = rec.rtc.direct_api();
                let Some(tx) = api.stream_tx(&Ssrc::from(ssrc)) else {
                    continue;
                };
                let w = RtpWrite::new(
                    Pt::from(p.pt),
                    p.seq,
                    p.rtp_time,
                    p.timestamp,
                    p.payload.clone(),
                )
                .marker(p.marker)
                .ext_vals(exts.clone())
                .nackable(route.kind == MediaKind::Video);
                tx.write_rtp(w);
                rec.packets_out += 1;
                self.counts.relay[1] += 1;
                self.drain(to);
                continue;
            }
            if !rec.connected || !rec.tx.contains(&route.visible) {
                continue;
            }
            let mut marker = p.marker;
            let (seq, ts, patch) = match &video {
                None => (p.seq, p.rtp_time, None),
                Some((lp, _, name, svc)) => {
                    let beyond_last_n = rec.last_n.is_some_and(|n| {
                        rank_seen_by(speaker_rank, own_rank).is_none_or(|r| r >= n)
                            && !name.as_ref().is_some_and(|nm| rec.selected.contains(nm))
                    });
                    let max = rec.max_layer(self.active.len(), name.as_deref());
                    let proj = rec.projections.entry(route.visible).or_default();
                    let target = proj
                        .cap
                        .apply(max)
                        .and_then(|m| target_layer(&self.active, m));
                    let target = target.filter(|_| !beyond_last_n);
                    if let Some(info) = svc {
                        let filter = proj.svc.get_or_insert_default();
                        let t = target.and_then(|t| u8::try_from(t).ok());
                        if t.is_some_and(|t| filter.spatial().is_none_or(|s| s < t)) {
                            wanted |= 1;
                        }
                        let Some(fw) = filter.on_packet(lp.seq, info, marker, t) else {
                            continue;
                        };
                        marker = fw.marker;
                        (SeqNo::from(fw.seq), lp.ts, None)
                    } else {
                        let Some(target) = target else {
                            // Not sent now: when it is again, it starts at a
                            // keyframe (which the projection will ask for).
                            proj.lost_layer();
                            continue;
                        };
                        if proj
                            .current()
                            .is_some_and(|c| !self.active.get(c).copied().unwrap_or(false))
                        {
                            proj.lost_layer();
                        }
                        if proj.current() != Some(target) && target < MAX_LAYERS {
                            wanted |= 1 << target;
                        }
                        let Some(out) = proj.on_packet(lp, target) else {
                            continue;
                        };
                        let patch = out.picture_id.and_then(|pid| {
                            let d = Vp8Descriptor::parse(&p.payload).ok()?;
                            d.patch().picture_id(pid).build().ok()
                        });
                        (SeqNo::from(out.seq), out.ts, patch)
                    }
                }
            };
            let mut api = rec.rtc.direct_api();
            if api.stream_tx(&tx_ssrc).is_none() {
                declare_tx(&mut api, route.visible, tx_rtx, route.kind);
            }
            let Some(tx) = api.stream_tx(&tx_ssrc) else {
                continue;
            };
            let mut w = RtpWrite::new(Pt::from(p.pt), seq, ts, p.timestamp, p.payload.clone())
                .marker(marker)
                .ext_vals(exts.clone())
                .nackable(route.kind == MediaKind::Video);
            if let Some(patch) = patch {
                w = w.vp8_patch(patch);
            }
            tx.write_rtp(w);
            rec.packets_out += 1;
            self.drain(to);
        }
        self.receivers = receivers;
        // Receivers wait for other layers: the sender is asked for a
        // keyframe of each (at most every KEYFRAME_EVERY per layer).
        if let Some((_, ssrcs, _, _)) = &video {
            for (layer, &l) in ssrcs.iter().enumerate() {
                if wanted & (1 << layer) != 0 && l != 0 {
                    self.request_keyframe(route.owner, l, p.timestamp);
                }
            }
        }
    }

    /// Asks `sender` for a keyframe on `ssrc`, unless it was asked lately.
    fn request_keyframe(&mut self, sender: usize, ssrc: u32, now: Instant) {
        if self
            .keyframe_asked
            .get(&ssrc)
            .is_some_and(|t| now.saturating_duration_since(*t) < KEYFRAME_EVERY)
        {
            return;
        }
        self.keyframe_asked.insert(ssrc, now);
        if let Some(ep) = self.ep(sender)
            && let Some(rx) = ep.rtc.direct_api().stream_rx(&Ssrc::from(ssrc))
        {
            rx.request_keyframe(KeyframeRequestKind::Pli);
            self.drain(sender);
        }
    }

    /// A receiver asked for a keyframe of the stream it knows as `visible`
    /// (a relay: of the layer it is sent as `visible`): the sender is asked
    /// for one on that SSRC.
    fn ask_keyframe(&mut self, receiver: usize, visible: u32, kind: KeyframeRequestKind) {
        let Some(rec) = self.endpoints.get(receiver).and_then(Option::as_ref) else {
            return;
        };
        let Some(route) = self
            .conferences
            .get(&rec.key.conference)
            .and_then(|c| c.route(visible))
        else {
            return;
        };
        if let Some(sender) = self.ep(route.owner)
            && let Some(rx) = sender.rtc.direct_api().stream_rx(&Ssrc::from(visible))
        {
            rx.request_keyframe(kind);
            self.drain(route.owner);
        }
    }

    /// A receiver just connected or got new streams: every video stream it
    /// is sent should start with a keyframe.
    fn ask_keyframes_for(&mut self, receiver: usize) {
        let Some(rec) = self.endpoints.get(receiver).and_then(Option::as_ref) else {
            return;
        };
        let Some(conf) = self.conferences.get(&rec.key.conference) else {
            return;
        };
        let visible: Vec<u32> = conf
            .streams_for(receiver)
            .filter(|(_, s)| s.kind == MediaKind::Video)
            .filter_map(|(_, s)| s.layers.first().map(|l| l.ssrc))
            .collect();
        for v in visible {
            self.ask_keyframe(receiver, v, KeyframeRequestKind::Pli);
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Allocate { key, creds, relay } => self.allocate(key, creds, relay),
            Command::Connect { key, remote } => {
                let Some(&idx) = self.by_key.get(&key) else {
                    return;
                };
                self.connect(idx, remote);
            }
            Command::IceRestart { key, creds } => {
                let Some(&idx) = self.by_key.get(&key) else {
                    return;
                };
                self.restart_ice(idx, creds);
            }
            Command::Sources { key, sources } => {
                let Some(&idx) = self.by_key.get(&key) else {
                    return;
                };
                self.set_sources(idx, sources);
            }
            Command::Expire { key } => {
                if let Some(&idx) = self.by_key.get(&key) {
                    self.remove(idx);
                }
            }
            Command::Constraints { key, value } => {
                if let Some(&idx) = self.by_key.get(&key)
                    && let Some(ep) = self.ep(idx)
                {
                    let height = |v: &serde_json::Value| {
                        v.get("maxHeight")
                            .and_then(serde_json::Value::as_u64)
                            .map(|h| h.min(u64::from(u32::MAX)) as u32)
                    };
                    if let Some(d) = value.get("defaultConstraints") {
                        ep.max_height = height(d);
                    }
                    if let Some(n) = value.get("lastN").and_then(serde_json::Value::as_i64) {
                        ep.last_n = usize::try_from(n).ok();
                    }
                    let names = |k: &str| -> Option<Vec<String>> {
                        Some(
                            value
                                .get(k)?
                                .as_array()?
                                .iter()
                                .take(64)
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect(),
                        )
                    };
                    if let Some(mut sel) = names("selectedSources") {
                        sel.extend(names("onStageSources").unwrap_or_default());
                        ep.selected = sel;
                    } else if let Some(stage) = names("onStageSources") {
                        ep.selected = stage;
                    }
                    if let Some(per) = value.get("constraints").and_then(|c| c.as_object()) {
                        ep.source_heights = per
                            .iter()
                            .take(64)
                            .filter_map(|(name, c)| Some((name.clone(), height(c)?)))
                            .collect();
                    }
                }
            }
            Command::Mute { key, kind, muted } => {
                if let Some(&idx) = self.by_key.get(&key)
                    && let Some(ep) = self.ep(idx)
                {
                    match kind {
                        MediaKind::Audio => ep.muted_audio = muted,
                        MediaKind::Video => ep.muted_video = muted,
                    }
                }
            }
        }
    }

    fn allocate(&mut self, key: EndpointKey, creds: IceCreds, relay: Option<bool>) {
        if let Some(&old) = self.by_key.get(&key) {
            self.remove(old);
        }
        let now = Instant::now();
        let mut cfg = rtc_config(&self.settings.cert);
        if relay.is_some() {
            // A relay carries every layer as it comes: no estimate, and
            // so no pacer holding packets back to one.
            cfg = cfg.enable_bwe(None);
        }
        let mut rtc = cfg.build(now);
        if let Ok(c) = SCandidate::host(self.local, "udp") {
            rtc.add_local_candidate(c);
        }
        {
            let mut api = rtc.direct_api();
            api.set_local_ice_credentials(creds.clone());
            // The bridge controls ICE with clients; of a relay's two
            // bridges, the one the focus says.
            api.set_ice_controlling(relay.unwrap_or(true));
            api.enable_twcc_feedback();
        }
        let ep = Endpoint {
            key: key.clone(),
            relay: relay.is_some(),
            rtc,
            ufrag: creds.ufrag.clone(),
            next: now,
            created: now,
            heard: now,
            connected: false,
            started: false,
            remote_ufrag: String::new(),
            addrs: Vec::new(),
            rx: HashSet::new(),
            rx_known: HashSet::new(),
            tx: HashSet::new(),
            muted_audio: false,
            muted_video: false,
            projections: HashMap::new(),
            last_media: None,
            told_active: None,
            told_constraints: HashMap::new(),
            told_forwarded: None,
            packets_in: 0,
            packets_out: 0,
            bytes: None,
            bitrate: (0.0, 0.0),
            loss: (0.0, 0.0),
            max_height: None,
            source_heights: HashMap::new(),
            last_n: None,
            selected: Vec::new(),
            estimate: None,
            estimate_twcc: false,
            bwe_asked: (0.0, 0.0),
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.endpoints[i] = Some(ep);
                i
            }
            None => {
                self.endpoints.push(Some(ep));
                self.endpoints.len() - 1
            }
        };
        self.by_key.insert(key.clone(), idx);
        self.by_ufrag.insert(creds.ufrag, idx);
        let next = &mut self.next_conference;
        let conf = self
            .conferences
            .entry(key.conference.clone())
            .or_insert_with(|| {
                *next += 1;
                Conference::new(*next)
            });
        if relay.is_some() {
            conf.join_relay(idx);
        } else {
            conf.join(idx);
        }
        self.sync_tx(idx);
        metrics::gauge!(endpoint_gauge(relay.is_some())).increment(1.0);
    }

    /// The endpoint's transport: the first time (session-accept) its ICE
    /// credentials and fingerprint start ICE and DTLS; after that
    /// (transport-info) only candidates are added.
    fn connect(&mut self, idx: usize, remote: RemoteTransport) {
        let Some(ep) = self.endpoints.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if ep.started && !remote.ufrag.is_empty() && remote.ufrag != ep.remote_ufrag {
            // The client's answer to an in-place ICE restart.
            ep.remote_ufrag = remote.ufrag.clone();
            ep.rtc.direct_api().set_remote_ice_credentials(IceCreds {
                ufrag: remote.ufrag.clone(),
                pass: remote.pwd.clone(),
            });
        }
        if !ep.started && !remote.ufrag.is_empty() {
            ep.started = true;
            ep.remote_ufrag = remote.ufrag.clone();
            let mut api = ep.rtc.direct_api();
            api.set_remote_ice_credentials(IceCreds {
                ufrag: remote.ufrag.clone(),
                pass: remote.pwd.clone(),
            });
            // Clients may list several (aiortc gives sha-256, -384 and
            // -512); str0m verifies sha-256.
            let fp = remote
                .fingerprints
                .iter()
                .find(|f| f.hash.eq_ignore_ascii_case("sha-256"));
            match fp.map(|f| format!("{} {}", f.hash, f.value).parse()) {
                Some(Ok(fp)) => api.set_remote_fingerprint(fp),
                _ => dropped("bad-fingerprint"),
            }
            // The offer said actpass; a client answering active makes the
            // bridge the DTLS server, one answering passive its client.
            let active = fp.is_some_and(|f| f.setup == "passive");
            if let Err(e) = api.start_dtls(active) {
                tracing::debug!(error = %e, "dtls start");
            }
        }
        for c in &remote.candidates {
            if ep.addrs.len() >= MAX_ADDRS {
                break;
            }
            let addr = SocketAddr::new(c.ip, c.port);
            let cand = match c.typ.as_str() {
                "host" => SCandidate::host(addr, "udp"),
                _ => SCandidate::builder().udp().host(addr).build(),
            };
            if let Ok(cand) = cand {
                ep.rtc.add_remote_candidate(cand);
                if let std::collections::hash_map::Entry::Vacant(v) = self.by_addr.entry(addr) {
                    v.insert(idx);
                    ep.addrs.push(addr);
                }
            }
        }
        self.drain(idx);
    }

    /// New local ICE credentials: STUN for the endpoint is now found by
    /// the new ufrag, and checks carry the new password.
    fn restart_ice(&mut self, idx: usize, creds: IceCreds) {
        let Some(ep) = self.endpoints.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        self.by_ufrag.remove(&ep.ufrag);
        self.by_ufrag.insert(creds.ufrag.clone(), idx);
        ep.ufrag = creds.ufrag.clone();
        ep.rtc.direct_api().set_local_ice_credentials(creds);
        self.drain(idx);
    }

    fn set_sources(&mut self, idx: usize, sources: EndpointSources) {
        let Some(conference) = self.ep(idx).map(|e| e.key.conference.clone()) else {
            return;
        };
        let Some(conf) = self.conferences.get_mut(&conference) else {
            return;
        };
        let kept = conf.set_streams(idx, sources.streams());
        let members = conf.endpoints.clone();
        if let Some(ep) = self.endpoints.get_mut(idx).and_then(Option::as_mut) {
            let wanted: HashSet<u32> = kept
                .iter()
                .flat_map(|s| s.layers.iter().map(|l| l.ssrc))
                .collect();
            let mut api = ep.rtc.direct_api();
            for old in ep.rx.difference(&wanted) {
                api.remove_stream_rx(Ssrc::from(*old));
                api.remove_media(rx_mid(*old));
            }
            for s in &kept {
                for l in &s.layers {
                    if ep.rx.contains(&l.ssrc) {
                        continue;
                    }
                    let mid = rx_mid(l.ssrc);
                    api.declare_media(mid, skind(s.kind));
                    api.expect_stream_rx(Ssrc::from(l.ssrc), l.rtx.map(Ssrc::from), mid, None);
                }
            }
            ep.rx_known = kept
                .iter()
                .flat_map(|s| s.layers.iter())
                .flat_map(|l| std::iter::once(l.ssrc).chain(l.rtx))
                .collect();
            if self.ingest.is_some() {
                self.by_ingest_ssrc.retain(|_, s| s.endpoint != idx);
                for &ssrc in &wanted {
                    self.by_ingest_ssrc.entry(ssrc).or_insert(IngestStream {
                        endpoint: idx,
                        last_seq: None,
                    });
                }
            }
            ep.rx = wanted;
        }
        for m in members {
            if m != idx {
                self.sync_tx(m);
            }
        }
    }
}

/// Declares the send stream `ssrc` (with its RTX partner) to str0m.
fn declare_tx(api: &mut DirectApi<'_>, ssrc: u32, rtx: Option<u32>, kind: MediaKind) {
    let mid = tx_mid(ssrc);
    api.declare_media(mid, skind(kind));
    api.declare_stream_tx(Ssrc::from(ssrc), rtx.map(Ssrc::from), mid, None);
}

impl Worker {
    /// Makes what `idx` is sent match the other endpoints' streams.
    fn sync_tx(&mut self, idx: usize) {
        let Some(conference) = self.ep(idx).map(|e| e.key.conference.clone()) else {
            return;
        };
        let Some(conf) = self.conferences.get(&conference) else {
            return;
        };
        let wanted = conf.tx_ssrcs(idx);
        let Some(ep) = self.ep(idx) else { return };
        let keep: HashSet<u32> = wanted.iter().map(|w| w.0).collect();
        let mut api = ep.rtc.direct_api();
        for old in ep.tx.difference(&keep) {
            api.remove_media(tx_mid(*old));
        }
        let mut added = false;
        for (ssrc, rtx, kind) in &wanted {
            if ep.tx.contains(ssrc) {
                continue;
            }
            // A participant's streams are declared to str0m when the first
            // packet goes (`declare_tx`): its pacer walks every declared
            // stream for each packet it lets out, and in a large meeting
            // most sources (muted microphones, cameras beyond last-N) send
            // a receiver nothing. A relay gets every layer, so all at once.
            if ep.relay {
                declare_tx(&mut api, *ssrc, *rtx, *kind);
            }
            added = true;
        }
        ep.tx = keep;
        if added && ep.connected {
            self.ask_keyframes_for(idx);
        }
    }

    fn remove(&mut self, idx: usize) -> Option<EndpointKey> {
        let ep = self.endpoints.get_mut(idx)?.take()?;
        self.free.push(idx);
        self.by_key.remove(&ep.key);
        self.by_ufrag.remove(&ep.ufrag);
        for a in &ep.addrs {
            if self.by_addr.get(a) == Some(&idx) {
                self.by_addr.remove(a);
            }
        }
        self.pending.retain(|(i, _)| *i != idx);
        self.by_ingest_ssrc.retain(|_, s| s.endpoint != idx);
        self.channels.remove(&ep.key);
        metrics::gauge!(endpoint_gauge(ep.relay)).decrement(1.0);
        let mut members = Vec::new();
        if let Some(conf) = self.conferences.get_mut(&ep.key.conference) {
            conf.leave(idx);
            members = conf.endpoints.clone();
            if members.is_empty() {
                let id = conf.id;
                self.conferences.remove(&ep.key.conference);
                self.channels.forget_conference(&ep.key.conference);
                // Its figures go at once, not at the next refresh (an idle
                // worker has none).
                let left = {
                    let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                    stats.retain(|s| s.id != id);
                    stats.clone()
                };
                if self.conferences.is_empty() {
                    self.bridge_figures(&left);
                }
            }
        }
        for m in members {
            self.sync_tx(m);
        }
        Some(ep.key)
    }
}
