//! `sfu-load run`: JSON lines in on stdin, JSON lines out on stdout, and one
//! epoll loop on this thread that serves every subscriber socket.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use serde::Deserialize;
use serde_json::{Value, json};
use str0m::config::DtlsCert;

use crate::latency::Histogram;
use crate::publish::{self, Mapping, Publisher};
use crate::recording::Recording;
use crate::subscriber::{Impairment, Subscriber};
use crate::sys::{self, Batch};

const STDIN: Token = Token(0);
/// epoll events taken per wait.
const EVENTS: usize = 1024;
/// Longest wait with no timer due, so nothing can stall unnoticed.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// epoll waits in whole milliseconds; a timer this close counts as due.
const TIMER_SLACK: Duration = Duration::from_micros(500);
/// Refuse more than this many subscribers (each is a socket and an Rtc).
const MAX_SUBSCRIBERS: usize = 2000;
/// Longest link delay a subscriber may be given.
const MAX_DELAY_MS: f64 = 10_000.0;
/// Longest command line accepted (SDP offers with many sources are long).
const MAX_LINE: usize = 4 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Command {
    op: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    recording: Option<PathBuf>,
    #[serde(default)]
    dest: Option<SocketAddr>,
    #[serde(default)]
    map: Option<HashMap<String, Mapping>>,
    #[serde(default)]
    offer: Option<String>,
    /// Address a subscriber binds and advertises (default 127.0.0.1): it must
    /// be this host's own, since Janus never gathers on loopback.
    #[serde(default)]
    ip: Option<IpAddr>,
    /// A bad link in front of a subscriber: added delay in ms.
    #[serde(default)]
    delay_ms: Option<f64>,
    /// ...and the share of its datagrams lost, 0 to 1.
    #[serde(default)]
    loss: Option<f64>,
}

struct Slot {
    sub: Subscriber,
    generation: u64,
    /// The deadline of this subscriber's live timer entry, if one is queued.
    armed: Option<Instant>,
}

struct State {
    poll: Poll,
    cert: DtlsCert,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    ids: HashMap<String, usize>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    generation: u64,
    hist: Histogram,
    window_start: Instant,
    cpu_at_start: f64,
    recordings: HashMap<PathBuf, Arc<Recording>>,
    publishers: Vec<String>,
    to_publishers: Sender<publish::Command>,
    out: std::io::Stdout,
}

fn token_of(slot: usize) -> Token {
    Token(slot + 1)
}

/// Reads stdin on its own thread (std has no non-blocking stdin) and wakes
/// the loop for each line; `None` is end of input.
fn spawn_stdin(waker: Arc<Waker>) -> std::io::Result<Receiver<Option<String>>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut input = std::io::stdin().lock();
            let mut line = String::new();
            loop {
                line.clear();
                let end =
                    match std::io::Read::take(&mut input, MAX_LINE as u64).read_line(&mut line) {
                        Ok(0) | Err(_) => true,
                        Ok(_) => false,
                    };
                let msg = (!end).then(|| line.clone());
                if tx.send(msg).is_err() || waker.wake().is_err() || end {
                    return;
                }
            }
        })?;
    Ok(rx)
}

pub fn run() -> Result<(), String> {
    let poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
    let waker = Arc::new(Waker::new(poll.registry(), STDIN).map_err(|e| format!("waker: {e}"))?);
    let lines = spawn_stdin(waker).map_err(|e| format!("stdin thread: {e}"))?;
    let provider = str0m::crypto::from_feature_flags();
    // One certificate for all: making one per subscriber costs time at
    // ramp-up, and a receiver's identity does not matter to the load.
    let cert = provider
        .dtls_provider
        .generate_certificate()
        .ok_or("could not make a DTLS certificate")?;
    let mut st = State {
        poll,
        cert,
        slots: Vec::new(),
        free: Vec::new(),
        ids: HashMap::new(),
        timers: BinaryHeap::new(),
        generation: 0,
        hist: Histogram::default(),
        window_start: Instant::now(),
        cpu_at_start: sys::cpu_seconds(),
        recordings: HashMap::new(),
        publishers: Vec::new(),
        to_publishers: publish::spawn().map_err(|e| format!("publisher thread: {e}"))?,
        out: std::io::stdout(),
    };
    let mut events = Events::with_capacity(EVENTS);
    let mut batch = Batch::new();
    loop {
        let now = Instant::now();
        let wait = st.timers.peek().map_or(MAX_WAIT, |Reverse((t, _, _))| {
            t.saturating_duration_since(now).min(MAX_WAIT)
        });
        if let Err(e) = st.poll.poll(&mut events, Some(wait))
            && e.kind() != std::io::ErrorKind::Interrupted
        {
            return Err(format!("epoll_wait: {e}"));
        }
        for ev in &events {
            if ev.token() == STDIN {
                continue;
            }
            let idx = ev.token().0 - 1;
            if let Some(Some(slot)) = st.slots.get_mut(idx) {
                slot.sub.on_readable(&mut batch, &mut st.hist);
                st.rearm(idx);
            }
        }
        st.fire_timers();
        loop {
            match lines.try_recv() {
                Ok(Some(line)) => {
                    if !st.command(&line) {
                        return Ok(());
                    }
                }
                Ok(None) | Err(TryRecvError::Disconnected) => return Ok(()),
                Err(TryRecvError::Empty) => break,
            }
        }
    }
}

impl State {
    /// Queues a timer entry if the subscriber's deadline moved earlier than
    /// its live one; later deadlines are found when the live one fires, so
    /// the heap holds about one entry per subscriber.
    fn rearm(&mut self, idx: usize) {
        let Some(Some(slot)) = self.slots.get_mut(idx) else {
            return;
        };
        let d = slot.sub.deadline;
        if slot.armed.is_none_or(|a| d < a) {
            slot.armed = Some(d);
            self.timers.push(Reverse((d, idx, slot.generation)));
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((t, idx, generation))) = self.timers.peek() {
            if t > now + TIMER_SLACK {
                return;
            }
            self.timers.pop();
            let Some(Some(slot)) = self.slots.get_mut(idx) else {
                continue;
            };
            if slot.generation != generation || slot.armed != Some(t) {
                continue;
            }
            slot.armed = None;
            if slot.sub.deadline <= now + TIMER_SLACK {
                slot.sub.on_timeout(now, &mut self.hist);
                // str0m may ask for the same instant again; never spin on it.
                slot.sub.deadline = slot.sub.deadline.max(now + TIMER_SLACK * 2);
            }
            self.rearm(idx);
        }
    }

    fn answer(&mut self, v: Value) {
        let mut out = self.out.lock();
        let ok = serde_json::to_writer(&mut out, &v).is_ok() && out.write_all(b"\n").is_ok();
        if !ok || out.flush().is_err() {
            eprintln!("sfu-load: stdout closed");
        }
    }

    fn error(&mut self, id: Option<&str>, error: String) {
        self.answer(json!({"op": "error", "id": id, "error": error}));
    }

    /// Handles one input line; false means quit.
    fn command(&mut self, line: &str) -> bool {
        let line = line.trim();
        if line.is_empty() {
            return true;
        }
        let cmd: Command = match serde_json::from_str(line) {
            Ok(c) => c,
            Err(e) => {
                // Only serde's position and reason: never echo the line.
                self.error(None, format!("bad command: {e}"));
                return true;
            }
        };
        let id = cmd.id.clone();
        let result = match cmd.op.as_str() {
            "publish" => self.publish(cmd),
            "subscribe" => self.subscribe(cmd),
            "offer" => self.renegotiate(cmd),
            "reset" => {
                self.reset();
                Ok(json!({"op": "reset"}))
            }
            "stats" => Ok(self.stats()),
            "close" => self.close(cmd.id.as_deref()),
            "quit" => return false,
            other => Err(format!("unknown op {other:?}")),
        };
        match result {
            Ok(v) => self.answer(v),
            Err(e) => self.error(id.as_deref(), e),
        }
        true
    }

    fn publish(&mut self, cmd: Command) -> Result<Value, String> {
        let id = cmd.id.ok_or("publish needs an id")?;
        if self.publishers.contains(&id) {
            return Err("a publisher with this id exists".into());
        }
        if self.publishers.len() >= publish::MAX_PUBLISHERS {
            return Err(format!("at most {} publishers", publish::MAX_PUBLISHERS));
        }
        let path = cmd.recording.ok_or("publish needs a recording")?;
        let dest = cmd.dest.ok_or("publish needs a dest")?;
        let map = cmd.map.ok_or("publish needs a map")?;
        let rec = match self.recordings.get(&path) {
            Some(r) => Arc::clone(r),
            None => {
                let r = Arc::new(Recording::load(&path)?);
                self.recordings.insert(path, Arc::clone(&r));
                r
            }
        };
        let p = Publisher::new(id.clone(), rec, dest, &map)?;
        self.to_publishers
            .send(publish::Command::Start(Box::new(p)))
            .map_err(|_| "publisher thread has ended")?;
        self.publishers.push(id.clone());
        Ok(json!({"op": "published", "id": id}))
    }

    fn subscribe(&mut self, cmd: Command) -> Result<Value, String> {
        let id = cmd.id.ok_or("subscribe needs an id")?;
        let offer = cmd.offer.ok_or("subscribe needs an offer")?;
        if self.ids.contains_key(&id) {
            return Err("a subscriber with this id exists".into());
        }
        if self.ids.len() >= MAX_SUBSCRIBERS {
            return Err(format!("at most {MAX_SUBSCRIBERS} subscribers"));
        }
        let ip = cmd.ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut sub = Subscriber::new(
            id.clone(),
            &self.cert,
            SocketAddr::new(ip, 0),
            Instant::now(),
        )?;
        let delay_ms = cmd.delay_ms.unwrap_or(0.0);
        let loss = cmd.loss.unwrap_or(0.0);
        if !(0.0..=MAX_DELAY_MS).contains(&delay_ms) {
            return Err(format!("delay_ms must be 0 to {MAX_DELAY_MS}"));
        }
        if !(0.0..=1.0).contains(&loss) {
            return Err("loss must be 0 to 1".into());
        }
        sub.impair(Impairment {
            delay: Duration::from_secs_f64(delay_ms / 1000.0),
            loss,
        });
        let answer = sub.accept(&offer, &mut self.hist)?;
        let idx = self.free.pop().unwrap_or(self.slots.len());
        self.poll
            .registry()
            .register(&mut sub.socket, token_of(idx), Interest::READABLE)
            .map_err(|e| format!("epoll register: {e}"))?;
        self.generation += 1;
        let slot = Slot {
            sub,
            generation: self.generation,
            armed: None,
        };
        if idx == self.slots.len() {
            self.slots.push(Some(slot));
        } else {
            self.slots[idx] = Some(slot);
        }
        self.ids.insert(id.clone(), idx);
        self.rearm(idx);
        Ok(json!({"op": "answer", "id": id, "answer": answer}))
    }

    fn renegotiate(&mut self, cmd: Command) -> Result<Value, String> {
        let id = cmd.id.ok_or("offer needs an id")?;
        let offer = cmd.offer.ok_or("offer needs an offer")?;
        let idx = *self.ids.get(&id).ok_or("no subscriber with this id")?;
        let Some(Some(slot)) = self.slots.get_mut(idx) else {
            return Err("no subscriber with this id".into());
        };
        let answer = slot.sub.accept(&offer, &mut self.hist)?;
        self.rearm(idx);
        Ok(json!({"op": "answer", "id": id, "answer": answer}))
    }

    fn close(&mut self, id: Option<&str>) -> Result<Value, String> {
        let id = id.ok_or("close needs an id")?;
        if let Some(idx) = self.ids.remove(id) {
            if let Some(mut slot) = self.slots.get_mut(idx).and_then(Option::take) {
                let _ = self.poll.registry().deregister(&mut slot.sub.socket);
            }
            self.free.push(idx);
        } else if let Some(pos) = self.publishers.iter().position(|p| p == id) {
            self.publishers.remove(pos);
            let _ = self
                .to_publishers
                .send(publish::Command::Stop(id.to_string()));
        } else {
            return Err("no subscriber or publisher with this id".into());
        }
        Ok(json!({"op": "closed", "id": id}))
    }

    fn reset(&mut self) {
        for slot in self.slots.iter_mut().flatten() {
            slot.sub.reset();
        }
        self.hist.reset();
        self.window_start = Instant::now();
        self.cpu_at_start = sys::cpu_seconds();
    }

    fn stats(&self) -> Value {
        let subs: BTreeMap<&str, _> = self
            .slots
            .iter()
            .flatten()
            .map(|s| (s.sub.id.as_str(), s.sub.counters()))
            .collect();
        json!({
            "op": "stats",
            "window_s": self.window_start.elapsed().as_secs_f64(),
            "subscribers": subs,
            "latency_us": self.hist.summary(),
            "cpu_s": sys::cpu_seconds() - self.cpu_at_start,
        })
    }
}
