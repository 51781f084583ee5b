//! The one typed configuration. Every address, port, name and limit the
//! server uses is a field here; `conclave config example` prints
//! [`EXAMPLE`], which a test keeps in step with these defaults.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// SQLite store and the generated certificate live here.
    pub data_dir: PathBuf,
    /// Virtual hosts whose users have accounts.
    pub hosts: Vec<String>,
    /// A host on which anyone may sign in with SASL ANONYMOUS (meetings'
    /// guests). Empty disables it.
    pub guest_host: String,
    /// Bare JIDs of the administrators.
    pub admins: Vec<String>,
    pub c2s: C2s,
    pub http: Http,
    pub tls: Tls,
    pub auth: Auth,
    pub limits: Limits,
    pub registration: Registration,
    pub invites: Invites,
    pub muc: Muc,
    pub meetings: Meetings,
    pub archive: ArchiveCfg,
    pub retention: Retention,
    pub pep: Pep,
    pub turn: Turn,
    pub upload: Upload,
    pub components: Components,
    pub bridge: BridgeRole,
    pub storage: Storage,
    pub log: Log,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct C2s {
    pub bind: Vec<IpAddr>,
    /// Plain TCP with STARTTLS; 0 disables.
    pub starttls_port: u16,
    /// XEP-0368 direct TLS; 0 disables.
    pub direct_tls_port: u16,
    pub require_encryption: bool,
    /// XEP-0198: seconds a session whose connection dropped is kept for
    /// the client to resume it (messages keep queueing for it meanwhile);
    /// 0 turns resumption off.
    pub sm_resume_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    pub bind: Vec<IpAddr>,
    /// HTTPS; 0 disables.
    pub port: u16,
    pub websocket_path: String,
    pub bosh_path: String,
    /// Seconds a BOSH request may be held open (XEP-0124 `wait` ceiling).
    pub bosh_max_wait_secs: u64,
    /// Seconds a BOSH session survives without a request.
    pub bosh_inactivity_secs: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain; empty means a self-signed one generated
    /// into `data_dir` on first start.
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// PBKDF2 iterations for newly stored SCRAM keys.
    pub scram_iterations: u32,
    /// PLAIN is offered only over TLS, and only when this is on.
    pub allow_plain: bool,
    /// Also offer PLAIN on an unencrypted stream (with
    /// `c2s.require_encryption = false`). It sends the password in the
    /// clear, so it exists only for load generators on loopback that speak
    /// nothing but PLAIN (tsung); never turn it on for real clients.
    pub allow_unencrypted_plain: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// A stanza larger than this closes the stream with policy-violation.
    pub max_stanza_bytes: usize,
    /// Longest element name or attribute value; longer closes the stream
    /// with policy-violation. Text is not limited by this, only by
    /// `max_stanza_bytes`.
    pub max_token_bytes: usize,
    /// Deepest element nesting in a stanza (the stanza itself is level 1);
    /// deeper closes the stream with policy-violation while parsing. At
    /// most `MAX_DEPTH_CEILING`: every walk of a tree recurses.
    pub max_depth: usize,
    /// Connections from one address: TCP streams, and WebSocket and BOSH
    /// sessions, while they last. HTTPS connections (before a WebSocket
    /// upgrade, or carrying BOSH requests) are counted apart, against the
    /// same number.
    pub max_connections_per_ip: usize,
    /// Failed logins per address per minute before all logins from it are
    /// refused with temporary-auth-failure.
    pub auth_failures_per_minute: u32,
    /// A stream that has not authenticated and bound within this time is
    /// closed with connection-timeout.
    pub unauthenticated_timeout_secs: u64,
    /// Offline messages kept per user; past it senders get
    /// service-unavailable.
    pub max_offline_messages: usize,
    /// Stanzas queued for a slow client (or component) before it is
    /// closed with policy-violation; what was queued goes to offline
    /// storage or back to its senders, never lost.
    pub session_queue: usize,
    /// Bytes queued for one session above which whoever sends to it is
    /// made to wait (its own stream is not read) until the queue drains.
    pub send_queue_bytes: usize,
    /// A session whose connection takes no bytes for this long while the
    /// server has some to write is closed (resource-constraint); a sender
    /// waits at most this long for a queue to drain.
    pub send_stall_secs: u64,
    /// Bytes per second one stream may send, read slower beyond (0: no
    /// limit), after a burst of `rate_burst_bytes`.
    pub rate_bytes_per_sec: u64,
    pub rate_burst_bytes: u64,
    /// The same for all streams from one address together.
    pub ip_rate_bytes_per_sec: u64,
    pub ip_rate_burst_bytes: u64,
    /// A WebSocket message begun but not finished within this many seconds
    /// closes the stream with policy-violation.
    pub ws_message_timeout_secs: u64,
    /// How long the server waits for a client to answer an IQ the server
    /// sent it (a XEP-0115 disco#info query); a later answer is ignored.
    pub server_iq_timeout_secs: u64,
    /// IQs the server may have outstanding to one session at once.
    pub server_iqs_per_session: usize,
    /// XEP-0198: stanzas kept for a client until it acknowledges them
    /// (also what a hibernated session may gather); past it the stream is
    /// closed with policy-violation, or the hibernated session ended.
    pub sm_unacked_max: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Registration {
    /// XEP-0077 in-band registration; off by default, as XEP-0479 advises.
    pub allow: bool,
}

/// Invitations (XEP-0401, XEP-0379, XEP-0445): single-use tokens that let
/// one person register although `registration.allow` is off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Invites {
    /// Seconds a new invitation stays valid.
    pub ttl_secs: u64,
    /// Whether users' contact invitations also register an account. Off,
    /// like open registration: then only `admins` and the CLI bring new
    /// accounts, and users' invitations only subscribe existing accounts.
    pub users_may_invite: bool,
    /// Public base of the landing page URLs; empty means
    /// `https://<first host>:<http.port>`.
    pub base_url: String,
}

impl Default for Invites {
    fn default() -> Self {
        Invites {
            ttl_secs: 7 * 24 * 3600,
            users_may_invite: false,
            base_url: String::new(),
        }
    }
}

/// How long stored conversations and files are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Days that archives (of accounts and rooms), offline messages and
    /// uploads are kept; 0 keeps them until deleted. A room's owner may
    /// choose fewer days for the room.
    pub days: u32,
    /// Seconds between background sweeps.
    pub sweep_interval_secs: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            days: 90,
            sweep_interval_secs: 3600,
        }
    }
}

/// XEP-0313 message archives of accounts and rooms.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveCfg {
    pub enabled: bool,
    /// What is archived for a user who set no preference: `always`,
    /// `roster` (only chats with contacts) or `never`.
    pub default: String,
    /// Most results in one page of a query.
    pub max_page: usize,
}

impl Default for ArchiveCfg {
    fn default() -> Self {
        ArchiveCfg {
            enabled: true,
            default: "always".into(),
            max_page: 100,
        }
    }
}

/// XEP-0045 group chat at `conference.<host>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Muc {
    pub enabled: bool,
    /// Messages a room keeps to replay to joiners (an owner may lower it).
    pub history: usize,
    /// Rooms one user may have created that still exist (admins: no
    /// limit); past it creating one is refused with resource-constraint.
    pub max_rooms_per_user: usize,
    /// Rooms one session may be in at once; past it a join is refused
    /// with resource-constraint.
    pub max_occupancies_per_session: usize,
    /// Jitsi's lobby at `lobby.<host>`: strangers knock at a members-only
    /// meeting and a moderator admits or denies them. Only rooms whose
    /// owner turned it on (meetings do) have one.
    pub lobby: bool,
}

impl Default for Muc {
    fn default() -> Self {
        Muc {
            enabled: true,
            history: 20,
            max_rooms_per_user: 100,
            max_occupancies_per_session: 200,
            lobby: true,
        }
    }
}

/// Video meetings: the conference focus at `focus.<host>` and the media
/// bridge (SFU) in this process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Meetings {
    pub enabled: bool,
    /// The one UDP port every endpoint's media uses; 0 picks a free one.
    pub udp_port: u16,
    /// The address the media socket binds.
    pub bind: IpAddr,
    /// The address offered to browsers, when it is not `bind` (behind NAT).
    pub advertise: Option<IpAddr>,
    /// Sources (SSRCs) one participant may announce.
    pub max_sources_per_participant: usize,
    /// Largest bridge-channel message relayed; larger ones are dropped.
    pub max_channel_message_bytes: usize,
    /// A participant whose media stops for this long is removed.
    pub endpoint_timeout_secs: u64,
    /// Who moderates a meeting (mute, kick, lock, end it).
    pub moderators: MeetingModerators,
    /// Most the bridge sends one participant (kbit/s), whatever its
    /// bandwidth estimate; 0 leaves it to the estimate alone.
    pub max_receive_kbps: u32,
    /// RTP packets per second (in and out) the bridge counts as fully
    /// loaded: `conclave_bridge_stress` is its packet rate over this.
    pub capacity_packets_per_second: u32,
    /// Plain (unencrypted, unauthenticated) RTP taken in on this loopback
    /// address, as if from whichever participant announced its SSRC: for
    /// benchmarks, as Janus's remote publishers. Off by default.
    pub rtp_ingest: Option<std::net::SocketAddr>,
    /// The MUC room where bridges that run apart (`conclave bridge`)
    /// publish their load and the focus finds them (Jitsi's brewery);
    /// empty means `jvbbrewery@conference.<first host>`.
    pub brewery_room: String,
    /// With bridges that run apart: once each bridge of a conference has
    /// this many of its participants, the next goes on another bridge,
    /// linked to the others by relays (cascading). 0: no limit, never
    /// cascade.
    pub max_participants_per_bridge: usize,
    /// Sites whose pages may show a meeting page (`/<room>`) in a frame
    /// (the embedding API, `/external_api.js`): the CSP `frame-ancestors`
    /// of meeting pages. Each is an origin (`https://example.org`,
    /// `https://*.example.org:8443`) or `*` for any site (the default, as
    /// Jitsi Meet allows); empty: none. The home page and the chat are
    /// never framed, whatever this says.
    pub embed_origins: Vec<String>,
}

/// `meetings.moderators`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeetingModerators {
    /// The first participant, as in Jitsi Meet by default.
    First,
    /// Every participant signed in with an account (not a guest).
    Authenticated,
}

impl Default for Meetings {
    fn default() -> Self {
        Meetings {
            enabled: true,
            udp_port: 10000,
            bind: IpAddr::from([127, 0, 0, 1]),
            advertise: None,
            max_sources_per_participant: 20,
            max_channel_message_bytes: 65536,
            endpoint_timeout_secs: 30,
            moderators: MeetingModerators::First,
            max_receive_kbps: 0,
            capacity_packets_per_second: 50_000,
            rtp_ingest: None,
            brewery_room: String::new(),
            max_participants_per_bridge: 0,
            embed_origins: vec!["*".into()],
        }
    }
}

/// XEP-0163 PEP on every account (with XEP-0223 private nodes and XEP-0402
/// bookmarks), and XEP-0049 private XML storage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pep {
    /// Items one node keeps at most; `pubsub#max_items` may ask for fewer,
    /// and `max` means this many.
    pub max_items: usize,
    /// Largest item payload (and XEP-0049 element), serialised, in bytes.
    pub max_item_bytes: usize,
    /// Nodes one account may have.
    pub max_nodes: usize,
    /// Payload bytes all of one account's items may hold together.
    pub quota_bytes: u64,
    /// XEP-0049 private XML elements one account may keep.
    pub max_private_entries: usize,
    /// Client capabilities (XEP-0115) remembered by verification string,
    /// shared by every session that announces the same one.
    pub caps_cache_entries: usize,
}

impl Default for Pep {
    fn default() -> Self {
        Pep {
            max_items: 256,
            max_item_bytes: 128 * 1024,
            max_nodes: 256,
            quota_bytes: 16 * 1024 * 1024,
            max_private_entries: 100,
            caps_cache_entries: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Turn {
    /// coturn's `static-auth-secret`; empty: no TURN credentials.
    pub secret: String,
    pub host: String,
    pub port: u16,
    /// Lifetime of handed-out credentials.
    pub ttl_secs: u64,
}

/// XEP-0363 HTTP File Upload on `upload.<host>`, files served by our own
/// HTTPS listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Upload {
    /// Needs the HTTPS listener (`http.port` not 0).
    pub enabled: bool,
    /// Largest file one slot may carry (advertised in disco).
    pub max_file_bytes: u64,
    /// Bytes one user may have stored and pending at once.
    pub quota_bytes: u64,
    /// Bytes all guests of a host (meeting participants without an
    /// account) may have stored at once, together; 0: guests may not
    /// upload. Each guest login is a new account, so a per-guest quota
    /// would bound nothing.
    pub guest_quota_bytes: u64,
    /// How long a slot waits for its PUT to begin.
    pub slot_ttl_secs: u64,
    /// Public base of the upload URLs; empty means
    /// `https://<first host>:<http.port>`.
    pub base_url: String,
}

/// XEP-0114 external components (bots, bridges), each serving a domain of
/// its own and authenticated by a shared secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Components {
    /// Addresses to listen on. The protocol is plain TCP: keep it on
    /// loopback (or a private network).
    pub bind: Vec<IpAddr>,
    /// 0 disables. Nothing listens while `list` is empty.
    pub port: u16,
    pub list: Vec<ComponentEntry>,
}

/// One component: the domain it serves and the secret it proves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentEntry {
    pub domain: String,
    pub secret: String,
}

impl Default for Components {
    fn default() -> Self {
        Components {
            bind: loopback(),
            port: 5347,
            list: Vec::new(),
        }
    }
}

/// `conclave bridge`: a media bridge run apart from the server, which
/// connects to it as an XEP-0114 component, joins the brewery room
/// (`meetings.brewery_room`) and takes colibri2 from the focus. Its media
/// settings are `[meetings]`'s.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeRole {
    /// The server's component port (`components.port`), host:port.
    pub server: String,
    /// The component domain the bridge connects as: one of the server's
    /// `components.list`, a different one per bridge.
    pub domain: String,
    /// That component's secret.
    pub secret: String,
    /// The focus whose colibri2 requests it takes (`--focus`); empty means
    /// `focus.<first host>`.
    pub focus: String,
    /// How often its presence in the brewery carries fresh stats.
    pub stats_interval_secs: u64,
    /// Where its plain-HTTP interface listens: `/metrics`, `/health` and
    /// the bridge channel (`/colibri-ws/…`); port 0 disables it.
    pub http_bind: IpAddr,
    pub http_port: u16,
    /// The base URL clients reach the bridge channel at (a TLS proxy's in
    /// production); empty means `ws://<http_bind>:<http_port>`.
    pub public_url: String,
}

impl Default for BridgeRole {
    fn default() -> Self {
        BridgeRole {
            server: "127.0.0.1:5347".into(),
            domain: String::new(),
            secret: String::new(),
            focus: String::new(),
            stats_interval_secs: 5,
            http_bind: IpAddr::from([127, 0, 0, 1]),
            http_port: 8080,
            public_url: String::new(),
        }
    }
}

impl Config {
    /// `meetings.brewery_room`, or its default.
    pub fn brewery_room(&self) -> String {
        if self.meetings.brewery_room.is_empty() {
            format!(
                "jvbbrewery@conference.{}",
                self.hosts.first().map_or("localhost", String::as_str)
            )
        } else {
            self.meetings.brewery_room.clone()
        }
    }
}

/// The SQLite store's connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// Connections for writes and most reads. SQLite writes one
    /// transaction at a time, so a few are enough.
    pub connections: u32,
    /// Read-only connections for the reads every login makes, run on the
    /// thread that asks. 0: one per CPU core plus one.
    pub read_connections: usize,
}

impl Default for Storage {
    /// The store's own defaults, so that they are written in one place.
    fn default() -> Self {
        let o = conclave_store::SqliteOptions::default();
        Storage {
            connections: o.connections,
            read_connections: o.read_connections,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// A tracing filter: `info`, `debug`, `conclave=trace,sqlx=warn`, ...
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./conclave-data"),
            hosts: vec!["localhost".into()],
            guest_host: "guest.localhost".into(),
            admins: Vec::new(),
            c2s: C2s::default(),
            http: Http::default(),
            tls: Tls::default(),
            auth: Auth::default(),
            limits: Limits::default(),
            registration: Registration::default(),
            invites: Invites::default(),
            muc: Muc::default(),
            meetings: Meetings::default(),
            archive: ArchiveCfg::default(),
            retention: Retention::default(),
            pep: Pep::default(),
            turn: Turn::default(),
            upload: Upload::default(),
            components: Components::default(),
            bridge: BridgeRole::default(),
            storage: Storage::default(),
            log: Log::default(),
        }
    }
}

fn loopback() -> Vec<IpAddr> {
    vec![IpAddr::from([127, 0, 0, 1])]
}

impl Default for C2s {
    fn default() -> Self {
        C2s {
            bind: loopback(),
            starttls_port: 5222,
            direct_tls_port: 5223,
            require_encryption: true,
            sm_resume_timeout_secs: 300,
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Http {
            bind: loopback(),
            port: 8443,
            websocket_path: "/xmpp-websocket".into(),
            bosh_path: "/http-bind".into(),
            bosh_max_wait_secs: 60,
            bosh_inactivity_secs: 60,
        }
    }
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            scram_iterations: 10_000,
            allow_plain: true,
            allow_unencrypted_plain: false,
        }
    }
}

impl Limits {
    /// The bounds of one session's send queue.
    pub fn queue(&self) -> crate::router::QueueLimits {
        crate::router::QueueLimits {
            wait_bytes: self.send_queue_bytes,
            max_items: self.session_queue.max(1),
            stall: std::time::Duration::from_secs(self.send_stall_secs.max(1)),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 256 * 1024,
            max_token_bytes: 8192,
            max_depth: 64,
            max_connections_per_ip: 64,
            auth_failures_per_minute: 5,
            unauthenticated_timeout_secs: 30,
            max_offline_messages: 1000,
            session_queue: 4096,
            send_queue_bytes: 1024 * 1024,
            send_stall_secs: 30,
            rate_bytes_per_sec: 256 * 1024,
            rate_burst_bytes: 1024 * 1024,
            ip_rate_bytes_per_sec: 1024 * 1024,
            ip_rate_burst_bytes: 4 * 1024 * 1024,
            ws_message_timeout_secs: 10,
            server_iq_timeout_secs: 30,
            server_iqs_per_session: 8,
            sm_unacked_max: 500,
        }
    }
}

impl Default for Turn {
    fn default() -> Self {
        Turn {
            secret: String::new(),
            host: "localhost".into(),
            port: 3478,
            ttl_secs: 86_400,
        }
    }
}

impl Default for Upload {
    fn default() -> Self {
        Upload {
            enabled: true,
            max_file_bytes: 100 * 1024 * 1024,
            quota_bytes: 1024 * 1024 * 1024,
            guest_quota_bytes: 0,
            slot_ttl_secs: 300,
            base_url: String::new(),
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
        }
    }
}

/// The deepest nesting `limits.max_depth` may allow: every walk of an
/// element tree (serialising, copying, dropping) recurses, and this keeps
/// the deepest far inside a worker thread's stack.
pub const MAX_DEPTH_CEILING: usize = xmpp_core::framing::MAX_DEPTH_CEILING;

/// `*`, or `http(s)://host[:port]` with a DNS name (its leftmost label may
/// be `*`), an IPv4 address or a bracketed IPv6 one: what a CSP
/// `frame-ancestors` source may be, and nothing that could end the
/// directive (no spaces, `;` or `,`).
pub fn is_embed_origin(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return false;
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if let Some(p) = port
        && !(p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok_and(|n| n > 0))
    {
        return false;
    }
    if host.is_empty() {
        // Only a bracketed IPv6 address leaves it empty.
        return rest.starts_with('[');
    }
    let host = host.strip_prefix("*.").unwrap_or(host);
    host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl Config {
    /// Checks what serde cannot: a bad value is reported with the setting's
    /// name and what to do about it.
    pub fn validate(&self) -> Result<(), String> {
        if self.hosts.is_empty() {
            return Err("`hosts` must name at least one virtual host".into());
        }
        if self.storage.connections == 0 {
            return Err("`storage.connections` must be at least 1".into());
        }
        let m = &self.meetings;
        if m.enabled {
            if m.max_sources_per_participant == 0 {
                return Err("`meetings.max_sources_per_participant` must be at least 1 (a microphone is one source)".into());
            }
            if m.max_channel_message_bytes < 1024 {
                return Err("`meetings.max_channel_message_bytes` must be at least 1024".into());
            }
            if m.endpoint_timeout_secs == 0 {
                return Err("`meetings.endpoint_timeout_secs` must be at least 1".into());
            }
            if m.capacity_packets_per_second == 0 {
                return Err("`meetings.capacity_packets_per_second` must be at least 1 (the packet rate that counts as a full bridge)".into());
            }
            if (1..100).contains(&m.max_receive_kbps) {
                return Err("`meetings.max_receive_kbps` must be 0 (no cap but the estimate) or at least 100: less cannot carry one small picture".into());
            }
            if m.rtp_ingest.is_some_and(|a| !a.ip().is_loopback()) {
                return Err("`meetings.rtp_ingest` takes unauthenticated media, so only a loopback address (127.0.0.1:PORT or [::1]:PORT); leave it unset outside benchmarks".into());
            }
            if m.bind.is_unspecified() && m.advertise.is_none() {
                return Err("`meetings.bind` is a wildcard address: set `meetings.advertise` to the address browsers should send media to".into());
            }
        }
        if let Some(bad) = m.embed_origins.iter().find(|o| !is_embed_origin(o)) {
            return Err(format!(
                "`meetings.embed_origins`: {bad:?} is not an origin like \"https://example.org\" \
                 (scheme://host[:port], no path; \"https://*.example.org\" for its subdomains) or \"*\" (any site)"
            ));
        }
        if !(2..=MAX_DEPTH_CEILING).contains(&self.limits.max_depth) {
            return Err(format!(
                "`limits.max_depth` must be between 2 and {MAX_DEPTH_CEILING} (deeper trees risk the stack)"
            ));
        }
        for h in self.hosts.iter().chain(std::iter::once(&self.guest_host)) {
            if h.is_empty() && h == &self.guest_host {
                continue;
            }
            if jid::BareJid::new(h)
                .map(|j| j.node().is_some())
                .unwrap_or(true)
            {
                return Err(format!("`{h}` is not a valid domain name for a host"));
            }
        }
        if self.hosts.contains(&self.guest_host) {
            return Err("`guest_host` must differ from every entry in `hosts`".into());
        }
        for a in &self.admins {
            if jid::BareJid::new(a)
                .map(|j| j.node().is_none())
                .unwrap_or(true)
            {
                return Err(format!("`admins`: `{a}` is not a bare JID like user@host"));
            }
        }
        if self.limits.max_stanza_bytes < 4096 {
            return Err("`limits.max_stanza_bytes` must be at least 4096".into());
        }
        if self.limits.max_token_bytes < 256
            || self.limits.max_token_bytes > self.limits.max_stanza_bytes
        {
            return Err(
                "`limits.max_token_bytes` must be between 256 and `limits.max_stanza_bytes`".into(),
            );
        }
        if !matches!(self.archive.default.as_str(), "always" | "roster" | "never") {
            return Err("`archive.default` must be \"always\", \"roster\" or \"never\"".into());
        }
        if self.retention.sweep_interval_secs == 0 {
            return Err("`retention.sweep_interval_secs` must be at least 1".into());
        }
        if self.archive.max_page == 0 {
            return Err("`archive.max_page` must be at least 1".into());
        }
        if self.limits.session_queue == 0 {
            return Err("`limits.session_queue` must be at least 1".into());
        }
        if self.limits.sm_unacked_max == 0 {
            return Err("`limits.sm_unacked_max` must be at least 1".into());
        }
        if self.limits.ws_message_timeout_secs == 0 {
            return Err("`limits.ws_message_timeout_secs` must be at least 1".into());
        }
        if self.limits.server_iq_timeout_secs == 0 || self.limits.server_iqs_per_session == 0 {
            return Err(
                "`limits.server_iq_timeout_secs` and `limits.server_iqs_per_session` must be at least 1"
                    .into(),
            );
        }
        let p = &self.pep;
        if p.max_items == 0 || p.max_nodes == 0 || p.caps_cache_entries == 0 {
            return Err(
                "`pep.max_items`, `pep.max_nodes` and `pep.caps_cache_entries` must be at least 1"
                    .into(),
            );
        }
        if p.max_item_bytes < 1024 {
            return Err("`pep.max_item_bytes` must be at least 1024".into());
        }
        if p.quota_bytes < p.max_item_bytes as u64 {
            return Err("`pep.quota_bytes` must be at least `pep.max_item_bytes`".into());
        }
        if self.auth.scram_iterations < 4096 {
            return Err("`auth.scram_iterations` must be at least 4096 (RFC 7677)".into());
        }
        if self.tls.cert.is_empty() != self.tls.key.is_empty() {
            return Err("set both `tls.cert` and `tls.key`, or neither".into());
        }
        for p in [&self.http.websocket_path, &self.http.bosh_path] {
            if !p.starts_with('/') {
                return Err(format!("HTTP path `{p}` must start with '/'"));
            }
        }
        let u = &self.upload;
        if u.max_file_bytes == 0 || u.max_file_bytes > i64::MAX as u64 {
            return Err("`upload.max_file_bytes` must be between 1 and 2^63-1".into());
        }
        if u.slot_ttl_secs == 0 {
            return Err("`upload.slot_ttl_secs` must be at least 1".into());
        }
        let scheme_ok = ["https://", "http://"]
            .iter()
            .any(|p| u.base_url.starts_with(p));
        if !u.base_url.is_empty() && !scheme_ok {
            return Err("`upload.base_url` must start with https:// (or http://)".into());
        }
        let i = &self.invites;
        if i.ttl_secs == 0 {
            return Err("`invites.ttl_secs` must be at least 1".into());
        }
        if !i.base_url.is_empty()
            && !["https://", "http://"]
                .iter()
                .any(|p| i.base_url.starts_with(p))
        {
            return Err("`invites.base_url` must start with https:// (or http://)".into());
        }
        self.validate_components()
    }

    /// Each component domain is a valid domain, listed once, with a
    /// secret, and not one the server itself serves.
    fn validate_components(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for c in &self.components.list {
            let domain = jid::BareJid::new(&c.domain)
                .ok()
                .filter(|j| j.node().is_none())
                .map(|j| j.as_str().to_owned())
                .ok_or_else(|| {
                    format!("`components.list`: `{}` is not a valid domain", c.domain)
                })?;
            if c.secret.is_empty() {
                return Err(format!("`components.list`: set a `secret` for `{domain}`"));
            }
            let taken = self.is_local_host(&domain)
                || crate::modules::SERVICES.iter().any(|svc| {
                    (svc.enabled)(self)
                        && self
                            .hosts
                            .iter()
                            .any(|h| domain == format!("{}.{h}", svc.subdomain))
                })
                // The focus lives in its own crate; its domain is the
                // meetings' (see conclave_focus::SERVICE).
                || (self.meetings.enabled
                    && self.hosts.iter().any(|h| domain == format!("focus.{h}")));
            if taken {
                return Err(format!(
                    "`components.list`: `{domain}` is already served by the server itself"
                ));
            }
            if !seen.insert(domain.clone()) {
                return Err(format!(
                    "`components.list`: `{domain}` is listed more than once"
                ));
            }
        }
        Ok(())
    }

    /// Whether `upload.<host>` is served: files need the HTTPS listener.
    pub fn upload_enabled(&self) -> bool {
        self.upload.enabled && self.http.port != 0
    }

    /// Where upload URLs begin, without a trailing slash. The default names
    /// the first host rather than `upload.<host>`, which need not resolve.
    pub fn upload_base_url(&self) -> String {
        self.https_base(&self.upload.base_url)
    }

    /// Where invitation landing pages begin, without a trailing slash;
    /// `None` without the HTTPS listener (and no `invites.base_url`).
    pub fn invite_base_url(&self) -> Option<String> {
        (self.http.port != 0 || !self.invites.base_url.is_empty())
            .then(|| self.https_base(&self.invites.base_url))
    }

    /// `configured` without its trailing slash, or the HTTPS listener's
    /// address under the first host.
    fn https_base(&self, configured: &str) -> String {
        if !configured.is_empty() {
            return configured.trim_end_matches('/').to_owned();
        }
        let host = self
            .hosts
            .first()
            .map(String::as_str)
            .unwrap_or("localhost");
        match self.http.port {
            443 => format!("https://{host}"),
            p => format!("https://{host}:{p}"),
        }
    }

    pub fn is_local_host(&self, domain: &str) -> bool {
        self.hosts.iter().any(|h| h == domain) || self.is_guest_host(domain)
    }

    pub fn is_guest_host(&self, domain: &str) -> bool {
        !self.guest_host.is_empty() && self.guest_host == domain
    }
}

/// The commented example that `conclave config example` prints.
pub const EXAMPLE: &str = r#"# Conclave configuration. Every setting is optional: the values shown are
# the defaults. Environment variables override the file: CONCLAVE_ then the
# key, with `__` between section and key, e.g. CONCLAVE_C2S__STARTTLS_PORT=5222
# or CONCLAVE_HOSTS='["example.org"]'.

# Where the SQLite store and the generated certificate live.
data_dir = "./conclave-data"
# Virtual hosts whose users have accounts.
hosts = ["localhost"]
# Anyone may sign in here with SASL ANONYMOUS (meeting guests); "" disables.
guest_host = "guest.localhost"
# Bare JIDs of the administrators: they may run the XEP-0133 commands
# (add, delete users, change passwords, announce...) from their client.
admins = []

[c2s]
# Addresses to listen on. Loopback by default: open it up deliberately.
bind = ["127.0.0.1"]
# XMPP with STARTTLS (0 disables).
starttls_port = 5222
# XMPP over direct TLS, XEP-0368 (0 disables).
direct_tls_port = 5223
# Refuse authentication before TLS.
require_encryption = true
# XEP-0198 stream resumption: seconds a session whose connection dropped is
# kept (messages queue for it) for the client to resume; 0 disables it.
sm_resume_timeout_secs = 300

[http]
bind = ["127.0.0.1"]
# HTTPS: /health, /metrics, WebSocket and BOSH (0 disables).
port = 8443
websocket_path = "/xmpp-websocket"
bosh_path = "/http-bind"
# Longest time a BOSH request is held open, in seconds.
bosh_max_wait_secs = 60
# A BOSH session without requests for this long is ended, in seconds.
bosh_inactivity_secs = 60

[tls]
# PEM certificate chain and key. Empty: a self-signed certificate for the
# hosts is generated into data_dir on first start.
cert = ""
key = ""

[auth]
# PBKDF2 iterations for stored SCRAM keys (passwords are never stored).
scram_iterations = 10000
# Offer SASL PLAIN (only ever over TLS).
allow_plain = true
# Also offer PLAIN without TLS when c2s.require_encryption is off. The
# password crosses the wire in the clear: only for benchmarks on loopback.
allow_unencrypted_plain = false

[limits]
# Largest stanza in bytes; larger ones close the stream (policy-violation).
max_stanza_bytes = 262144
# Longest element name or attribute value in bytes (text is not limited by it).
max_token_bytes = 8192
# Deepest element nesting in a stanza; deeper closes the stream
# (policy-violation). At most 256.
max_depth = 64
# Simultaneous connections from one address: TCP streams, WebSocket and
# BOSH sessions. HTTPS connections are counted apart against the same number.
max_connections_per_ip = 64
# Failed logins per address per minute before logins from it are refused.
auth_failures_per_minute = 5
# Seconds a connection may take to authenticate and bind.
unauthenticated_timeout_secs = 30
# Offline messages kept per user.
max_offline_messages = 1000
# Stanzas queued for one slow client or component before it is closed
# (policy-violation); what was queued goes offline or back to its senders.
session_queue = 4096
# Bytes queued for one session beyond which its senders wait (the server
# stops reading them) until it drains: back-pressure, not loss.
send_queue_bytes = 1048576
# Seconds a connection may take no bytes while the server has some for it;
# then it is closed (resource-constraint) and what it had not acknowledged
# goes to offline storage. Also the longest a sender waits on it.
send_stall_secs = 30
# Bytes per second one stream may send; beyond a burst the server reads it
# slower (Prosody's mod_limits). 0: no limit.
rate_bytes_per_sec = 262144
rate_burst_bytes = 1048576
# The same for all streams from one address together. 0: no limit.
ip_rate_bytes_per_sec = 1048576
ip_rate_burst_bytes = 4194304
# Seconds a WebSocket message may take from its first frame to its last.
ws_message_timeout_secs = 10
# Seconds the server waits for a client to answer an IQ the server sent it
# (the disco#info query behind XEP-0115 caps); later answers are ignored.
server_iq_timeout_secs = 30
# IQs the server may have outstanding to one session at once.
server_iqs_per_session = 8
# XEP-0198: stanzas kept until the client acknowledges them (or gathered for
# a session awaiting resumption); past it the session is closed.
sm_unacked_max = 500

[registration]
# XEP-0077 in-band registration.
allow = false

[invites]
# Invitations (XEP-0401/0379/0445): a single-use link that lets one person
# register even with registration off, shown as a landing page on the HTTPS
# port (/invite/<token>) and as an xmpp: URI. Admins create them with the
# ad-hoc command urn:xmpp:invite#create-account, the operator with
# `conclave invite create`.
# Seconds an invitation stays valid (7 days).
ttl_secs = 604800
# Every user may invite contacts (urn:xmpp:invite#invite): whoever takes the
# invitation up and the inviter are subscribed to each other. Whether such an
# invitation may also register a new account here (ibr=y): off, since each
# link would then create an account, like open registration.
users_may_invite = false
# Public base of the landing page URLs, e.g. "https://chat.example.org"
# behind a proxy. Empty: https://<first host>:<http.port>.
base_url = ""

[retention]
# Days that message archives (accounts and rooms), offline messages and uploads
# are kept, then deleted; 0 keeps them until a user or the operator deletes them.
# 90 days keeps search useful over a quarter without making the server a
# permanent record; room owners may choose fewer days for their room.
# `conclave retention apply` applies it at once.
days = 90
# Seconds between background sweeps.
sweep_interval_secs = 3600

[archive]
# Message archives (XEP-0313) for accounts and rooms, searchable in full text
# (XEP-0431). End-to-end encrypted messages are kept as ciphertext and are not
# searchable.
enabled = true
# For users who set no preference: "always", "roster" or "never".
default = "always"
# Most results in one page of a query.
max_page = 100

[muc]
# Group chat rooms at conference.<host> (XEP-0045). No occupant cap by default.
enabled = true
# Messages a room replays to people who join (owners may lower it per room).
history = 20
# Rooms one user may have created that still exist (admins: no limit).
max_rooms_per_user = 100
# Rooms one session may be in at once.
max_occupancies_per_session = 200
# Jitsi's lobby at lobby.<host>: a stranger knocking at a members-only meeting
# waits there until a moderator admits (invites) or denies (kicks) them. Only
# rooms whose owner turns it on have a lobby (meetings do); lobby chat is
# never archived.
lobby = true

[meetings]
# Video meetings: the conference focus at focus.<host> (Jitsi's conference
# protocol) and the media bridge, in this process.
enabled = true
# The one UDP port all media uses (0: any free port).
udp_port = 10000
# The address the media socket binds. Browsers on other machines need an
# address they can reach: set it (or 0.0.0.0 with `advertise`).
bind = "127.0.0.1"
# The address browsers are told to send media to, when not `bind` (NAT).
# advertise = "203.0.113.7"
# Sources (audio, video, simulcast layers, RTX) one participant may announce.
max_sources_per_participant = 20
# Largest bridge-channel message relayed (bytes); larger ones are dropped.
max_channel_message_bytes = 65536
# A participant whose media stops this long is removed from the meeting.
endpoint_timeout_secs = 30
# Who moderates (mute others, kick, lock with a password): "first" (the first
# to join, as in Jitsi Meet) or "authenticated" (everyone signed in with an
# account; guests never).
moderators = "first"
# Most the bridge sends one participant, in kbit/s, whatever its bandwidth
# estimate says (0: the estimate alone). Each receiver gets the simulcast
# layers that fit, the speaker's first.
max_receive_kbps = 0
# The RTP packet rate (in and out, per second) that counts as a fully loaded
# bridge: /metrics' conclave_bridge_stress is the packet rate over this.
capacity_packets_per_second = 50000
# For benchmarks only (bench/sfu): plain RTP taken in on this loopback address
# as if from whichever participant announced its SSRC, as Janus's remote
# publishers. Unencrypted and unauthenticated, so off unless set.
# rtp_ingest = "127.0.0.1:10001"
# Where bridges run apart (`conclave bridge`) publish their load and the focus
# finds them: a hidden members-only room the focus keeps, Jitsi's brewery.
# Empty: jvbbrewery@conference.<first host>.
brewery_room = ""
# With bridges run apart: once each bridge of a conference carries this many
# of its participants, the next goes on another bridge (the least stressed
# that is not draining), and the bridges forward each other what their
# participants need over relays (ICE/DTLS-SRTP, as Jitsi's cascading).
# 0: no limit, a conference stays on one bridge.
max_participants_per_bridge = 0
# Sites whose pages may show meetings in a frame (the embedding API at
# /external_api.js, Jitsi's iframe API): origins such as
# "https://intranet.example.org" (with :port unless the scheme's default;
# "https://*.example.org" for its subdomains), or "*" for any site, which is
# what Jitsi Meet allows by default. []: no site. Only meeting pages (/<room>)
# may be framed; the home page and the chat never are.
embed_origins = ["*"]

[pep]
# Personal eventing (XEP-0163) on every account: OMEMO keys, avatars (0084),
# vCard4 (0292), bookmarks (0402, kept in step with 0049's storage:bookmarks),
# private nodes (0223). Also XEP-0049 private XML storage.
# Items one node keeps; a node's pubsub#max_items may ask for fewer, and
# "max" means this many (as Prosody's pep_max_items).
max_items = 256
# Largest item payload (and private XML element), serialised, in bytes;
# larger ones are refused with not-acceptable/payload-too-big (128 KiB).
max_item_bytes = 131072
# Nodes one account may have (OMEMO 0.3 uses one per device).
max_nodes = 256
# Payload bytes all of one account's items may hold together (16 MiB);
# a publish past it is refused with resource-constraint.
quota_bytes = 16777216
# XEP-0049 private XML elements (one per namespace) one account may keep.
max_private_entries = 100
# Client capabilities (XEP-0115) remembered, by verification string, for
# every session that announces the same one.
caps_cache_entries = 1000

[turn]
# coturn's static-auth-secret; set it to hand out TURN credentials (XEP-0215).
secret = ""
host = "localhost"
port = 3478
# Lifetime of handed-out credentials, in seconds.
ttl_secs = 86400

[upload]
# XEP-0363 HTTP File Upload on upload.<host>; files are served over the HTTPS
# port above (so http.port = 0 turns this off too). Registered users may
# upload; guests (meeting participants without an account) only when
# guest_quota_bytes is set.
enabled = true
# Largest file, in bytes (100 MiB, as Snikket).
max_file_bytes = 104857600
# Bytes one user may have stored at once, counting slots not yet used (1 GiB).
quota_bytes = 1073741824
# Bytes all guests of a host may have stored at once, together (files shared
# in meetings by people without an account). 0: guests may not upload.
guest_quota_bytes = 0
# How long files are kept is `retention.days`; the retention sweep deletes them.
# Seconds a client has to begin the PUT after it got the slot.
slot_ttl_secs = 300
# Public base of the upload URLs, e.g. "https://files.example.org" behind a
# proxy. Empty: https://<first host>:<http.port>.
base_url = ""

[components]
# XEP-0114 external components: bots and bridges that serve a domain of their
# own (users write to anything@that.domain) and log in with a shared secret.
# The protocol is plain TCP: keep it on loopback or a private network.
bind = ["127.0.0.1"]
# 0 disables; nothing listens while the list below is empty.
port = 5347
# One [[components.list]] table per component. A second connection for the
# same domain replaces the first, which is closed with `conflict`.
#   [[components.list]]
#   domain = "bot.localhost"
#   secret = "a long random string"
list = []

[bridge]
# `conclave bridge --focus focus.<host>`: a media bridge in a process (or on a
# machine) of its own, for `conclave serve --roles xmpp,focus`. It logs in to
# the server as an XEP-0114 component (one of [[components.list]] above, one
# domain per bridge), joins the brewery room (meetings.brewery_room) with its
# stats in presence, and takes the focus's colibri2 requests. Its media
# settings (udp_port, bind, advertise, capacity_packets_per_second, ...) are
# [meetings]'. SIGUSR1 drains it: no new conferences, and it exits when its
# last one ends.
# The server's component port, host:port.
server = "127.0.0.1:5347"
# The component domain it connects as, and that component's secret.
domain = ""
secret = ""
# The focus it takes colibri2 from (--focus); empty: focus.<first host>.
focus = ""
# How often its brewery presence carries fresh stats (stress, conferences,
# endpoints, drain).
stats_interval_secs = 5
# Its plain-HTTP interface: /metrics (Prometheus), /health and the bridge
# channel (/colibri-ws/...). Port 0 disables it.
http_bind = "127.0.0.1"
http_port = 8080
# The base URL browsers reach the bridge channel at (a TLS proxy's, in
# production); empty: ws://<http_bind>:<http_port>.
public_url = ""

[storage]
# Connections to the SQLite store for writes and most reads. SQLite writes
# one transaction at a time, so a few are enough.
connections = 4
# Read-only connections for the reads every login makes (keys, roster,
# offline messages). 0 keeps one per CPU core plus one.
read_connections = 0

[log]
# A tracing filter, e.g. "info" or "conclave=debug,sqlx=warn".
level = "info"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_matches_defaults() {
        let parsed: Config = toml::from_str(EXAMPLE).expect("example parses");
        let a = toml::to_string(&parsed).unwrap();
        let b = toml::to_string(&Config::default()).unwrap();
        assert_eq!(a, b);
        Config::default().validate().unwrap();
    }

    #[test]
    fn validation_names_the_setting() {
        let mut c = Config::default();
        c.limits.max_stanza_bytes = 10;
        assert!(
            c.validate()
                .unwrap_err()
                .contains("limits.max_stanza_bytes")
        );
        let c = Config {
            guest_host: "localhost".into(),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("guest_host"));
        let mut c = Config::default();
        c.storage.connections = 0;
        assert!(c.validate().unwrap_err().contains("storage.connections"));
        let c = Config {
            admins: vec!["localhost".into()],
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("admins"));
        let mut c = Config::default();
        c.upload.base_url = "files.example.org".into();
        assert!(c.validate().unwrap_err().contains("upload.base_url"));
    }

    #[test]
    fn embed_origins_are_origins() {
        for good in [
            "*",
            "https://example.org",
            "http://127.0.0.1:8080",
            "https://*.example.org",
            "https://intranet:8443",
            "https://[::1]:8443",
            "https://[2001:db8::1]",
        ] {
            assert!(is_embed_origin(good), "{good}");
        }
        for bad in [
            "",
            "example.org",
            "https://",
            "https://example.org/",
            "https://example.org/path",
            "https://example.org:0",
            "https://example.org:99999",
            "https://example.org:",
            "https://exa mple.org",
            "https://example.org; script-src *",
            "https://a.example, https://b.example",
            "https://user@example.org",
            "https://*",
            "https://a.*.example.org",
            "ftp://example.org",
            "'self'",
            "'none'",
            "https://[::1",
            "https://[nope]",
            "https://-a.example",
        ] {
            assert!(!is_embed_origin(bad), "{bad}");
        }
        let mut c = Config::default();
        c.meetings.embed_origins = vec!["https://ok.example".into(), "ok.example".into()];
        let err = c.validate().unwrap_err();
        assert!(
            err.contains("meetings.embed_origins") && err.contains("ok.example"),
            "{err}"
        );
        c.meetings.embed_origins = Vec::new();
        c.validate().unwrap();
        let parsed: Config =
            toml::from_str("[meetings]\nembed_origins = [\"https://a.example\"]\n").unwrap();
        assert_eq!(parsed.meetings.embed_origins, ["https://a.example"]);
    }

    #[test]
    fn component_domains_are_checked() {
        let entry = |d: &str, s: &str| ComponentEntry {
            domain: d.into(),
            secret: s.into(),
        };
        let mut c = Config::default();
        c.components.list = vec![entry("bot.localhost", "s"), entry("Bot.Localhost", "t")];
        assert!(c.validate().unwrap_err().contains("more than once"));
        for (bad, why) in [
            ("a@bot.localhost", "not a valid domain"),
            ("localhost", "already served"),
            ("conference.localhost", "already served"),
            ("guest.localhost", "already served"),
        ] {
            c.components.list = vec![entry(bad, "s")];
            assert!(c.validate().unwrap_err().contains(why), "{bad}");
        }
        c.components.list = vec![entry("bot.localhost", "")];
        assert!(c.validate().unwrap_err().contains("secret"));
        c.components.list = vec![entry("bot.localhost", "s")];
        c.validate().unwrap();
        let toml = "[[components.list]]\ndomain = \"bot.localhost\"\nsecret = \"s\"\n";
        let parsed: Config = toml::from_str(toml).unwrap();
        assert_eq!(parsed.components.list[0].domain, "bot.localhost");
        assert_eq!(parsed.components.port, 5347);
    }

    #[test]
    fn upload_base_url_defaults_to_the_first_host() {
        let mut c = Config::default();
        assert_eq!(c.upload_base_url(), "https://localhost:8443");
        c.http.port = 443;
        assert_eq!(c.upload_base_url(), "https://localhost");
        c.upload.base_url = "https://files.example.org/x/".into();
        assert_eq!(c.upload_base_url(), "https://files.example.org/x");
        c.http.port = 0;
        assert!(!c.upload_enabled());
    }
}
