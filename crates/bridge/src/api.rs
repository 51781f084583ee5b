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

/// What the bridge tells the focus without being asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeEvent {
    /// No ICE or media from the endpoint for `endpoint_timeout_secs`, or
    /// its DTLS failed: it is gone, and the focus should remove it.
    EndpointExpired { key: EndpointKey, reason: String },
}
