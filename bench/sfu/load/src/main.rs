//! sfu-load: the load client of bench/sfu. `record` captures encoder output
//! once; `run` replays it into SFUs as publishers and drives many receiving
//! WebRTC endpoints, on command from a driver script.

mod latency;
mod publish;
mod recording;
mod rtp;
mod run;
mod subscriber;
mod sys;
mod vp8;

use std::io::BufWriter;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::recording::Recording;
use crate::rtp::RawRtp;

/// How long `record` waits for the first packet before it gives up.
const FIRST_PACKET_TIMEOUT: Duration = Duration::from_secs(30);
/// `record` checks the clock at least this often while nothing arrives.
const RECORD_POLL: Duration = Duration::from_millis(50);
/// Receive buffer for `record`: three encoders' keyframes can arrive at once.
const RECORD_RECV_BUFFER: usize = 8 << 20;
/// Receive buffer per datagram for `record`.
const RECORD_DATAGRAM: usize = 65_535;

#[derive(Parser)]
#[command(about = "Load client for bench/sfu")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Capture the UDP datagrams arriving for SECS seconds from the first.
    Record {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        secs: f64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Describe a recording's streams as JSON (for checks by scripts).
    Inspect { file: PathBuf },
    /// Publish and subscribe as told by JSON lines on stdin.
    Run,
}

/// Now on CLOCK_REALTIME in ns: stamps must compare across processes.
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn record(listen: SocketAddr, secs: f64, out: &Path) -> Result<(), String> {
    if !(secs > 0.0 && secs.is_finite()) {
        return Err("--secs must be a positive number".into());
    }
    let socket = UdpSocket::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    sys::set_recv_buffer(socket.as_raw_fd(), RECORD_RECV_BUFFER);
    socket
        .set_read_timeout(Some(RECORD_POLL))
        .map_err(|e| format!("socket: {e}"))?;
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut w = recording::Writer::new(BufWriter::new(file)).map_err(|e| e.to_string())?;
    let span = Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut first: Option<Instant> = None;
    let mut n = 0u64;
    let mut buf = vec![0u8; RECORD_DATAGRAM];
    loop {
        let now = Instant::now();
        match first {
            Some(f) if now >= f + span => break,
            None if now >= started + FIRST_PACKET_TIMEOUT => {
                return Err(format!(
                    "nothing arrived on {listen} in {FIRST_PACKET_TIMEOUT:?}"
                ));
            }
            _ => {}
        }
        let len = match socket.recv(&mut buf) {
            Ok(len) => len,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(format!("recv: {e}")),
        };
        let at = Instant::now();
        let f = *first.get_or_insert(at);
        if at >= f + span {
            break;
        }
        w.packet((at - f).as_nanos() as u64, &buf[..len])
            .map_err(|e| e.to_string())?;
        n += 1;
    }
    w.finish().map_err(|e| e.to_string())?;
    eprintln!("sfu-load: recorded {n} datagrams to {}", out.display());
    Ok(())
}

fn inspect(file: &Path) -> Result<(), String> {
    let rec = Recording::load(file)?;
    let mut streams = Vec::new();
    for (i, s) in rec.streams.iter().enumerate() {
        let mut first_key = None;
        let mut keyframes = 0;
        let mut size = None;
        for p in rec.packets.iter().filter(|p| rec.stream_of(p) == Some(i)) {
            let data = rec.bytes(p);
            let Some(r) = RawRtp::parse(data) else {
                continue;
            };
            if let Some(vp8::FrameStart::Key { width, height }) = vp8::frame_start(&data[r.payload])
            {
                keyframes += 1;
                first_key.get_or_insert(p.offset_ns as f64 / 1e9);
                size = Some((width, height));
            }
        }
        streams.push(json!({
            "ssrc": s.ssrc, "pt": s.pt, "packets": s.packets, "clock": s.clock,
            "vp8_keyframes": keyframes, "first_keyframe_s": first_key,
            "width": size.map(|s| s.0), "height": size.map(|s| s.1),
        }));
    }
    let v = json!({
        "packets": rec.packets.len(),
        "duration_s": rec.duration_ns() as f64 / 1e9,
        "streams": streams,
    });
    println!("{v}");
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    // Off unless RUST_LOG asks: str0m's debug output is per packet.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let result = match cli.cmd {
        Cmd::Record { listen, secs, out } => record(listen, secs, &out),
        Cmd::Inspect { file } => inspect(&file),
        Cmd::Run => run::run(),
    };
    if let Err(e) = result {
        eprintln!("sfu-load: {e}");
        std::process::exit(1);
    }
}
