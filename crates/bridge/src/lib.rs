//! The media bridge (SFU): one UDP port for every endpoint, a str0m
//! instance per endpoint in RTP mode, forwarding decisions in
//! `forwarding`, and the bridge channel in `channel`. The focus drives it
//! through [`Bridge`], in the same process; nothing here knows XMPP.

pub mod allocation;
pub mod api;
pub mod channel;
mod demux;
pub mod forwarding;
mod ingest;
pub mod svc;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand::distr::Alphanumeric;

use api::{BridgeEvent, Candidate, EndpointKey, EndpointSources, LocalTransport, MediaKind};
use channel::Channels;
use worker::Command;

/// What the bridge needs to know of its deployment (`[meetings]`).
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Where the media socket binds; port 0 picks a free one (tests).
    pub bind: SocketAddr,
    /// The address offered to clients, if not the bound one (NAT).
    pub advertise: Option<std::net::IpAddr>,
    /// Public base of the bridge channel, e.g. `wss://host:8443`.
    pub websocket_base: String,
    /// An endpoint silent this long (no ICE, no media) is removed.
    pub endpoint_timeout: Duration,
    pub max_channel_message_bytes: usize,
    /// Most sent to one endpoint (bits/s), whatever its estimate.
    pub max_receive_bps: Option<f64>,
    /// The packet rate (in and out, per second) of a fully loaded bridge.
    pub capacity_pps: f64,
    /// Where plain RTP is taken in for benchmarks (see `ingest`); `None`
    /// (the default) opens no such socket.
    pub rtp_ingest: Option<SocketAddr>,
}

/// The running bridge. Cheap calls: each hands the worker a command.
pub struct Bridge {
    id: String,
    commands: flume::Sender<Command>,
    events: flume::Receiver<BridgeEvent>,
    fingerprint: api::Fingerprint,
    candidate: Candidate,
    websocket_base: String,
    pub channels: Arc<Channels>,
    stats: Arc<std::sync::Mutex<Vec<api::ConferenceStats>>>,
}

fn new_creds() -> str0m::IceCreds {
    str0m::IceCreds {
        ufrag: random(8),
        pass: random(24),
    }
}

fn random(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// Room JIDs go into the channel URL's path: everything but unreserved
/// characters is percent-encoded.
pub fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The key of a conference's relay to the bridge `relay` (its id, as
/// the focus names it): among the conference's endpoints, but no
/// participant's nick can be it (XMPP addresses hold no control
/// characters, nor does XML).
pub fn relay_key(conference: &str, relay: &str) -> EndpointKey {
    EndpointKey {
        conference: conference.to_owned(),
        endpoint: format!("\u{1}relay:{relay}"),
    }
}

impl Bridge {
    /// Binds the media socket and starts the worker on the current runtime.
    pub async fn start(config: BridgeConfig) -> std::io::Result<Arc<Bridge>> {
        let socket = tokio::net::UdpSocket::bind(config.bind).await?;
        let ingest = match config.rtp_ingest {
            Some(a) => Some(tokio::net::UdpSocket::bind(a).await?),
            None => None,
        };
        let mut local = socket.local_addr()?;
        if let Some(ip) = config.advertise {
            local.set_ip(ip);
        }
        let provider = str0m::crypto::from_feature_flags();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| std::io::Error::other("could not make a DTLS certificate"))?;
        let probe = str0m::Rtc::builder()
            .set_dtls_cert(cert.clone())
            .build(std::time::Instant::now());
        let fp = {
            let mut probe = probe;
            probe.direct_api().local_dtls_fingerprint().clone()
        };
        let value = fp
            .bytes
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        let channels = Arc::new(Channels::new(config.max_channel_message_bytes));
        let (ctx, crx) = flume::unbounded();
        let (etx, erx) = flume::unbounded();
        let settings = worker::Settings {
            endpoint_timeout: config.endpoint_timeout,
            max_receive_bps: config.max_receive_bps,
            capacity_pps: config.capacity_pps,
            cert,
        };
        let stats = Arc::new(std::sync::Mutex::new(Vec::new()));
        let w = worker::Worker::new(
            socket,
            ingest,
            local,
            settings,
            channels.clone(),
            etx,
            stats.clone(),
        )?;
        tokio::spawn(w.run(crx));
        Ok(Arc::new(Bridge {
            id: random(8),
            commands: ctx,
            events: erx,
            fingerprint: api::Fingerprint {
                hash: fp.hash_func,
                value,
                setup: "actpass".into(),
            },
            candidate: Candidate {
                foundation: "1".into(),
                component: 1,
                protocol: "udp".into(),
                priority: 2_130_706_431,
                ip: local.ip(),
                port: local.port(),
                typ: "host".into(),
                generation: 0,
            },
            websocket_base: config.websocket_base,
            channels,
            stats,
        }))
    }

    /// This bridge's id, the first segment of its channel URLs.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Each live conference's figures, as of the last few seconds.
    pub fn conference_stats(&self) -> Vec<api::ConferenceStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What the bridge tells the focus unasked (endpoints that expired).
    pub fn events(&self) -> flume::Receiver<BridgeEvent> {
        self.events.clone()
    }

    /// Creates (or recreates) an endpoint and returns the transport to
    /// offer it.
    pub fn allocate(&self, key: &EndpointKey) -> LocalTransport {
        let creds = new_creds();
        self.channels.allow(key, &creds.pass);
        let websocket_url = format!(
            "{}/colibri-ws/{}/{}/{}?pwd={}",
            self.websocket_base,
            self.id,
            encode_path(&key.conference),
            encode_path(&key.endpoint),
            creds.pass
        );
        let t = self.transport(&creds, websocket_url);
        let _ = self.commands.send(Command::Allocate {
            key: key.clone(),
            creds,
            relay: None,
        });
        t
    }

    /// Creates (or recreates) a relay to another bridge (cascading, keyed
    /// by [`relay_key`]) and returns the transport the other bridge
    /// connects to. Both sides run full ICE; `controlling` says which
    /// side this is (the focus picks one). A relay has no bridge channel.
    pub fn allocate_relay(&self, key: &EndpointKey, controlling: bool) -> LocalTransport {
        let creds = new_creds();
        let t = self.transport(&creds, String::new());
        let _ = self.commands.send(Command::Allocate {
            key: key.clone(),
            creds,
            relay: Some(controlling),
        });
        t
    }

    /// An in-place ICE restart: the endpoint takes new credentials (its
    /// media goes on over the pair it has until the client answers), and
    /// this is the transport to send it. The bridge channel keeps the
    /// password it was opened with, so the URL is not repeated.
    pub fn restart_ice(&self, key: &EndpointKey) -> LocalTransport {
        let creds = new_creds();
        let t = self.transport(&creds, String::new());
        let _ = self.commands.send(Command::IceRestart {
            key: key.clone(),
            creds,
        });
        t
    }

    fn transport(&self, creds: &str0m::IceCreds, websocket_url: String) -> LocalTransport {
        LocalTransport {
            ufrag: creds.ufrag.clone(),
            pwd: creds.pass.clone(),
            fingerprint: self.fingerprint.clone(),
            candidates: vec![self.candidate.clone()],
            websocket_url,
        }
    }

    /// The endpoint's answer: its ICE credentials, candidates, fingerprint.
    pub fn connect(&self, key: &EndpointKey, remote: api::RemoteTransport) {
        let _ = self.commands.send(Command::Connect {
            key: key.clone(),
            remote,
        });
    }

    /// Everything the endpoint now sends (replaces what it sent before).
    pub fn set_sources(&self, key: &EndpointKey, sources: EndpointSources) {
        let _ = self.commands.send(Command::Sources {
            key: key.clone(),
            sources,
        });
    }

    /// Stops forwarding the endpoint's audio or video (a moderator's mute).
    pub fn mute(&self, key: &EndpointKey, kind: MediaKind, muted: bool) {
        let _ = self.commands.send(Command::Mute {
            key: key.clone(),
            kind,
            muted,
        });
    }

    /// What the endpoint's bridge channel asked of the media (see
    /// `channel::ForWorker`).
    pub fn from_channel(&self, key: &EndpointKey, m: channel::ForWorker) {
        let channel::ForWorker::Constraints(value) = m;
        let _ = self.commands.send(Command::Constraints {
            key: key.clone(),
            value,
        });
    }

    /// Removes the endpoint and frees its state.
    pub fn expire(&self, key: &EndpointKey) {
        let _ = self.commands.send(Command::Expire { key: key.clone() });
    }
}
