//! The bridge channel (Jitsi's colibri-ws): one WebSocket per endpoint,
//! JSON messages told apart by `colibriClass`. The HTTP layer upgrades the
//! connection and moves text frames; everything the messages mean is here.
//!
//! The endpoint's ICE password is its credential (it is only ever sent to
//! that endpoint, inside its Jingle offer), as in Jitsi Videobridge.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::api::EndpointKey;

/// Messages queued for one endpoint's socket before it is considered
/// stuck; beyond it messages to it are dropped (and counted).
const QUEUE: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not JSON, or not an object with a string `colibriClass`.
    Malformed,
    /// Larger than `max_channel_message_bytes`.
    TooLarge,
}

/// What a client sent that the media worker must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum ForWorker {
    /// `ReceiverVideoConstraints` (or legacy `LastNChangedEvent`).
    Constraints(Value),
}

#[derive(Default)]
struct Entry {
    pwd: String,
    /// Frames are shared `Bytes`: a broadcast is one buffer, not a copy
    /// per endpoint.
    tx: Option<flume::Sender<Bytes>>,
    /// Which socket holds `tx`, so that a replaced one closing late does
    /// not close its successor.
    socket: u64,
}

/// Every endpoint's channel credentials and open sockets.
pub struct Channels {
    entries: Mutex<HashMap<EndpointKey, Entry>>,
    /// Each conference's latest dominant speaker message, for channels
    /// that open after it was sent (a late joiner, a reconnect).
    dominant: Mutex<HashMap<String, Bytes>>,
    max_bytes: usize,
}

impl Channels {
    pub fn new(max_bytes: usize) -> Self {
        Channels {
            entries: Mutex::new(HashMap::new()),
            dominant: Mutex::new(HashMap::new()),
            max_bytes,
        }
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EndpointKey, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn allow(&self, key: &EndpointKey, pwd: &str) {
        self.lock().entry(key.clone()).or_default().pwd = pwd.to_owned();
    }

    pub(crate) fn remove(&self, key: &EndpointKey) {
        self.lock().remove(key);
    }

    /// Opens the channel of `key` if `pwd` is its ICE password; the
    /// receiver yields the text frames to write. A second socket for the
    /// same endpoint replaces the first (a client reconnecting).
    pub fn open(&self, key: &EndpointKey, pwd: &str) -> Option<(u64, flume::Receiver<Bytes>)> {
        let mut entries = self.lock();
        let e = entries.get_mut(key)?;
        if !constant_time_eq(e.pwd.as_bytes(), pwd.as_bytes()) {
            return None;
        }
        let (tx, rx) = flume::bounded(QUEUE);
        let hello = serde_json::json!({"colibriClass": "ServerHello", "version": env!("CARGO_PKG_VERSION")});
        let _ = tx.try_send(Bytes::from(hello.to_string()));
        if let Some(d) = self
            .dominant
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key.conference)
        {
            let _ = tx.try_send(d.clone());
        }
        e.tx = Some(tx);
        e.socket += 1;
        Some((e.socket, rx))
    }

    /// Socket `socket` of `key` closed.
    pub fn closed(&self, key: &EndpointKey, socket: u64) {
        if let Some(e) = self.lock().get_mut(key)
            && e.socket == socket
        {
            e.tx = None;
        }
    }

    /// Whether `key` has its channel open now.
    pub(crate) fn is_open(&self, key: &EndpointKey) -> bool {
        self.lock().get(key).is_some_and(|e| e.tx.is_some())
    }

    /// Sends to one endpoint; false if it has no open channel or is stuck.
    pub fn send(&self, key: &EndpointKey, text: Bytes) -> bool {
        let entries = self.lock();
        let sent = entries
            .get(key)
            .and_then(|e| e.tx.as_ref())
            .is_some_and(|tx| tx.try_send(text).is_ok());
        if !sent {
            metrics::counter!("conclave_bridge_channel_dropped_total", "reason" => "not-open")
                .increment(1);
        }
        sent
    }

    /// A new dominant speaker in `conference`: told to everyone, and kept
    /// for channels that open later.
    pub(crate) fn dominant_speaker(&self, conference: &str, msg: Bytes) {
        self.dominant
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conference.to_owned(), msg.clone());
        self.broadcast(conference, None, msg);
    }

    /// The conference ended.
    pub(crate) fn forget_conference(&self, conference: &str) {
        self.dominant
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(conference);
    }

    /// Sends to every endpoint of `conference` but `except`.
    pub fn broadcast(&self, conference: &str, except: Option<&str>, text: Bytes) {
        let entries = self.lock();
        for (k, e) in entries.iter() {
            if k.conference != conference || Some(k.endpoint.as_str()) == except {
                continue;
            }
            if let Some(tx) = &e.tx
                && tx.try_send(text.clone()).is_err()
            {
                metrics::counter!("conclave_bridge_channel_dropped_total", "reason" => "queue-full").increment(1);
            }
        }
    }

    /// One text frame from `from`. Relayed messages go out at once;
    /// what the media worker must know is returned.
    pub fn incoming(&self, from: &EndpointKey, text: &str) -> Result<Option<ForWorker>, Refused> {
        if text.len() > self.max_bytes {
            metrics::counter!("conclave_bridge_channel_dropped_total", "reason" => "too-large")
                .increment(1);
            return Err(Refused::TooLarge);
        }
        let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(text) else {
            metrics::counter!("conclave_bridge_channel_dropped_total", "reason" => "malformed")
                .increment(1);
            return Err(Refused::Malformed);
        };
        let Some(class) = m.get("colibriClass").and_then(Value::as_str) else {
            metrics::counter!("conclave_bridge_channel_dropped_total", "reason" => "malformed")
                .increment(1);
            return Err(Refused::Malformed);
        };
        match class {
            "EndpointMessage" => {
                let to = m.get("to").and_then(Value::as_str).unwrap_or("").to_owned();
                stamp_from(&mut m, &from.endpoint);
                let out = Bytes::from(Value::Object(m).to_string());
                if to.is_empty() {
                    self.broadcast(&from.conference, Some(&from.endpoint), out);
                } else {
                    let key = EndpointKey {
                        conference: from.conference.clone(),
                        endpoint: to,
                    };
                    self.send(&key, out);
                }
                Ok(None)
            }
            "EndpointStats" => {
                stamp_from(&mut m, &from.endpoint);
                let out = Bytes::from(Value::Object(m).to_string());
                self.broadcast(&from.conference, Some(&from.endpoint), out);
                Ok(None)
            }
            "ReceiverVideoConstraints" | "LastNChangedEvent" => {
                Ok(Some(ForWorker::Constraints(Value::Object(m))))
            }
            // ClientHello, ReceiverAudioSubscription, SourceVideoTypeMessage
            // and classes of later clients: nothing to do (yet).
            _ => Ok(None),
        }
    }
}

/// The bridge, not the client, says who a relayed message is from.
fn stamp_from(m: &mut Map<String, Value>, endpoint: &str) {
    m.insert("from".into(), Value::String(endpoint.to_owned()));
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ep: &str) -> EndpointKey {
        EndpointKey {
            conference: "room@conference.localhost".into(),
            endpoint: ep.into(),
        }
    }

    fn open(c: &Channels, ep: &str) -> flume::Receiver<Bytes> {
        c.allow(&key(ep), "pw");
        let (_, rx) = c.open(&key(ep), "pw").unwrap();
        let hello: Value = serde_json::from_slice(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(hello["colibriClass"], "ServerHello");
        rx
    }

    #[test]
    fn the_ice_password_opens_the_channel_and_nothing_else_does() {
        let c = Channels::new(1000);
        c.allow(&key("a"), "secret");
        assert!(c.open(&key("a"), "guess").is_none());
        assert!(c.open(&key("b"), "secret").is_none());
        assert!(c.open(&key("a"), "secret").is_some());
    }

    #[test]
    fn endpoint_messages_are_relayed_with_from_stamped() {
        let c = Channels::new(1000);
        let a = open(&c, "a");
        let b = open(&c, "b");
        let x = open(&c, "x");
        // unicast: only b, and a forged `from` is replaced
        let msg = r#"{"colibriClass":"EndpointMessage","to":"b","from":"x","msgPayload":{"k":1}}"#;
        assert_eq!(c.incoming(&key("a"), msg), Ok(None));
        let got: Value = serde_json::from_slice(&b.try_recv().unwrap()).unwrap();
        assert_eq!(got["from"], "a");
        assert_eq!(got["msgPayload"]["k"], 1);
        assert!(x.try_recv().is_err() && a.try_recv().is_err());
        // broadcast: everyone else
        let msg = r#"{"colibriClass":"EndpointMessage","to":"","msgPayload":{}}"#;
        c.incoming(&key("a"), msg).unwrap();
        assert!(b.try_recv().is_ok() && x.try_recv().is_ok());
        assert!(a.try_recv().is_err());
    }

    #[test]
    fn a_channel_opened_late_hears_who_is_speaking() {
        let c = Channels::new(1000);
        let _a = open(&c, "a");
        c.dominant_speaker(
            &key("a").conference,
            Bytes::from_static(b"{\"colibriClass\":\"D\"}"),
        );
        c.allow(&key("late"), "pw");
        let (_, rx) = c.open(&key("late"), "pw").unwrap();
        let got: Vec<Bytes> = rx.try_iter().collect();
        assert_eq!(got.len(), 2, "ServerHello, then the dominant speaker");
        assert_eq!(&got[1][..], b"{\"colibriClass\":\"D\"}");
    }

    #[test]
    fn oversized_and_malformed_messages_are_refused() {
        let c = Channels::new(64);
        let _a = open(&c, "a");
        let big = format!(
            r#"{{"colibriClass":"EndpointMessage","x":"{}"}}"#,
            "y".repeat(100)
        );
        assert_eq!(c.incoming(&key("a"), &big), Err(Refused::TooLarge));
        assert_eq!(c.incoming(&key("a"), "not json"), Err(Refused::Malformed));
        assert_eq!(c.incoming(&key("a"), "[1]"), Err(Refused::Malformed));
        assert_eq!(
            c.incoming(&key("a"), r#"{"to":"b"}"#),
            Err(Refused::Malformed)
        );
    }
}
