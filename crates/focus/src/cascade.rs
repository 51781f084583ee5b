//! Cascading (Jitsi's relays), sans IO: which bridge each participant of a
//! conference is on, the relays linking those bridges (a mesh, each pair
//! linked once), and what each bridge must be told of the participants on
//! the others. A bridge knows the far participants only through its relay
//! to their bridge: as one more sender of their sources.
//!
//! A conference fills one bridge up to `meetings.max_participants_per_bridge`
//! (0: no limit, so no cascading), then takes the best bridge it is not on
//! yet. A relay is made in three colibri2 steps, which [`Cascade::open`],
//! [`Cascade::answer`] and [`Cascade::complete`] write: the first bridge
//! makes its side (ICE-controlling, DTLS client) and gives its transport;
//! the second makes its side with that transport and the first bridge's
//! participants, and gives its own; the first takes that transport and the
//! second bridge's participants.

use std::collections::{BTreeMap, BTreeSet};

use conclave_bridge::api::{EndpointSources, LocalTransport, RemoteTransport};

use crate::colibri2::{RelayEndpoint, RelayModify};

/// One conference's bridges and who is on each.
#[derive(Debug, Clone)]
pub struct Cascade {
    max_per_bridge: usize,
    /// The bridges it is on, the one it was placed on first.
    bridges: Vec<OnBridge>,
}

#[derive(Debug, Clone)]
struct OnBridge {
    jid: String,
    /// Its participants, and what each sends.
    endpoints: BTreeMap<String, EndpointSources>,
    /// The bridges it has a relay to.
    linked: BTreeSet<String>,
}

/// A change for `bridge`'s relay.
pub type RelayChange = (String, RelayModify);

/// The transport one bridge's side of a relay gives the other, with the
/// DTLS role that other side takes toward it.
pub fn remote_of(t: &LocalTransport, setup: &str) -> RemoteTransport {
    let mut fingerprint = t.fingerprint.clone();
    fingerprint.setup = setup.to_owned();
    RemoteTransport {
        ufrag: t.ufrag.clone(),
        pwd: t.pwd.clone(),
        fingerprints: vec![fingerprint],
        candidates: t.candidates.clone(),
    }
}

impl Cascade {
    /// A conference placed on `home`, with nobody yet.
    pub fn new(home: &str, max_per_bridge: usize) -> Self {
        Cascade {
            max_per_bridge,
            bridges: vec![OnBridge {
                jid: home.to_owned(),
                endpoints: BTreeMap::new(),
                linked: BTreeSet::new(),
            }],
        }
    }

    /// The bridges it is on.
    pub fn bridges(&self) -> impl Iterator<Item = &str> {
        self.bridges.iter().map(|b| b.jid.as_str())
    }

    /// The bridge `endpoint` is on.
    pub fn bridge_of(&self, endpoint: &str) -> Option<&str> {
        self.bridges
            .iter()
            .find(|b| b.endpoints.contains_key(endpoint))
            .map(|b| b.jid.as_str())
    }

    /// Every pair of its bridges that a relay links, each once.
    pub fn links(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for b in &self.bridges {
            for o in b.linked.iter().filter(|o| b.jid < **o) {
                out.push((b.jid.clone(), o.clone()));
            }
        }
        out
    }

    /// Where a new participant goes: the least filled of the conference's
    /// bridges while one has room; else the first of `candidates` (the
    /// bridges that take new work, best first) the conference is not on
    /// and that may be linked with each of its bridges (`blocked` says a
    /// pair may not: a bridge pair carries one relay); else, rather than
    /// no one, the least filled of its own.
    pub fn choose(
        &self,
        candidates: &[String],
        blocked: impl Fn(&str, &str) -> bool,
    ) -> Option<String> {
        let least = self.bridges.iter().min_by_key(|b| b.endpoints.len())?;
        if self.max_per_bridge == 0 || least.endpoints.len() < self.max_per_bridge {
            return Some(least.jid.clone());
        }
        let fresh = candidates.iter().find(|c| {
            !self.bridges.iter().any(|b| b.jid == **c)
                && self.bridges.iter().all(|b| !blocked(&b.jid, c))
        });
        Some(fresh.unwrap_or(&least.jid).clone())
    }

    /// `endpoint` now has an endpoint on `bridge` (which may be new to the
    /// conference). Returns the bridges to link `bridge` with.
    pub fn add(&mut self, endpoint: &str, bridge: &str) -> Vec<String> {
        for b in &mut self.bridges {
            b.endpoints.remove(endpoint);
        }
        let i = match self.bridges.iter().position(|b| b.jid == bridge) {
            Some(i) => i,
            None => {
                self.bridges.push(OnBridge {
                    jid: bridge.to_owned(),
                    endpoints: BTreeMap::new(),
                    linked: BTreeSet::new(),
                });
                self.bridges.len() - 1
            }
        };
        self.bridges[i]
            .endpoints
            .insert(endpoint.to_owned(), EndpointSources::default());
        let linked = &self.bridges[i].linked;
        self.bridges
            .iter()
            .filter(|b| b.jid != bridge && !linked.contains(&b.jid))
            .map(|b| b.jid.clone())
            .collect()
    }

    fn on(&self, bridge: &str) -> Option<&OnBridge> {
        self.bridges.iter().find(|b| b.jid == bridge)
    }

    /// The participants on `bridge` that send anything, as a relay to it
    /// is told of them.
    fn relayed(&self, bridge: &str) -> Vec<RelayEndpoint> {
        self.on(bridge)
            .map(|b| {
                b.endpoints
                    .iter()
                    .filter(|(_, s)| !s.sources.is_empty())
                    .map(|(id, s)| RelayEndpoint {
                        id: id.clone(),
                        expire: false,
                        sources: Some(s.clone()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Step 1 of linking `a` (already in the conference) with `b`: `a`'s
    /// side of the relay, which controls ICE.
    pub fn open(&self, b: &str) -> RelayModify {
        RelayModify {
            id: b.to_owned(),
            create: true,
            ice_controlling: true,
            ..Default::default()
        }
    }

    /// Step 2: `b`'s side, given `a`'s transport (`a` is the DTLS client)
    /// and `a`'s participants.
    pub fn answer(&self, a: &str, a_transport: &LocalTransport) -> RelayModify {
        RelayModify {
            id: a.to_owned(),
            create: true,
            ice_controlling: false,
            transport: Some(remote_of(a_transport, "active")),
            endpoints: self.relayed(a),
            ..Default::default()
        }
    }

    /// Step 3: `a` is given `b`'s transport and participants; the pair is
    /// linked from now on (their sources' changes go over it).
    pub fn complete(&mut self, a: &str, b: &str, b_transport: &LocalTransport) -> RelayModify {
        for (x, y) in [(a, b), (b, a)] {
            if let Some(on) = self.bridges.iter_mut().find(|o| o.jid == x) {
                on.linked.insert(y.to_owned());
            }
        }
        RelayModify {
            id: b.to_owned(),
            transport: Some(remote_of(b_transport, "passive")),
            endpoints: self.relayed(b),
            ..Default::default()
        }
    }

    /// What the bridges linked to `endpoint`'s must hear of it.
    fn tell_others(&self, endpoint: &str, change: RelayEndpoint) -> Vec<RelayChange> {
        let Some(home) = self.bridge_of(endpoint) else {
            return Vec::new();
        };
        let Some(on) = self.on(home) else {
            return Vec::new();
        };
        on.linked
            .iter()
            .map(|other| {
                (
                    other.clone(),
                    RelayModify {
                        id: home.to_owned(),
                        endpoints: vec![change.clone()],
                        ..Default::default()
                    },
                )
            })
            .collect()
    }

    /// `endpoint` sends `sources` now: each bridge linked to its bridge
    /// hears so over its relay there.
    pub fn set_sources(&mut self, endpoint: &str, sources: &EndpointSources) -> Vec<RelayChange> {
        let Some(b) = self
            .bridges
            .iter_mut()
            .find(|b| b.endpoints.contains_key(endpoint))
        else {
            return Vec::new();
        };
        b.endpoints.insert(endpoint.to_owned(), sources.clone());
        self.tell_others(
            endpoint,
            RelayEndpoint {
                id: endpoint.to_owned(),
                expire: false,
                sources: Some(sources.clone()),
            },
        )
    }

    /// `endpoint` left: the bridges linked to its bridge stop expecting
    /// its media. Its bridge stays in the conference (and linked).
    pub fn remove(&mut self, endpoint: &str) -> Vec<RelayChange> {
        let out = self.tell_others(
            endpoint,
            RelayEndpoint {
                id: endpoint.to_owned(),
                expire: true,
                sources: None,
            },
        );
        for b in &mut self.bridges {
            b.endpoints.remove(endpoint);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jingle::tests::src;
    use conclave_bridge::api::MediaKind;

    fn sources(ssrc: u32) -> EndpointSources {
        EndpointSources {
            sources: vec![src(ssrc, MediaKind::Audio, "x-a0")],
            groups: Vec::new(),
        }
    }

    fn transport(ufrag: &str) -> LocalTransport {
        LocalTransport {
            ufrag: ufrag.into(),
            ..crate::jingle::tests::transport()
        }
    }

    fn candidates() -> Vec<String> {
        vec!["b1".into(), "b2".into(), "b3".into()]
    }

    #[test]
    fn without_a_limit_everyone_stays_on_the_first_bridge() {
        let mut c = Cascade::new("b1", 0);
        for n in ["a", "b", "c", "d"] {
            let b = c.choose(&candidates(), |_, _| false).unwrap();
            assert_eq!(b, "b1");
            assert!(c.add(n, &b).is_empty(), "nothing to link");
        }
        assert_eq!(c.bridges().count(), 1);
        assert!(c.set_sources("a", &sources(1)).is_empty());
        assert!(c.remove("a").is_empty());
    }

    #[test]
    fn a_full_bridge_sends_the_next_participant_to_another_and_links_them() {
        let mut c = Cascade::new("b1", 2);
        assert!(c.add("a", "b1").is_empty());
        c.set_sources("a", &sources(1));
        assert_eq!(c.choose(&candidates(), |_, _| false).as_deref(), Some("b1"));
        c.add("b", "b1");
        // full: the best bridge it is not on, unless that pair is taken
        assert_eq!(c.choose(&candidates(), |_, _| false).as_deref(), Some("b2"));
        let blocked = |x: &str, y: &str| (x, y) == ("b1", "b2");
        assert_eq!(c.choose(&candidates(), blocked).as_deref(), Some("b3"));
        assert_eq!(c.add("c", "b2"), ["b1"]);
        // linking: b1 controls, b2 learns of b1's senders, b1 of b2's
        let open = c.open("b2");
        assert!(open.create && open.ice_controlling && open.transport.is_none());
        let answer = c.answer("b1", &transport("t1"));
        assert_eq!(answer.id, "b1");
        assert!(answer.create && !answer.ice_controlling);
        let t = answer.transport.as_ref().unwrap();
        assert_eq!(
            (t.ufrag.as_str(), t.fingerprints[0].setup.as_str()),
            ("t1", "active")
        );
        let ids: Vec<_> = answer.endpoints.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a"], "only those that send anything");
        let done = c.complete("b1", "b2", &transport("t2"));
        assert_eq!(done.id, "b2");
        assert!(!done.create);
        assert_eq!(done.transport.unwrap().fingerprints[0].setup, "passive");
        assert_eq!(c.links(), [("b1".to_owned(), "b2".to_owned())]);
        // b2 has room now; the least filled of the conference's is chosen
        assert_eq!(c.choose(&candidates(), |_, _| false).as_deref(), Some("b2"));
        // sources and departures cross the relay, to the far side only
        let told = c.set_sources("c", &sources(3));
        assert_eq!(told.len(), 1);
        assert_eq!((told[0].0.as_str(), told[0].1.id.as_str()), ("b1", "b2"));
        assert_eq!(told[0].1.endpoints[0].sources, Some(sources(3)));
        let told = c.remove("a");
        assert_eq!((told[0].0.as_str(), told[0].1.id.as_str()), ("b2", "b1"));
        assert!(told[0].1.endpoints[0].expire);
        assert_eq!(c.bridge_of("a"), None);
        assert_eq!(c.bridge_of("c"), Some("b2"));
    }

    #[test]
    fn with_every_bridge_full_or_taken_the_least_filled_of_its_own_takes_more() {
        let mut c = Cascade::new("b1", 1);
        c.add("a", "b1");
        assert_eq!(
            c.choose(&["b1".into()], |_, _| false).as_deref(),
            Some("b1")
        );
        assert_eq!(c.choose(&candidates(), |_, _| true).as_deref(), Some("b1"));
        c.add("b", "b2");
        // a third bridge is linked with both
        let mut links = c.add("c", "b3");
        links.sort();
        assert_eq!(links, ["b1", "b2"]);
    }
}
