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

/// One conference's endpoints and the streams they send.
#[derive(Debug, Default)]
pub struct Conference {
    pub endpoints: Vec<usize>,
    routes: HashMap<u32, Route>,
    /// Each endpoint's streams, as last signalled.
    streams: HashMap<usize, Vec<StreamDesc>>,
    pub speakers: SpeakerDetector,
}

impl Conference {
    pub fn join(&mut self, ep: usize) {
        if !self.endpoints.contains(&ep) {
            self.endpoints.push(ep);
        }
    }

    pub fn leave(&mut self, ep: usize) {
        self.endpoints.retain(|&e| e != ep);
        self.set_streams(ep, Vec::new());
        self.speakers.forget(ep);
    }

    /// Replaces what `ep` sends. SSRCs another endpoint of the conference
    /// already sends are refused (the focus checks ownership; this keeps a
    /// race from letting one endpoint capture another's stream).
    pub fn set_streams(&mut self, ep: usize, streams: Vec<StreamDesc>) -> Vec<StreamDesc> {
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

    /// Which layer of a stream a receiver gets. Until bandwidth estimation
    /// and `ReceiverVideoConstraints` choose per receiver, every receiver
    /// gets the first (lowest) layer, which every simulcast sender sends.
    pub fn forwards(&self, route: &Route) -> bool {
        route.layer == 0
    }
}

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

    pub fn forget(&mut self, ep: usize) {
        self.loudness.remove(&ep);
        self.previous.retain(|&e| e != ep);
        if self.dominant == Some(ep) {
            self.dominant = None;
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
        Some(loudest)
    }

    pub fn previous(&self) -> &[usize] {
        &self.previous
    }
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
    fn every_layer_routes_to_its_stream_and_only_the_first_is_forwarded() {
        let mut c = Conference::default();
        c.join(1);
        c.join(2);
        c.set_streams(1, vec![video(&[10, 20, 30])]);
        let r = c.route(20).unwrap();
        assert_eq!((r.owner, r.visible, r.layer), (1, 10, 1));
        assert!(!c.forwards(&r));
        assert!(c.forwards(&c.route(10).unwrap()));
        assert_eq!(c.streams_for(2).count(), 1);
        assert_eq!(c.streams_for(1).count(), 0);
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
}
