//! The bridge's forwarding decisions, sans IO: for a packet on a sender's
//! SSRC, which receivers get it and under which SSRC, and who is speaking.
//! Endpoints are plain indices here; the worker owns the transports.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::api::{MediaKind, StreamDesc};

/// Where packets on one incoming SSRC go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub owner: usize,
    pub kind: MediaKind,
    /// The SSRC receivers know the stream by (its first layer).
    pub visible: u32,
    /// Which simulcast layer this SSRC is (0 = lowest).
    pub layer: usize,
}

/// One incoming SSRC's traffic.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Instant,
    /// Payload bytes since the last `rate_tick`.
    bytes: u64,
    /// Smoothed bits/s, and how many ticks it has been measured over.
    bps: f64,
    samples: u32,
}

/// One conference's endpoints and the streams they send.
#[derive(Debug, Default)]
pub struct Conference {
    /// An opaque id for `/metrics` (see `api::ConferenceStats`).
    pub id: u64,
    pub endpoints: Vec<usize>,
    /// Those of `endpoints` that are relays to other bridges (cascading):
    /// they send what the other bridge's endpoints send, and are sent
    /// every local stream whole.
    relays: Vec<usize>,
    routes: HashMap<u32, Route>,
    /// Each endpoint's streams, as last signalled.
    streams: HashMap<usize, Vec<StreamDesc>>,
    /// When each incoming SSRC last had a packet, and its bitrate.
    seen: HashMap<u32, Seen>,
    /// For a stream sent as SVC (one SSRC, by the SSRC receivers know it
    /// by): when each spatial layer last had a packet.
    svc: HashMap<u32, [Option<Instant>; MAX_SPATIAL]>,
    /// AV1 streams' template structures (see `svc::av1_layer`).
    dd: HashMap<u32, Option<crate::svc::DdStructure>>,
    pub speakers: SpeakerDetector,
}

impl Conference {
    pub fn new(id: u64) -> Self {
        Conference {
            id,
            ..Default::default()
        }
    }

    pub fn join(&mut self, ep: usize) {
        if !self.endpoints.contains(&ep) {
            self.endpoints.push(ep);
        }
        self.speakers.join(ep);
    }

    /// A relay to another bridge joins (see `relays`).
    pub fn join_relay(&mut self, ep: usize) {
        self.join(ep);
        if !self.relays.contains(&ep) {
            self.relays.push(ep);
        }
    }

    pub fn is_relay(&self, ep: usize) -> bool {
        self.relays.contains(&ep)
    }

    /// The relays among the endpoints.
    pub fn relays(&self) -> &[usize] {
        &self.relays
    }

    /// Who may be sent what `from` sends: every other endpoint, but no
    /// relay when `from` is one (what came from one bridge never goes on
    /// to another, so relays cannot loop).
    pub fn receivers(&self, from: usize) -> impl Iterator<Item = usize> + '_ {
        let from_relay = self.is_relay(from);
        self.endpoints
            .iter()
            .copied()
            .filter(move |&e| e != from && !(from_relay && self.relays.contains(&e)))
    }

    /// The SSRCs `ep` is sent streams under, with their RTX partners: a
    /// participant one per stream (its first layer, under which the
    /// layer chosen is projected); a relay every layer under its own SSRC,
    /// of local senders only.
    pub fn tx_ssrcs(&self, ep: usize) -> Vec<(u32, Option<u32>, MediaKind)> {
        let relay = self.is_relay(ep);
        self.streams_for(ep)
            .filter(|(owner, _)| !(relay && self.relays.contains(owner)))
            .flat_map(|(_, s)| {
                let n = if relay { s.layers.len() } else { 1 };
                s.layers.iter().take(n).map(|l| (l.ssrc, l.rtx, s.kind))
            })
            .collect()
    }

    pub fn leave(&mut self, ep: usize) {
        self.endpoints.retain(|&e| e != ep);
        self.relays.retain(|&e| e != ep);
        self.set_streams(ep, Vec::new());
        self.speakers.forget(ep);
    }

    /// Replaces what `ep` sends. SSRCs another endpoint of the conference
    /// already sends are refused (the focus checks ownership; this keeps a
    /// race from letting one endpoint capture another's stream).
    pub fn set_streams(&mut self, ep: usize, streams: Vec<StreamDesc>) -> Vec<StreamDesc> {
        let routes = &self.routes;
        self.seen
            .retain(|ssrc, _| routes.get(ssrc).is_none_or(|r| r.owner != ep));
        self.svc
            .retain(|ssrc, _| routes.get(ssrc).is_none_or(|r| r.owner != ep));
        self.dd
            .retain(|ssrc, _| routes.get(ssrc).is_none_or(|r| r.owner != ep));
        self.routes.retain(|_, r| r.owner != ep);
        let mut kept = Vec::with_capacity(streams.len());
        for s in streams {
            let Some(first) = s.layers.first() else {
                continue;
            };
            if s.layers.iter().any(|l| self.routes.contains_key(&l.ssrc)) {
                continue;
            }
            for (layer, l) in s.layers.iter().enumerate() {
                self.routes.insert(
                    l.ssrc,
                    Route {
                        owner: ep,
                        kind: s.kind,
                        visible: first.ssrc,
                        layer,
                    },
                );
            }
            kept.push(s);
        }
        if kept.is_empty() {
            self.streams.remove(&ep);
        } else {
            self.streams.insert(ep, kept.clone());
        }
        kept
    }

    pub fn route(&self, ssrc: u32) -> Option<Route> {
        self.routes.get(&ssrc).copied()
    }

    /// What `ep` should be sent: every other endpoint's streams.
    pub fn streams_for(&self, ep: usize) -> impl Iterator<Item = (usize, &StreamDesc)> {
        self.streams
            .iter()
            .filter(move |(o, _)| **o != ep)
            .flat_map(|(o, v)| v.iter().map(move |s| (*o, s)))
    }

    /// What `ep` itself sends.
    pub fn streams_of(&self, ep: usize) -> &[StreamDesc] {
        self.streams.get(&ep).map_or(&[], Vec::as_slice)
    }

    /// The stream a receiver knows as `visible`.
    pub fn stream(&self, visible: u32) -> Option<&StreamDesc> {
        let owner = self.routes.get(&visible)?.owner;
        self.streams
            .get(&owner)?
            .iter()
            .find(|s| s.layers.first().is_some_and(|l| l.ssrc == visible))
    }

    /// A packet of `bytes` arrived on `ssrc` at `at`: its layer is being
    /// sent.
    pub fn seen(&mut self, ssrc: u32, at: Instant, bytes: usize) {
        let s = self.seen.entry(ssrc).or_insert(Seen {
            at,
            bytes: 0,
            bps: 0.0,
            samples: 0,
        });
        s.at = at;
        s.bytes += bytes as u64;
    }

    /// Turns the bytes counted over the last `dt` into smoothed bitrates
    /// (a time constant of about a second at 200 ms ticks).
    pub fn rate_tick(&mut self, dt: Duration) {
        let secs = dt.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        for s in self.seen.values_mut() {
            let now = s.bytes as f64 * 8.0 / secs;
            s.bps = if s.samples == 0 {
                now
            } else {
                s.bps * 0.8 + now * 0.2
            };
            s.samples = s.samples.saturating_add(1);
            s.bytes = 0;
        }
    }

    /// Bits/s of `ssrc` as measured (0 before the first tick).
    pub fn measured(&self, ssrc: u32) -> f64 {
        self.seen.get(&ssrc).map_or(0.0, |s| s.bps)
    }

    /// Bits/s of `ssrc` for allocation (see `allocation::layer_rate`).
    pub fn rate(&self, ssrc: u32, layer: usize) -> f64 {
        self.seen.get(&ssrc).map_or(0.0, |s| {
            crate::allocation::layer_rate(layer, s.bps, s.samples)
        })
    }

    /// A packet of spatial layer `spatial` of the SVC stream `visible`.
    pub fn svc_seen(&mut self, visible: u32, spatial: u8, at: Instant) {
        if let Some(slot) = self
            .svc
            .entry(visible)
            .or_default()
            .get_mut(usize::from(spatial))
        {
            *slot = Some(at);
        }
    }

    /// Where the AV1 stream `visible`'s template structure is kept.
    pub fn dd_structure(&mut self, visible: u32) -> &mut Option<crate::svc::DdStructure> {
        self.dd.entry(visible).or_default()
    }

    /// Whether `visible` is sent as SVC (its layers in one SSRC).
    pub fn is_svc(&self, visible: u32) -> bool {
        self.svc.contains_key(&visible)
    }

    /// Which layers of the stream `visible` the sender is sending now
    /// (a packet within `LAYER_IDLE`), lowest first, into `out`: the
    /// spatial layers of an SVC stream, else the simulcast SSRCs.
    pub fn active_layers(&self, visible: u32, now: Instant, out: &mut Vec<bool>) {
        out.clear();
        if let Some(layers) = self.svc.get(&visible) {
            let last = layers
                .iter()
                .rposition(Option::is_some)
                .map_or(0, |i| i + 1);
            out.extend(
                layers[..last]
                    .iter()
                    .map(|t| t.is_some_and(|t| now.saturating_duration_since(t) < LAYER_IDLE)),
            );
            return;
        }
        if let Some(s) = self.stream(visible) {
            out.extend(s.layers.iter().map(|l| {
                self.seen
                    .get(&l.ssrc)
                    .is_some_and(|s| now.saturating_duration_since(s.at) < LAYER_IDLE)
            }));
        }
    }
}

/// Spatial layers looked at in an SVC stream.
pub const MAX_SPATIAL: usize = 4;

/// A simulcast layer with no packet for this long is taken as stopped
/// (the sender dropped it for bandwidth or because nobody wants it).
pub const LAYER_IDLE: Duration = Duration::from_millis(1000);

/// Dominant speaker detection from RFC 6464 audio levels (0 = loudest,
/// 127 = silence, in -dBov): each endpoint's level is smoothed, and the
/// loudest one becomes dominant once it has been louder than the current
/// speaker for a while, so that a cough does not switch the stage.
#[derive(Debug, Default)]
pub struct SpeakerDetector {
    /// Smoothed loudness (127 - level), per endpoint.
    loudness: HashMap<usize, f32>,
    dominant: Option<usize>,
    previous: Vec<usize>,
    challenger: Option<(usize, Instant)>,
    /// Every endpoint in the order last-N takes them, as Jitsi Videobridge
    /// ranks them: the dominant speaker, then the others by how lately
    /// they were dominant, then those never dominant in join order. In a
    /// large meeting most never speak, and a receiver's last-N 20 still
    /// shows 20 of them.
    order: Vec<usize>,
    /// `order` inverted, indexed by endpoint (`u32::MAX`: not in it), so
    /// that the forwarding path finds a rank without a search.
    ranks: Vec<u32>,
}

/// How long a challenger must stay loudest before it takes over.
const SWITCH_AFTER: Duration = Duration::from_millis(400);
/// A level below which an endpoint counts as silent.
const SPEECH_FLOOR: f32 = 20.0;

impl SpeakerDetector {
    /// One packet's level from `ep`.
    pub fn level(&mut self, ep: usize, level: i8) {
        let loud = 127.0 - f32::from(level.unsigned_abs().min(127));
        let l = self.loudness.entry(ep).or_insert(0.0);
        *l = *l * 0.9 + loud * 0.1;
    }

    /// `ep` joins, ranked after everyone already here.
    pub fn join(&mut self, ep: usize) {
        if !self.order.contains(&ep) {
            self.order.push(ep);
            self.rerank();
        }
    }

    pub fn forget(&mut self, ep: usize) {
        self.loudness.remove(&ep);
        self.previous.retain(|&e| e != ep);
        if self.dominant == Some(ep) {
            self.dominant = None;
        }
        self.order.retain(|&e| e != ep);
        self.rerank();
    }

    fn rerank(&mut self) {
        self.ranks.clear();
        for (rank, &ep) in self.order.iter().enumerate() {
            if self.ranks.len() <= ep {
                self.ranks.resize(ep + 1, u32::MAX);
            }
            self.ranks[ep] = u32::try_from(rank).unwrap_or(u32::MAX);
        }
    }

    /// Called periodically; `Some` when the dominant speaker changed.
    pub fn tick(&mut self, now: Instant) -> Option<usize> {
        let (loudest, l) = self
            .loudness
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(e, l)| (*e, *l))?;
        if l < SPEECH_FLOOR || Some(loudest) == self.dominant {
            self.challenger = None;
            return None;
        }
        let current = self.dominant.and_then(|d| self.loudness.get(&d)).copied();
        if current.is_some_and(|c| c >= l) {
            return None;
        }
        match self.challenger {
            Some((c, since)) if c == loudest => {
                if now.duration_since(since) < SWITCH_AFTER && self.dominant.is_some() {
                    return None;
                }
            }
            _ => {
                self.challenger = Some((loudest, now));
                if self.dominant.is_some() {
                    return None;
                }
            }
        }
        if let Some(d) = self.dominant.replace(loudest) {
            self.previous.retain(|&e| e != d && e != loudest);
            self.previous.insert(0, d);
            self.previous.truncate(10);
        }
        self.challenger = None;
        self.order.retain(|&e| e != loudest);
        self.order.insert(0, loudest);
        self.rerank();
        Some(loudest)
    }

    pub fn previous(&self) -> &[usize] {
        &self.previous
    }

    /// `ep`'s place in the last-N order (0: the dominant speaker).
    pub fn rank(&self, ep: usize) -> Option<usize> {
        self.ranks
            .get(ep)
            .filter(|&&r| r != u32::MAX)
            .map(|&r| r as usize)
    }

    /// Whether `receiver`, with last-N `n`, gets video from `ep`.
    pub fn in_last_n(&self, ep: usize, receiver: usize, n: usize) -> bool {
        rank_seen_by(self.rank(ep), self.rank(receiver)).is_some_and(|r| r < n)
    }
}

/// A sender's rank as one receiver counts it: the receiver does not count
/// itself, so a last-N of 20 means 20 others.
pub fn rank_seen_by(sender: Option<usize>, receiver: Option<usize>) -> Option<usize> {
    let s = sender?;
    Some(match receiver {
        Some(r) if r < s => s - 1,
        _ => s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Layer;

    fn video(ssrcs: &[u32]) -> StreamDesc {
        StreamDesc {
            kind: MediaKind::Video,
            name: Some("x-v0".into()),
            layers: ssrcs
                .iter()
                .map(|&ssrc| Layer { ssrc, rtx: None })
                .collect(),
        }
    }

    #[test]
    fn every_layer_routes_to_its_stream_and_layers_are_active_while_packets_come() {
        let mut c = Conference::default();
        c.join(1);
        c.join(2);
        c.set_streams(1, vec![video(&[10, 20, 30])]);
        let r = c.route(20).unwrap();
        assert_eq!((r.owner, r.visible, r.layer), (1, 10, 1));
        assert_eq!(c.stream(10).map(|s| s.layers.len()), Some(3));
        assert!(c.stream(20).is_none(), "known by its first layer only");
        let t = Instant::now();
        c.seen(10, t, 100);
        c.seen(30, t, 100);
        let mut active = Vec::new();
        c.active_layers(10, t + Duration::from_millis(10), &mut active);
        assert_eq!(active, [true, false, true]);
        c.active_layers(10, t + LAYER_IDLE, &mut active);
        assert_eq!(active, [false, false, false]);
        assert_eq!(c.streams_for(2).count(), 1);
        assert_eq!(c.streams_for(1).count(), 0);
    }

    #[test]
    fn relays_get_every_local_layer_and_nothing_goes_from_relay_to_relay() {
        let mut c = Conference::default();
        // 1 and 2 are local participants, 8 and 9 relays to two bridges
        c.join(1);
        c.join(2);
        c.join_relay(8);
        c.join_relay(9);
        c.set_streams(1, vec![video(&[10, 20, 30])]);
        c.set_streams(8, vec![video(&[80, 81])]);
        let mut r: Vec<usize> = c.receivers(1).collect();
        r.sort();
        assert_eq!(r, [2, 8, 9], "a local sender goes to everyone");
        let mut r: Vec<usize> = c.receivers(8).collect();
        r.sort();
        assert_eq!(r, [1, 2], "what a relay brings goes to participants only");
        // a participant: one SSRC per stream, the first layer's
        let mut tx: Vec<u32> = c.tx_ssrcs(2).into_iter().map(|t| t.0).collect();
        tx.sort();
        assert_eq!(tx, [10, 80]);
        // a relay: every layer of local streams, none of another relay's
        let tx: Vec<u32> = c.tx_ssrcs(9).into_iter().map(|t| t.0).collect();
        assert_eq!(tx, [10, 20, 30]);
        assert!(c.tx_ssrcs(8).iter().all(|t| t.0 != 80));
        // a relay's streams route like anyone's
        assert_eq!(c.route(81).map(|r| (r.owner, r.visible)), Some((8, 80)));
        c.leave(9);
        assert!(!c.is_relay(9) && c.is_relay(8));
        assert_eq!(c.relays(), [8]);
    }

    #[test]
    fn an_endpoint_cannot_take_over_another_ones_ssrc() {
        let mut c = Conference::default();
        c.set_streams(1, vec![video(&[10])]);
        let kept = c.set_streams(2, vec![video(&[10]), video(&[11])]);
        assert_eq!(kept, vec![video(&[11])]);
        assert_eq!(c.route(10).unwrap().owner, 1);
        c.leave(1);
        assert_eq!(c.route(10), None);
    }

    #[test]
    fn the_loudest_endpoint_becomes_dominant_and_a_blip_does_not_switch() {
        let t0 = Instant::now();
        let mut s = SpeakerDetector::default();
        for _ in 0..50 {
            s.level(1, 10); // loud
            s.level(2, 127); // silent
        }
        assert_eq!(s.tick(t0), Some(1));
        assert_eq!(s.tick(t0), None);
        // 2 speaks up: not at once, but after SWITCH_AFTER
        for _ in 0..80 {
            s.level(2, 5);
            s.level(1, 120);
        }
        assert_eq!(s.tick(t0 + Duration::from_millis(10)), None);
        assert_eq!(s.tick(t0 + Duration::from_millis(100)), None);
        assert_eq!(s.tick(t0 + Duration::from_millis(600)), Some(2));
        assert_eq!(s.previous(), &[1]);
    }

    #[test]
    fn last_n_takes_speakers_by_recency_then_the_silent_in_join_order_and_never_counts_the_receiver()
     {
        let t0 = Instant::now();
        let mut s = SpeakerDetector::default();
        for ep in [1, 2, 3, 4] {
            s.join(ep);
        }
        // Nobody has spoken: join order.
        assert_eq!((s.rank(1), s.rank(4), s.rank(9)), (Some(0), Some(3), None));
        assert!(s.in_last_n(1, 4, 2) && s.in_last_n(2, 4, 2) && !s.in_last_n(3, 4, 2));
        // 1 receives: it does not take a place of its own.
        assert!(s.in_last_n(2, 1, 2) && s.in_last_n(3, 1, 2) && !s.in_last_n(4, 1, 2));
        assert!(!s.in_last_n(2, 1, 0));
        // 3 speaks and goes first; then 4, and 3 is second.
        for _ in 0..50 {
            s.level(3, 10);
        }
        assert_eq!(s.tick(t0), Some(3));
        assert_eq!(
            (s.rank(3), s.rank(1), s.rank(2), s.rank(4)),
            (Some(0), Some(1), Some(2), Some(3))
        );
        for _ in 0..80 {
            s.level(4, 5);
            s.level(3, 120);
        }
        assert_eq!(s.tick(t0 + Duration::from_millis(10)), None);
        assert_eq!(s.tick(t0 + Duration::from_millis(600)), Some(4));
        assert_eq!(
            (s.rank(4), s.rank(3), s.rank(1), s.rank(2)),
            (Some(0), Some(1), Some(2), Some(3))
        );
        s.forget(3);
        assert_eq!(
            (s.rank(4), s.rank(3), s.rank(1), s.rank(2)),
            (Some(0), None, Some(1), Some(2))
        );
        s.join(3);
        assert_eq!(s.rank(3), Some(3));
    }
}

/// One incoming video packet, as a projection needs to see it.
#[derive(Debug, Clone, Copy)]
pub struct LayerPacket {
    pub layer: usize,
    /// Extended sequence number (with rollover count).
    pub seq: u64,
    pub ts: u32,
    /// The first packet of a keyframe.
    pub keyframe: bool,
    /// VP8's PictureID, which decoders also expect to run on.
    pub picture_id: Option<u16>,
}

/// The most of one stream a receiver's bandwidth estimate allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LayerCap {
    /// No estimate yet: constraints alone decide.
    #[default]
    Any,
    UpTo(usize),
    Nothing,
}

impl LayerCap {
    /// The highest layer allowed, given the constraints' `max`.
    pub fn apply(self, max: Option<usize>) -> Option<usize> {
        match self {
            LayerCap::Any => max,
            LayerCap::UpTo(c) => max.map(|m| m.min(c)),
            LayerCap::Nothing => None,
        }
    }
}

/// What to write for a forwarded packet, in the receiver's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub seq: u64,
    pub ts: u32,
    pub picture_id: Option<u16>,
}

/// What one receiver gets of one simulcast stream: one layer at a time,
/// renumbered so that it sees a single continuous stream (sequence
/// numbers, timestamps and VP8 picture ids run on across switches). A
/// switch happens only at a keyframe of the layer switched to, so the
/// picture never breaks.
#[derive(Debug, Default)]
pub struct Projection {
    /// What the receiver's bandwidth allows (see `allocation`).
    pub cap: LayerCap,
    /// A layer recently dropped for bandwidth, not to be tried yet.
    pub hold: Option<crate::allocation::Hold>,
    /// For an SVC stream, what replaces the switching below.
    pub svc: Option<crate::svc::SvcFilter>,
    current: Option<usize>,
    seq_delta: u64,
    ts_delta: u32,
    pid_delta: u16,
    last: Option<Rewritten>,
    /// The timestamp step between the last two frames sent, to place the
    /// first frame after a switch.
    frame_step: u32,
}

/// A frame step to assume before two frames were seen (30 fps at 90 kHz).
const DEFAULT_FRAME_STEP: u32 = 3000;

impl Projection {
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// Whether the receiver is being sent this stream now.
    pub fn forwarding(&self) -> bool {
        self.current.is_some() || self.svc.as_ref().is_some_and(|f| f.spatial().is_some())
    }

    /// Forwards `p` (renumbered) or drops it, moving toward `target`.
    pub fn on_packet(&mut self, p: &LayerPacket, target: usize) -> Option<Rewritten> {
        let switch = match self.current {
            Some(c) if c == p.layer => false,
            // Up or down to the target, at its keyframe.
            Some(_) => p.layer == target && p.keyframe,
            // Nothing yet: any keyframe at or below the target starts it.
            None => p.layer <= target && p.keyframe,
        };
        if switch {
            match self.last {
                Some(last) => {
                    let step = if self.frame_step == 0 {
                        DEFAULT_FRAME_STEP
                    } else {
                        self.frame_step
                    };
                    self.seq_delta = last.seq.wrapping_add(1).wrapping_sub(p.seq);
                    self.ts_delta = last.ts.wrapping_add(step).wrapping_sub(p.ts);
                    if let (Some(out), Some(pid)) = (last.picture_id, p.picture_id) {
                        self.pid_delta = out.wrapping_add(1).wrapping_sub(pid);
                    }
                }
                None => {
                    self.seq_delta = 0;
                    self.ts_delta = 0;
                    self.pid_delta = 0;
                }
            }
            self.current = Some(p.layer);
        } else if self.current != Some(p.layer) {
            return None;
        }
        let out = Rewritten {
            seq: p.seq.wrapping_add(self.seq_delta),
            ts: p.ts.wrapping_add(self.ts_delta),
            picture_id: p
                .picture_id
                .map(|pid| pid.wrapping_add(self.pid_delta) & 0x7fff),
        };
        if let Some(last) = self.last {
            if out.ts != last.ts && out.seq > last.seq {
                self.frame_step = out.ts.wrapping_sub(last.ts);
            }
            // A late packet keeps its place; `last` is the newest one.
            if out.seq < last.seq {
                return Some(out);
            }
        }
        self.last = Some(out);
        Some(out)
    }

    /// The layer this receiver is on stopped (its sender dropped it): the
    /// next keyframe of the target starts the stream again.
    pub fn lost_layer(&mut self) {
        self.current = None;
    }
}

/// The layer a receiver should get: the highest one the sender is sending
/// (`active`, lowest first) within what the receiver allows (`max_layer`).
pub fn target_layer(active: &[bool], max_layer: usize) -> Option<usize> {
    active
        .iter()
        .enumerate()
        .take(max_layer.saturating_add(1))
        .filter(|(_, a)| **a)
        .map(|(i, _)| i)
        .next_back()
}

/// The highest layer whose picture fits `max_height`, for a stream of
/// `layers` simulcast layers. Browsers send simulcast as quarter, half and
/// full size of the camera (720p by default), lowest first.
pub fn layer_for_height(layers: usize, max_height: u32) -> Option<usize> {
    if layers == 0 || max_height == 0 {
        return None;
    }
    let full = 720u32;
    (0..layers)
        .rev()
        .find(|&i| full >> (layers - 1 - i) <= max_height)
        .or(Some(0))
}

#[cfg(test)]
mod projection_tests {
    use super::*;

    fn pkt(layer: usize, seq: u64, ts: u32, keyframe: bool) -> LayerPacket {
        LayerPacket {
            layer,
            seq,
            ts,
            keyframe,
            picture_id: Some((seq % 1000) as u16),
        }
    }

    #[test]
    fn a_switch_waits_for_a_keyframe_and_the_receiver_sees_one_stream() {
        let mut p = Projection::default();
        // starts on the first keyframe at or below the target
        assert_eq!(p.on_packet(&pkt(0, 100, 9000, false), 2), None);
        let a = p.on_packet(&pkt(0, 101, 9000, true), 2).unwrap();
        assert_eq!((a.seq, a.ts), (101, 9000));
        let b = p.on_packet(&pkt(0, 102, 12000, false), 2).unwrap();
        assert_eq!((b.seq, b.ts), (102, 12000));
        // layer 2 packets are dropped until its keyframe
        assert_eq!(p.on_packet(&pkt(2, 5000, 700_000, false), 2), None);
        let c = p.on_packet(&pkt(2, 5001, 703_000, true), 2).unwrap();
        assert_eq!(c.seq, 103, "sequence numbers run on");
        assert_eq!(c.ts, 15000, "one frame step after the last");
        assert_eq!(c.picture_id, Some(b.picture_id.unwrap() + 1));
        // the old layer is dropped now
        assert_eq!(p.on_packet(&pkt(0, 103, 15000, false), 2), None);
        let d = p.on_packet(&pkt(2, 5002, 706_000, false), 2).unwrap();
        assert_eq!((d.seq, d.ts), (104, 18000));
    }

    #[test]
    fn renumbering_wraps_like_rtp() {
        let mut p = Projection::default();
        p.on_packet(&pkt(0, 10, u32::MAX - 1000, true), 0);
        let out = p.on_packet(&pkt(0, 11, 2000, false), 0).unwrap();
        assert_eq!(out.ts, 2000);
        p.lost_layer();
        let s = p.on_packet(&pkt(1, 70_000, 5, true), 1).unwrap();
        assert_eq!(s.seq, 12);
        assert_eq!(
            s.ts,
            2000u32.wrapping_add(3001),
            "one frame step (3001) after the last"
        );
    }

    #[test]
    fn the_target_is_the_best_active_layer_the_receiver_allows() {
        assert_eq!(target_layer(&[true, true, true], 2), Some(2));
        assert_eq!(target_layer(&[true, true, false], 2), Some(1));
        assert_eq!(target_layer(&[true, true, true], 0), Some(0));
        assert_eq!(target_layer(&[false, true, false], 0), None);
        assert_eq!(layer_for_height(3, 720), Some(2));
        assert_eq!(layer_for_height(3, 360), Some(1));
        assert_eq!(layer_for_height(3, 180), Some(0));
        assert_eq!(layer_for_height(3, 90), Some(0));
        assert_eq!(layer_for_height(3, 0), None);
        assert_eq!(layer_for_height(1, 180), Some(0));
    }
}

/// Video codecs the bridge tells keyframes apart for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    Vp9,
    H264,
    Av1,
}

impl VideoCodec {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "VP8" => Some(VideoCodec::Vp8),
            "VP9" => Some(VideoCodec::Vp9),
            "H264" => Some(VideoCodec::H264),
            "AV1" => Some(VideoCodec::Av1),
            _ => None,
        }
    }
}

/// Whether `payload` (an RTP payload, no header) begins a keyframe.
/// Payloads are only read, never trusted: anything short or odd is "no".
pub fn starts_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => {
            str0m::rtp::Vp8Descriptor::parse(payload).is_ok_and(|d| d.starts_keyframe(payload))
        }
        // RFC 6184: an IDR slice or a parameter set, alone, in a STAP-A or
        // at the start of a FU-A.
        VideoCodec::H264 => match payload.first().map(|b| b & 0x1f) {
            Some(5 | 7) => true,
            Some(24) => payload.get(3).is_some_and(|b| matches!(b & 0x1f, 5 | 7)),
            Some(28) => payload
                .get(1)
                .is_some_and(|b| b & 0x80 != 0 && b & 0x1f == 5),
            _ => false,
        },
        // VP9 payload descriptor: not inter-predicted (P=0), beginning of a
        // frame (B=1).
        VideoCodec::Vp9 => payload
            .first()
            .is_some_and(|b| b & 0x40 == 0 && b & 0x08 != 0),
        // AV1 aggregation header: N, the first packet of a coded video
        // sequence.
        VideoCodec::Av1 => payload.first().is_some_and(|b| b & 0x08 != 0),
    }
}

#[cfg(test)]
mod keyframe_tests {
    use super::*;

    #[test]
    fn keyframes_are_told_apart_per_codec_and_junk_is_not_one() {
        // VP8: descriptor with S=1, PID=0, then P=0 in the payload header
        assert!(starts_keyframe(
            VideoCodec::Vp8,
            &[0x10, 0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a]
        ));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x10, 0x01, 0x00]));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x00, 0x00]));
        assert!(starts_keyframe(VideoCodec::H264, &[0x65, 0x88]));
        assert!(starts_keyframe(VideoCodec::H264, &[0x78, 0x00, 0x10, 0x67]));
        assert!(starts_keyframe(VideoCodec::H264, &[0x7c, 0x85]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x7c, 0x05]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x41]));
        assert!(starts_keyframe(VideoCodec::Vp9, &[0x08]));
        assert!(!starts_keyframe(VideoCodec::Vp9, &[0x48]));
        for c in [
            VideoCodec::Vp8,
            VideoCodec::Vp9,
            VideoCodec::H264,
            VideoCodec::Av1,
        ] {
            assert!(!starts_keyframe(c, &[]));
        }
    }
}
