//! What the focus asks of the bridge, in plain types: the focus speaks
//! Jingle, the bridge speaks ICE/DTLS/RTP, and these are the facts the two
//! share. Nothing here knows XML or str0m.

use std::net::IpAddr;

/// An ICE candidate (RFC 8445), as Jingle's ICE-UDP transport carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub foundation: String,
    pub component: u8,
    /// "udp" (the bridge offers nothing else; TURN's TCP is coturn's).
    pub protocol: String,
    pub priority: u32,
    pub ip: IpAddr,
    pub port: u16,
    /// "host", "srflx", "prflx" or "relay".
    pub typ: String,
    pub generation: u32,
}

/// A DTLS certificate fingerprint (XEP-0320).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// "sha-256".
    pub hash: String,
    /// Colon-separated upper-case hex.
    pub value: String,
    /// "actpass", "active" or "passive".
    pub setup: String,
}

/// The bridge's side of one endpoint's transport, for the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTransport {
    pub ufrag: String,
    pub pwd: String,
    pub fingerprint: Fingerprint,
    pub candidates: Vec<Candidate>,
    /// The colibri-ws URL of this endpoint's bridge channel
    /// (`wss://host/colibri-ws/<bridge>/<conference>/<endpoint>?pwd=…`).
    pub websocket_url: String,
}

/// The endpoint's side, from its session-accept or transport-info.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteTransport {
    pub ufrag: String,
    pub pwd: String,
    pub fingerprints: Vec<Fingerprint>,
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

/// One source an endpoint sends (XEP-0339).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub ssrc: u32,
    pub kind: MediaKind,
    /// Jitsi's source name: `<endpoint>-a0`, `-v0` (camera), `-v1` (desktop).
    pub name: Option<String>,
    pub msid: Option<String>,
    /// "camera" or "desktop", for video.
    pub video_type: Option<String>,
}

/// An SSRC group (XEP-0339): "SIM" lists simulcast layers lowest first,
/// "FID" pairs a media SSRC with its RTX SSRC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcGroup {
    pub kind: MediaKind,
    pub semantics: String,
    pub ssrcs: Vec<u32>,
}

/// Everything one endpoint sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointSources {
    pub sources: Vec<Source>,
    pub groups: Vec<SsrcGroup>,
}

/// Identifies an endpoint: the conference (the room's bare JID) and the
/// endpoint id (the occupant's nick, as in Jitsi).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointKey {
    pub conference: String,
    pub endpoint: String,
}

/// One conference's figures for `/metrics`, refreshed every few seconds.
/// The conference is named by an opaque id, not its room: `/metrics`
/// should not list who meets where.
#[derive(Debug, Clone, PartialEq)]
pub struct ConferenceStats {
    pub id: u64,
    pub endpoints: usize,
    /// Bits per second received from / sent to its endpoints.
    pub bitrate_in: f64,
    pub bitrate_out: f64,
    /// RTP packets per second forwarded in / out.
    pub packets_in: f64,
    pub packets_out: f64,
    /// Mean fraction lost on the way in (endpoint to bridge) and out, as
    /// the endpoints' receiver reports give it.
    pub loss_in: f64,
    pub loss_out: f64,
    /// The lowest bandwidth estimate (bits/s) of any of its receivers:
    /// how much the worst-connected participant can be sent. `None` until
    /// one has an estimate.
    pub estimate_min: Option<f64>,
}

/// What the bridge tells the focus without being asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeEvent {
    /// The endpoint is gone. `ufrag` is the bridge-side ICE ufrag it was
    /// allocated with, which tells it apart from a newer endpoint of the
    /// same key (a session restarted while this event was on its way).
    EndpointExpired {
        key: EndpointKey,
        ufrag: String,
        reason: Expiry,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No ICE or media for `endpoint_timeout_secs`: the client vanished.
    Timeout,
    /// Its DTLS closed or failed: the client ended its media (as clients
    /// do before restarting a session) or could not prove its identity.
    Closed,
}

/// One payload type the bridge offers (Jingle `<payload-type>`, SDP
/// `a=rtpmap`), with its RTX partner and RTCP feedback (XEP-0293).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub kind: MediaKind,
    pub pt: u8,
    pub name: &'static str,
    pub clock_rate: u32,
    pub channels: u8,
    /// `fmtp` parameters.
    pub params: &'static [(&'static str, &'static str)],
    /// The payload type of its RTX (RFC 4588), `apt` pointing back here.
    pub rtx_pt: Option<u8>,
    /// (type, subtype): ("nack", ""), ("nack", "pli"), ("ccm", "fir"),
    /// ("transport-cc", ""), ("goog-remb", "").
    pub feedback: &'static [(&'static str, &'static str)],
}

/// A header extension (XEP-0294, RFC 8285) by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderExt {
    pub kind: MediaKind,
    pub id: u8,
    pub uri: &'static str,
}

const VIDEO_FB: &[(&str, &str)] = &[
    ("ccm", "fir"),
    ("nack", ""),
    ("nack", "pli"),
    ("goog-remb", ""),
    ("transport-cc", ""),
];

/// What the offer carries and the bridge is configured with: the same
/// payload types and ids as Jicofo's defaults (jitsi.md §1.5), so that a
/// client that knows Jitsi sees nothing new. Preference order: first wins.
///
/// AV1 (Jicofo's 41/42) comes last, but lib-jitsi-meet prefers it anyway
/// and sends it as SVC in one SSRC, its layers named by the dependency
/// descriptor (offered below; see `svc`).
pub const CODECS: &[Codec] = &[
    Codec {
        kind: MediaKind::Audio,
        pt: 111,
        name: "opus",
        clock_rate: 48000,
        channels: 2,
        params: &[("minptime", "10"), ("useinbandfec", "1")],
        rtx_pt: None,
        feedback: &[("transport-cc", "")],
    },
    Codec {
        kind: MediaKind::Video,
        pt: 100,
        name: "VP8",
        clock_rate: 90000,
        channels: 0,
        params: &[],
        rtx_pt: Some(96),
        feedback: VIDEO_FB,
    },
    Codec {
        kind: MediaKind::Video,
        pt: 101,
        name: "VP9",
        clock_rate: 90000,
        channels: 0,
        params: &[],
        rtx_pt: Some(97),
        feedback: VIDEO_FB,
    },
    Codec {
        kind: MediaKind::Video,
        pt: 107,
        name: "H264",
        clock_rate: 90000,
        channels: 0,
        params: &[
            ("profile-level-id", "42e01f"),
            ("level-asymmetry-allowed", "1"),
            ("packetization-mode", "1"),
        ],
        rtx_pt: Some(99),
        feedback: VIDEO_FB,
    },
    Codec {
        kind: MediaKind::Video,
        pt: 41,
        name: "AV1",
        clock_rate: 90000,
        channels: 0,
        params: &[],
        rtx_pt: Some(42),
        feedback: VIDEO_FB,
    },
];

/// Header extensions offered, with Jicofo's ids. `mid` (RFC 8843 §15) is
/// offered so that clients tag what they send, but the bridge never writes
/// it on forwarded packets: those are demultiplexed by the SSRCs the offer
/// signals, as Jitsi's bridge does without `rtp-mid-demux`, so a client may
/// lay out its m-lines as it likes.
pub const HEADER_EXTS: &[HeaderExt] = &[
    HeaderExt {
        kind: MediaKind::Audio,
        id: 1,
        uri: "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    },
    HeaderExt {
        kind: MediaKind::Audio,
        id: 3,
        uri: "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    },
    HeaderExt {
        kind: MediaKind::Audio,
        id: 5,
        uri: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    },
    HeaderExt {
        kind: MediaKind::Video,
        id: 3,
        uri: "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    },
    HeaderExt {
        kind: MediaKind::Audio,
        id: 10,
        uri: "urn:ietf:params:rtp-hdrext:sdes:mid",
    },
    HeaderExt {
        kind: MediaKind::Video,
        id: 5,
        uri: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    },
    HeaderExt {
        kind: MediaKind::Video,
        id: 10,
        uri: "urn:ietf:params:rtp-hdrext:sdes:mid",
    },
    HeaderExt {
        kind: MediaKind::Video,
        id: 11,
        uri: crate::svc::DD_URI,
    },
];

/// One stream as the bridge forwards it: a source with its simulcast
/// layers (lowest first) and each layer's RTX partner. Receivers know it by
/// `layers[0].ssrc` (see [`EndpointSources::receiver_view`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDesc {
    pub kind: MediaKind,
    pub name: Option<String>,
    pub layers: Vec<Layer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer {
    pub ssrc: u32,
    pub rtx: Option<u32>,
}

impl EndpointSources {
    /// The streams these sources make up: a SIM group is one stream of
    /// several layers; any other source that is not an RTX partner is a
    /// stream of one layer.
    pub fn streams(&self) -> Vec<StreamDesc> {
        let rtx_of = |ssrc: u32| {
            self.groups
                .iter()
                .filter(|g| g.semantics == "FID")
                .find_map(|g| match g.ssrcs[..] {
                    [m, r] if m == ssrc => Some(r),
                    _ => None,
                })
        };
        let is_rtx = |ssrc: u32| {
            self.groups
                .iter()
                .any(|g| g.semantics == "FID" && g.ssrcs.get(1) == Some(&ssrc))
        };
        let name_of = |ssrc: u32| {
            self.sources
                .iter()
                .find(|s| s.ssrc == ssrc)
                .and_then(|s| s.name.clone())
        };
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for g in self.groups.iter().filter(|g| g.semantics == "SIM") {
            seen.extend(g.ssrcs.iter().copied());
            let Some(&first) = g.ssrcs.first() else {
                continue;
            };
            out.push(StreamDesc {
                kind: g.kind,
                name: name_of(first),
                layers: g
                    .ssrcs
                    .iter()
                    .map(|&ssrc| Layer {
                        ssrc,
                        rtx: rtx_of(ssrc),
                    })
                    .collect(),
            });
        }
        for s in &self.sources {
            if seen.contains(&s.ssrc) || is_rtx(s.ssrc) || !seen.insert(s.ssrc) {
                continue;
            }
            out.push(StreamDesc {
                kind: s.kind,
                name: s.name.clone(),
                layers: vec![Layer {
                    ssrc: s.ssrc,
                    rtx: rtx_of(s.ssrc),
                }],
            });
        }
        out
    }

    /// What other endpoints are told this endpoint sends: simulcast
    /// stripped (Jicofo's `strip-simulcast`). Each SIM group keeps its
    /// first (lowest) SSRC and that SSRC's FID partner; the bridge forwards
    /// whichever layer it picks under that SSRC, rewritten. Sources outside
    /// any SIM group are kept with their FID groups.
    pub fn receiver_view(&self) -> EndpointSources {
        let mut dropped = std::collections::HashSet::new();
        for g in self.groups.iter().filter(|g| g.semantics == "SIM") {
            dropped.extend(g.ssrcs.iter().skip(1).copied());
        }
        for g in self.groups.iter().filter(|g| g.semantics == "FID") {
            if let [media, rtx] = g.ssrcs[..]
                && dropped.contains(&media)
            {
                dropped.insert(rtx);
            }
        }
        EndpointSources {
            sources: self
                .sources
                .iter()
                .filter(|s| !dropped.contains(&s.ssrc))
                .cloned()
                .collect(),
            groups: self
                .groups
                .iter()
                .filter(|g| g.semantics == "FID" && !g.ssrcs.iter().any(|s| dropped.contains(s)))
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(ssrc: u32) -> Source {
        Source {
            ssrc,
            kind: MediaKind::Video,
            name: Some("ep-v0".into()),
            msid: None,
            video_type: None,
        }
    }

    fn group(semantics: &str, ssrcs: &[u32]) -> SsrcGroup {
        SsrcGroup {
            kind: MediaKind::Video,
            semantics: semantics.into(),
            ssrcs: ssrcs.to_vec(),
        }
    }

    #[test]
    fn receiver_view_strips_simulcast_to_the_first_layer_and_its_rtx() {
        let s = EndpointSources {
            sources: [1, 2, 3, 11, 12, 13].into_iter().map(src).collect(),
            groups: vec![
                group("SIM", &[1, 2, 3]),
                group("FID", &[1, 11]),
                group("FID", &[2, 12]),
                group("FID", &[3, 13]),
            ],
        };
        let v = s.receiver_view();
        let ssrcs: Vec<u32> = v.sources.iter().map(|s| s.ssrc).collect();
        assert_eq!(ssrcs, vec![1, 11]);
        assert_eq!(v.groups, vec![group("FID", &[1, 11])]);
    }

    #[test]
    fn streams_group_simulcast_layers_with_their_rtx() {
        let mut s = EndpointSources {
            sources: [1, 2, 3, 11, 12, 13, 7].into_iter().map(src).collect(),
            groups: vec![
                group("SIM", &[1, 2, 3]),
                group("FID", &[1, 11]),
                group("FID", &[2, 12]),
                group("FID", &[3, 13]),
            ],
        };
        s.sources[6].kind = MediaKind::Audio;
        let st = s.streams();
        assert_eq!(st.len(), 2);
        let l: Vec<(u32, Option<u32>)> = st[0].layers.iter().map(|l| (l.ssrc, l.rtx)).collect();
        assert_eq!(l, vec![(1, Some(11)), (2, Some(12)), (3, Some(13))]);
        assert_eq!(st[1].kind, MediaKind::Audio);
        assert_eq!(st[1].layers, vec![Layer { ssrc: 7, rtx: None }]);
        // the receiver's view is one stream of one layer under the same ssrc
        let v = s.receiver_view().streams();
        assert_eq!(
            v[0].layers,
            vec![Layer {
                ssrc: 1,
                rtx: Some(11)
            }]
        );
    }
}
