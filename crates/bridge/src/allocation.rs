//! Bandwidth allocation, sans IO: which simulcast layer of each video
//! stream a receiver can afford within its bandwidth estimate (TWCC from
//! str0m, REMB when the receiver sends only that).
//!
//! The receiver's constraints (`ReceiverVideoConstraints`, last-N) say
//! what it wants; this says what fits. Streams come in the receiver's
//! order of importance (on stage or selected first, then recent speakers).
//! Every stream gets its lowest layer first, in that order, and the
//! remaining budget then raises them in the same order, so that a tight
//! link costs the thumbnails their quality before it costs anyone their
//! picture. The first stream always keeps its lowest layer: a receiver
//! whose estimate is below even that still sees the speaker move.

use std::time::{Duration, Instant};

/// Measured bitrates are this far from settled until a layer has been
/// measured for a second; until then its nominal rate stands in, so that a
/// layer that just started does not look free.
pub const SETTLED_SAMPLES: u32 = 5;

/// What browsers send for each layer of a three-layer 720p simulcast
/// (Chrome's defaults, bits/s), lowest first; beyond the table the last
/// entry stands.
const NOMINAL: [f64; 3] = [150_000.0, 500_000.0, 1_500_000.0];

/// A layer's rate for allocation: measured, or nominal until settled.
pub fn layer_rate(layer: usize, measured: f64, samples: u32) -> f64 {
    if samples >= SETTLED_SAMPLES {
        measured
    } else {
        let nominal = NOMINAL[layer.min(NOMINAL.len() - 1)];
        measured.max(nominal)
    }
}

/// Upgrades must fit in this share of the estimate; what a receiver
/// already gets may use all of it. The gap keeps a layer from being
/// taken and dropped on every small swing of the estimate.
const UPGRADE_HEADROOM: f64 = 0.9;

/// One video stream a receiver would be sent.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// Bits/s of each layer the sender is sending now (`None`: not sent),
    /// lowest first.
    pub rates: &'a [Option<f64>],
    /// The highest layer the receiver's constraints allow.
    pub max_layer: usize,
    /// The layer it was allowed last time, if any.
    pub current: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Allocation {
    /// Bits/s of what was allocated.
    pub spent: f64,
    /// What the estimate must reach for the receiver to get everything
    /// it wants (upgrade headroom included): what the estimator should try
    /// to reach (str0m's desired bitrate, which its estimate barely
    /// passes; asking for the bare sum would leave the last upgrade out).
    pub ideal: f64,
    /// The estimate needed for the cheapest upgrade that did not fit
    /// (headroom included): what str0m should pad toward, to probe. 0 when none is left: str0m pads
    /// every gap in the media up to this rate, so a receiver that has all
    /// it wants would otherwise be sent padding (old packets again, over
    /// RTX) between frames, for nothing.
    pub next: f64,
}

fn rate(s: &Wanted<'_>, layer: usize) -> Option<f64> {
    s.rates.get(layer).copied().flatten()
}

/// The layers of `s` that are sent and allowed, lowest first.
fn usable<'a>(s: &'a Wanted<'_>) -> impl Iterator<Item = usize> + 'a {
    (0..s.rates.len().min(s.max_layer.saturating_add(1))).filter(move |&l| rate(s, l).is_some())
}

/// Into `out` (one per stream, in order): the highest layer each stream
/// may be sent within `budget` bits/s, or `None` for none.
pub fn allocate(budget: f64, streams: &[Wanted<'_>], out: &mut Vec<Option<usize>>) -> Allocation {
    out.clear();
    out.resize(streams.len(), None);
    let mut a = Allocation::default();
    for s in streams {
        a.ideal += usable(s).last().and_then(|l| rate(s, l)).unwrap_or(0.0);
    }
    // Everyone's lowest layer, in order; the first regardless.
    for (i, s) in streams.iter().enumerate() {
        let Some(low) = usable(s).next() else {
            continue;
        };
        let r = rate(s, low).unwrap_or(0.0);
        if i == 0 || a.spent + r <= budget {
            out[i] = Some(low);
            a.spent += r;
        }
    }
    // Then upgrades, in order.
    let mut next: Option<f64> = None;
    for (i, s) in streams.iter().enumerate() {
        let Some(have) = out[i] else { continue };
        let base = rate(s, have).unwrap_or(0.0);
        let mut best = None;
        for l in usable(s).filter(|&l| l > have) {
            let extra = rate(s, l).unwrap_or(0.0) - base;
            let limit = if s.current.is_some_and(|c| c >= l) {
                budget
            } else {
                budget * UPGRADE_HEADROOM
            };
            if a.spent + extra <= limit {
                best = Some((l, extra));
            } else {
                let want = a.spent + extra;
                next = Some(next.map_or(want, |n: f64| n.min(want)));
                break;
            }
        }
        if let Some((l, extra)) = best {
            out[i] = Some(l);
            a.spent += extra;
        }
    }
    a.next = next.map_or(0.0, |n| n.max(a.spent) / UPGRADE_HEADROOM);
    a.ideal /= UPGRADE_HEADROOM;
    a
}

/// A layer dropped for want of bandwidth is not tried again at once: the
/// upgrade's own burst (a keyframe, the bigger frames) would push the link
/// over again, and the receiver would see the picture step up and down
/// with a stall each time. The wait doubles while drops keep coming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// The lowest layer held back.
    layer: usize,
    until: Instant,
    wait: Duration,
}

/// The first wait after a drop, the longest, and how long after a wait
/// ends a new drop starts again from the first.
pub const HOLD_FIRST: Duration = Duration::from_secs(4);
pub const HOLD_MAX: Duration = Duration::from_secs(32);
pub const HOLD_FORGET: Duration = Duration::from_secs(60);

/// The layer to send a stream up to, from the one sent before (`prev`),
/// the highest the receiver's constraints allow now (`limit`) and what
/// this pass of `allocate` affords (`proposed`), with `hold` kept per
/// receiver and stream. `None` is no layer at all. A receiver that asks
/// for less is not held to it when it asks for more again: only a drop
/// below what it asks for is bandwidth's.
pub fn hold_down(
    prev: Option<usize>,
    limit: usize,
    proposed: Option<usize>,
    hold: &mut Option<Hold>,
    now: Instant,
) -> Option<usize> {
    let prev = prev.map(|p| p.min(limit));
    if let Some(h) = *hold
        && now >= h.until + HOLD_FORGET
    {
        *hold = None;
    }
    if let Some(dropped) = prev
        && proposed < prev
    {
        let wait = hold.map_or(HOLD_FIRST, |h| (h.wait * 2).min(HOLD_MAX));
        *hold = Some(Hold {
            layer: dropped,
            until: now + wait,
            wait,
        });
        return proposed;
    }
    match *hold {
        Some(h) if now < h.until && proposed >= Some(h.layer) => {
            let below = h.layer.checked_sub(1);
            prev.max(below).min(proposed)
        }
        _ => proposed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYERS: [Option<f64>; 3] = [Some(150e3), Some(500e3), Some(1500e3)];

    fn wanted(rates: &[Option<f64>]) -> Wanted<'_> {
        Wanted {
            rates,
            max_layer: usize::MAX,
            current: None,
        }
    }

    #[test]
    fn a_dropped_layer_waits_longer_each_time() {
        let t0 = Instant::now();
        let mut hold = None;
        // Up to the top, then the estimate falls: down at once.
        assert_eq!(hold_down(Some(1), 2, Some(2), &mut hold, t0), Some(2));
        assert_eq!(hold_down(Some(2), 2, Some(1), &mut hold, t0), Some(1));
        // The top fits again a second later: held at the middle...
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(hold_down(Some(1), 2, Some(2), &mut hold, t1), Some(1));
        // ...but lower still goes down, and that wait is longer.
        assert_eq!(hold_down(Some(1), 2, Some(0), &mut hold, t1), Some(0));
        let t2 = t1 + HOLD_FIRST + Duration::from_secs(1);
        assert_eq!(
            hold_down(Some(0), 2, Some(2), &mut hold, t2),
            Some(0),
            "the middle is held now"
        );
        let t3 = t1 + HOLD_FIRST * 2 + Duration::from_millis(1);
        assert_eq!(
            hold_down(Some(0), 2, Some(2), &mut hold, t3),
            Some(2),
            "the hold is over"
        );
        // Long after, a new drop waits the first time again.
        let t4 = t3 + HOLD_FORGET + HOLD_MAX;
        assert_eq!(hold_down(Some(2), 2, Some(1), &mut hold, t4), Some(1));
        assert_eq!(
            hold_down(Some(1), 2, Some(2), &mut hold, t4 + HOLD_FIRST),
            Some(2)
        );
        // No layer at all, and back.
        let mut hold = None;
        assert_eq!(hold_down(Some(0), 2, None, &mut hold, t0), None);
        assert_eq!(hold_down(None, 2, Some(0), &mut hold, t0), None);
        assert_eq!(
            hold_down(None, 2, Some(0), &mut hold, t0 + HOLD_FIRST),
            Some(0)
        );
        // The receiver asks for 180p, then for 720p again: no wait.
        let mut hold = None;
        assert_eq!(hold_down(Some(2), 0, Some(0), &mut hold, t0), Some(0));
        assert_eq!(hold_down(Some(0), 2, Some(2), &mut hold, t0), Some(2));
        assert_eq!(hold, None);
    }

    #[test]
    fn a_wide_link_gets_every_stream_at_its_best() {
        let mut out = Vec::new();
        let a = allocate(10e6, &[wanted(&LAYERS), wanted(&LAYERS)], &mut out);
        assert_eq!(out, [Some(2), Some(2)]);
        assert_eq!(a.spent, 3e6);
        assert_eq!(
            a.ideal,
            3e6 / UPGRADE_HEADROOM,
            "enough to take the top layers"
        );
        assert_eq!(a.next, 0.0, "nothing to probe for");
    }

    #[test]
    fn a_tight_link_keeps_everyone_at_the_bottom_before_raising_the_first() {
        let mut out = Vec::new();
        // 1 Mbit/s: both lowest (300k), then the first to its middle
        // layer (+350k), not its top (+1.35M).
        let a = allocate(1e6, &[wanted(&LAYERS), wanted(&LAYERS)], &mut out);
        assert_eq!(out, [Some(1), Some(0)]);
        assert_eq!(a.spent, 650e3);
        assert_eq!(a.ideal, 3e6 / UPGRADE_HEADROOM);
        assert_eq!(
            a.next,
            (650e3 + 350e3) / UPGRADE_HEADROOM,
            "the second's middle layer is next"
        );
        // That much is enough for it.
        let b = allocate(
            a.next * 1.001,
            &[wanted(&LAYERS), wanted(&LAYERS)],
            &mut out,
        );
        assert_eq!(out, [Some(1), Some(1)]);
        assert!(b.spent >= 1e6 - 1.0);
    }

    #[test]
    fn a_starved_receiver_still_sees_the_first_stream() {
        let mut out = Vec::new();
        allocate(50e3, &[wanted(&LAYERS), wanted(&LAYERS)], &mut out);
        assert_eq!(out, [Some(0), None]);
    }

    #[test]
    fn constraints_and_layers_not_sent_are_respected() {
        let mut out = Vec::new();
        let capped = Wanted {
            rates: &LAYERS,
            max_layer: 1,
            current: None,
        };
        let gap = [Some(150e3), None, Some(1500e3)];
        allocate(
            10e6,
            &[capped, wanted(&gap), wanted(&[None, None])],
            &mut out,
        );
        assert_eq!(out, [Some(1), Some(2), None]);
    }

    #[test]
    fn a_layer_held_may_use_the_whole_estimate_but_a_new_one_needs_headroom() {
        let mut out = Vec::new();
        // 1.55 Mbit/s: the top layer (1.5M) is within the estimate but not
        // within 90% of it.
        let fresh = wanted(&LAYERS);
        allocate(1.55e6, &[fresh], &mut out);
        assert_eq!(out, [Some(1)]);
        let held = Wanted {
            current: Some(2),
            ..fresh
        };
        allocate(1.55e6, &[held], &mut out);
        assert_eq!(out, [Some(2)]);
    }

    #[test]
    fn a_new_layer_counts_at_its_nominal_rate_until_measured() {
        assert_eq!(layer_rate(2, 10e3, 1), 1.5e6);
        assert_eq!(layer_rate(2, 10e3, SETTLED_SAMPLES), 10e3);
        assert_eq!(layer_rate(7, 2e6, 0), 2e6);
    }
}
