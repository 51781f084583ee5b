//! `conclave`: the runtime. Parses the command line, loads the one
//! configuration, opens the store and wires listeners to the services.

/// A stanza is a tree of many small allocations, made and freed per
/// message: with glibc's allocator malloc and free were a quarter of the
/// instructions on the chat path (callgrind); mimalloc's are a fraction.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bosh;
mod bridge_role;
mod c2s;
mod colibri_ws;
mod http;
mod invite_page;
mod invites;
mod load;
mod meet_page;
mod rooms;
mod tls;
mod upload;
mod users;
mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use conclave_server::limits::ConnLimiter;
use conclave_server::{Config, Server};
use conclave_store::SqliteStore;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Parser)]
#[command(
    name = "conclave",
    version,
    about = "Conclave: one self-hosted server for private meetings and chat (XMPP, conferences, web client).",
    long_about = "Conclave: one self-hosted server for private meetings and chat.\n\n\
        With no configuration, `conclave serve` serves the domain `localhost` on loopback: XMPP on \
        5222 (STARTTLS) and 5223 (direct TLS), HTTPS on 8443 (WebSocket, BOSH, /health, /metrics), \
        with a self-signed certificate and its SQLite store in ./conclave-data.\n\n\
        Settings come from a TOML file (--config) and CONCLAVE_* environment variables; \
        `conclave config example` prints them all with their defaults."
)]
struct Cli {
    /// TOML configuration file; environment variables CONCLAVE_* override it.
    #[arg(long, short, global = true, env = "CONCLAVE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server until SIGTERM or Ctrl-C.
    Serve {
        /// What this process does: `xmpp` (the XMPP server, always),
        /// `focus` (the conference focus) and `bridge` (the media bridge).
        /// Without `bridge`, the focus uses bridges run apart (`conclave
        /// bridge`) that it finds in the brewery room.
        #[arg(long, value_delimiter = ',', default_value = "xmpp,focus,bridge")]
        roles: Vec<Role>,
    },
    /// Run a media bridge alone: it connects to the server as an XEP-0114
    /// component (`[bridge]`), joins the brewery room and takes colibri2
    /// from the focus. SIGUSR1 drains it (it exits after its last
    /// conference); SIGTERM stops it.
    Bridge {
        /// The focus whose requests it takes (default `bridge.focus`, else
        /// `focus.<first host>`).
        #[arg(long)]
        focus: Option<String>,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage accounts (works while the server runs).
    User {
        #[command(subcommand)]
        command: users::UserCommand,
    },
    /// Invitations: links that let one person register (works while the
    /// server runs).
    Invite {
        #[command(subcommand)]
        command: invites::InviteCommand,
    },
    /// XEP-0363 file uploads (works while the server runs).
    Upload {
        #[command(subcommand)]
        command: upload::UploadCommand,
    },
    /// Manage persistent group chat rooms (works while the server runs).
    Room {
        #[command(subcommand)]
        command: rooms::RoomCommand,
    },
    /// Apply the retention policy (`retention.days`).
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    Xmpp,
    Focus,
    Bridge,
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Delete archived messages, offline messages and uploads past
    /// retention now (the server also does this every
    /// `retention.sweep_interval_secs`). Works while the server runs.
    Apply {
        /// Take this Unix time as now (for tests).
        #[arg(long, hide = true)]
        now: Option<u64>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a commented example configuration with every default.
    Example,
    /// Print the configuration in effect (file + environment), as TOML.
    Show,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Example,
        } => {
            print!("{}", conclave_server::config::EXAMPLE);
            ExitCode::SUCCESS
        }
        command => {
            let cfg = match load::load(cli.config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("conclave: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("conclave: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(async move {
                match command {
                    Command::Serve { roles } => serve(cfg, &roles).await,
                    Command::Bridge { focus } => bridge_role::run(cfg, focus).await,
                    Command::Config {
                        command: ConfigCommand::Show,
                    } => toml::to_string(&cfg)
                        .map(|s| print!("{s}"))
                        .map_err(|e| e.to_string()),
                    Command::User { command } => users::run(&cfg, command).await,
                    Command::Upload { command } => upload::run(&cfg, command).await,
                    Command::Invite { command } => invites::run(&cfg, command).await,
                    Command::Room { command } => rooms::run(&cfg, command).await,
                    Command::Retention {
                        command: RetentionCommand::Apply { now },
                    } => retention_apply(&cfg, now).await,
                    Command::Config {
                        command: ConfigCommand::Example,
                    } => Ok(()),
                }
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("conclave: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn retention_apply(cfg: &Config, now: Option<u64>) -> Result<(), String> {
    let store = open_store(cfg).await?;
    let now = now.unwrap_or_else(xmpp_core::time::now_unix);
    let r = conclave_server::modules::retention::apply(&store, cfg, now).await;
    store.close().await;
    println!(
        "deleted {} archived messages, {} offline messages, {} uploads",
        r.archived, r.offline, r.uploads
    );
    Ok(())
}

pub async fn open_store(cfg: &Config) -> Result<SqliteStore, String> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
        format!(
            "cannot create data directory {}: {e}",
            cfg.data_dir.display()
        )
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700));
    }
    let path = cfg.data_dir.join("conclave.db");
    let opts = conclave_store::SqliteOptions {
        connections: cfg.storage.connections,
        read_connections: cfg.storage.read_connections,
    };
    SqliteStore::open_with(&path, opts)
        .await
        .map_err(|e| format!("cannot open the store {}: {e}", path.display()))
}

/// Counts connection tasks, so that shutdown can wait for them.
#[derive(Clone, Default)]
pub struct Live(Arc<AtomicUsize>);

pub struct LiveToken(Arc<AtomicUsize>);

impl Live {
    pub fn enter(&self) -> LiveToken {
        self.0.fetch_add(1, Ordering::SeqCst);
        LiveToken(self.0.clone())
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for LiveToken {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

async fn bind_all(
    addrs: &[std::net::IpAddr],
    port: u16,
    what: &str,
) -> Result<Vec<TcpListener>, String> {
    let mut out = Vec::new();
    for ip in addrs {
        let sa = SocketAddr::new(*ip, port);
        let l = TcpListener::bind(sa).await.map_err(|e| {
            format!("cannot listen for {what} on {sa}: {e} (change the port in the configuration)")
        })?;
        tracing::info!(%sa, "listening for {what}");
        out.push(l);
    }
    Ok(out)
}

/// aws-lc seeds its random generator on first use from CPU jitter, a
/// one-time computation of tens of milliseconds (420M instructions under
/// callgrind). Done at start, it delays no user: otherwise the first TLS
/// handshake, SCRAM login or new room after a start waits for it.
fn seed_random() -> Result<(), String> {
    let t = std::time::Instant::now();
    aws_lc_rs::rand::fill(&mut [0u8; 16])
        .map_err(|_| "the system's random generator is unavailable".to_string())?;
    tracing::debug!(
        ms = t.elapsed().as_millis() as u64,
        "random generator seeded"
    );
    Ok(())
}

/// The bridge `[meetings]` describes, started; `websocket_base` is where
/// clients reach its channel.
async fn start_bridge(
    meetings: &conclave_server::config::Meetings,
    websocket_base: String,
) -> Result<Arc<conclave_bridge::Bridge>, String> {
    conclave_bridge::Bridge::start(conclave_bridge::BridgeConfig {
        bind: std::net::SocketAddr::new(meetings.bind, meetings.udp_port),
        advertise: meetings.advertise,
        websocket_base,
        endpoint_timeout: Duration::from_secs(meetings.endpoint_timeout_secs),
        max_channel_message_bytes: meetings.max_channel_message_bytes,
        max_receive_bps: (meetings.max_receive_kbps > 0)
            .then(|| f64::from(meetings.max_receive_kbps) * 1000.0),
        capacity_pps: f64::from(meetings.capacity_packets_per_second),
        rtp_ingest: meetings.rtp_ingest,
    })
    .await
    .map_err(|e| {
        format!(
            "cannot open the media port {}:{} (`meetings.bind`, `meetings.udp_port`): {e}",
            meetings.bind, meetings.udp_port
        )
    })
}

async fn serve(mut cfg: Config, roles: &[Role]) -> Result<(), String> {
    if !roles.contains(&Role::Xmpp) {
        return Err("`serve --roles` must include xmpp (the focus is a service of the XMPP server; run a bridge alone with `conclave bridge`)".into());
    }
    if roles.contains(&Role::Bridge) && !roles.contains(&Role::Focus) {
        return Err("`serve --roles`: an in-process bridge needs the focus (run a bridge alone with `conclave bridge`)".into());
    }
    if !roles.contains(&Role::Focus) {
        cfg.meetings.enabled = false;
    }
    let local_bridge = roles.contains(&Role::Bridge);
    init_logging(&cfg.log.level);
    seed_random()?;
    let store = Arc::new(open_store(&cfg).await?);
    // Rows archived before their correction and retraction ids were kept
    // get them now, once, so that retracting an old chain takes it whole.
    match conclave_server::modules::retraction::backfill_refs(&*store).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(rows = n, "archive rows given their message ids"),
        Err(e) => return Err(format!("cannot upgrade the archive: {e}")),
    }
    if cfg.upload_enabled() {
        upload::recover(&*store).await;
    }
    let tls_xmpp = TlsAcceptor::from(tls::server_config(&cfg, &[b"xmpp-client"])?);
    let tls_http = TlsAcceptor::from(tls::server_config(&cfg, &[b"http/1.1"])?);
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
        .ok();
    let c2s_cfg = cfg.c2s.clone();
    let http_cfg = cfg.http.clone();
    let comp_cfg = cfg.components.clone();
    let meetings = cfg.meetings.clone();
    let public_base = format!("wss://{}:{}", cfg.hosts[0], cfg.http.port);
    let server = Server::with_services(cfg, store.clone(), &[&conclave_focus::SERVICE]);
    if meetings.enabled {
        let bridge = if local_bridge {
            let bridge = start_bridge(&meetings, public_base).await?;
            server.set_extension(bridge.clone());
            Some(bridge)
        } else {
            None
        };
        conclave_focus::install(
            &server,
            bridge,
            conclave_focus::FocusSettings {
                max_sources: meetings.max_sources_per_participant,
                moderators: meetings.moderators,
                hosts: server.config.hosts.clone(),
                brewery_room: server.config.brewery_room(),
                max_per_bridge: meetings.max_participants_per_bridge,
            },
        );
    }
    let limiter = ConnLimiter::default();
    let live = Live::default();
    let mut tasks = Vec::new();
    // Components: only when some are configured, so that the default
    // port is not taken for nothing.
    let comp_port = if comp_cfg.list.is_empty() {
        0
    } else {
        comp_cfg.port
    };
    for (bind, port, mode, what) in [
        (
            &c2s_cfg.bind,
            c2s_cfg.starttls_port,
            c2s::Mode::StartTls,
            "XMPP clients (STARTTLS)",
        ),
        (
            &c2s_cfg.bind,
            c2s_cfg.direct_tls_port,
            c2s::Mode::DirectTls,
            "XMPP clients (direct TLS)",
        ),
        (
            &comp_cfg.bind,
            comp_port,
            c2s::Mode::Component,
            "XMPP components (XEP-0114)",
        ),
    ] {
        if port == 0 {
            continue;
        }
        for l in bind_all(bind, port, what).await? {
            tasks.push(tokio::spawn(c2s::listen(
                server.clone(),
                l,
                tls_xmpp.clone(),
                mode,
                limiter.clone(),
                live.clone(),
            )));
        }
    }
    if http_cfg.port != 0 {
        // WebSocket and BOSH sessions count with the client ports' TCP
        // streams; HTTPS connections themselves are counted apart.
        let app = http::router(server.clone(), metrics, limiter.clone());
        let http_conns = ConnLimiter::default();
        for l in bind_all(&http_cfg.bind, http_cfg.port, "HTTPS").await? {
            tasks.push(tokio::spawn(http::serve(
                server.clone(),
                l,
                tls_http.clone(),
                app.clone(),
                http_conns.clone(),
                live.clone(),
            )));
        }
    }
    // Upload expiry is part of the retention sweep below.
    {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let every = Duration::from_secs(server.config.retention.sweep_interval_secs);
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let r = conclave_server::modules::retention::apply(
                    &*server.store,
                    &server.config,
                    xmpp_core::time::now_unix(),
                )
                .await;
                if r != Default::default() {
                    tracing::info!(
                        archived = r.archived,
                        offline = r.offline,
                        uploads = r.uploads,
                        "retention applied"
                    );
                }
            }
        }));
    }
    tracing::info!(hosts = ?server.config.hosts, "Conclave is up");
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown();
    for t in &tasks {
        t.abort();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while live.count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
