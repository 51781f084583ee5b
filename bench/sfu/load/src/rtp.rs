//! The few RTP facts the load client needs from raw packets, and the
//! latency stamp it writes into them.

use std::ops::Range;

/// Fixed RTP header length (RFC 3550 §5.1), before CSRCs and extensions.
const FIXED_HEADER: usize = 12;

/// The stamp's magic: lets a receiver tell a stamped payload from a packet
/// that was too short to stamp (or from media we did not send).
pub const STAMP_MAGIC: &[u8; 4] = b"SFUt";
/// Magic plus a u64 send time.
pub const STAMP_LEN: usize = 12;
/// Payloads shorter than this are left alone: stamping would overwrite the
/// VP8 payload descriptor or keyframe header the receiver parses.
pub const MIN_STAMPED_PAYLOAD: usize = 24;

/// Where a raw RTP packet's parts are. `None` for anything that is not a
/// well-formed RTP packet (wrong version, lengths that do not fit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRtp {
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    /// Payload bytes, without header, extensions or padding.
    pub payload: Range<usize>,
}

impl RawRtp {
    pub fn parse(p: &[u8]) -> Option<RawRtp> {
        if p.len() < FIXED_HEADER || p[0] >> 6 != 2 {
            return None;
        }
        // RTCP shares the port on rtcp-mux; its PTs 200..=204 sit at 72..=76
        // once the marker bit is masked off (RFC 5761 §4).
        if (72..=76).contains(&(p[1] & 0x7f)) {
            return None;
        }
        let cc = usize::from(p[0] & 0x0f);
        let mut start = FIXED_HEADER + 4 * cc;
        if p[0] & 0x10 != 0 {
            let ext = p.get(start..start + 4)?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        }
        let mut end = p.len();
        if p[0] & 0x20 != 0 {
            end = end.checked_sub(usize::from(*p.last()?))?;
        }
        if start > end {
            return None;
        }
        Some(RawRtp {
            pt: p[1] & 0x7f,
            seq: u16::from_be_bytes([p[2], p[3]]),
            ts: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
            payload: start..end,
        })
    }
}

/// Rewrites the header fields a replayed packet changes; the marker bit stays.
pub fn rewrite_header(p: &mut [u8], pt: u8, seq: u16, ts: u32, ssrc: u32) {
    p[1] = (p[1] & 0x80) | (pt & 0x7f);
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// Writes the send time into the payload's last bytes, where no SFU looks
/// (they rewrite descriptors at the front), so it survives forwarding.
/// Returns whether the payload was long enough to take it.
pub fn stamp(payload: &mut [u8], sent_ns: u64) -> bool {
    if payload.len() < MIN_STAMPED_PAYLOAD {
        return false;
    }
    let at = payload.len() - STAMP_LEN;
    payload[at..at + 4].copy_from_slice(STAMP_MAGIC);
    payload[at + 4..].copy_from_slice(&sent_ns.to_be_bytes());
    true
}

/// The send time a payload carries, if it carries one.
pub fn read_stamp(payload: &[u8]) -> Option<u64> {
    if payload.len() < MIN_STAMPED_PAYLOAD {
        return None;
    }
    let tail = &payload[payload.len() - STAMP_LEN..];
    if &tail[..4] != STAMP_MAGIC {
        return None;
    }
    let mut ns = [0u8; 8];
    ns.copy_from_slice(&tail[4..]);
    Some(u64::from_be_bytes(ns))
}

/// Extends wrapping counters (16-bit sequence numbers, 32-bit timestamps) to
/// 64 bits, taking each new value as the one nearest the highest seen, so a
/// reordered packet lands before it rather than a whole cycle later.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unwrapper<const BITS: u32> {
    max: Option<u64>,
}

impl<const BITS: u32> Unwrapper<BITS> {
    const CYCLE: u64 = 1 << BITS;

    pub fn unwrap(&mut self, v: u64) -> u64 {
        let v = v & (Self::CYCLE - 1);
        let Some(max) = self.max else {
            // Start one cycle up so early reordering never goes below zero.
            let e = Self::CYCLE + v;
            self.max = Some(e);
            return e;
        };
        let base = max & !(Self::CYCLE - 1);
        let candidates = [
            base.wrapping_sub(Self::CYCLE) + v,
            base + v,
            base + Self::CYCLE + v,
        ];
        let e = candidates
            .into_iter()
            .min_by_key(|c| c.abs_diff(max))
            .unwrap_or(base + v);
        if e > max {
            self.max = Some(e);
        }
        e
    }
}

pub type SeqUnwrapper = Unwrapper<16>;
pub type TsUnwrapper = Unwrapper<32>;

/// Loss of one incoming stream within a window: expected (the span of
/// extended sequence numbers seen) minus received.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossCounter {
    unwrap: SeqUnwrapper,
    lo: u64,
    hi: u64,
    received: u64,
    /// Which of the last `SEEN_WINDOW` sequence numbers up to `hi` came
    /// (bit `e % SEEN_WINDOW`): a retransmission, or an SFU's padding
    /// made of old packets sent again over RTX, is not a new packet.
    seen: [u64; SEEN_WORDS],
    started: bool,
}

const SEEN_WORDS: usize = 16;
const SEEN_WINDOW: u64 = 64 * SEEN_WORDS as u64;

impl LossCounter {
    /// Counts a packet; `false` when its sequence number came before (or
    /// is too old to tell), so the caller can leave it out.
    pub fn on_packet(&mut self, seq: u16) -> bool {
        let e = self.unwrap.unwrap(u64::from(seq));
        if !self.started {
            self.started = true;
            self.hi = e;
        } else if e > self.hi {
            for x in (self.hi + 1..e).take(SEEN_WINDOW as usize) {
                self.mark(x, false);
            }
            self.hi = e;
        } else if e + SEEN_WINDOW <= self.hi || self.is_seen(e) {
            return false;
        }
        self.mark(e, true);
        if self.received == 0 {
            self.lo = e;
        } else {
            self.lo = self.lo.min(e);
        }
        self.received += 1;
        true
    }

    fn mark(&mut self, e: u64, on: bool) {
        let bit = e % SEEN_WINDOW;
        let word = &mut self.seen[(bit / 64) as usize];
        if on {
            *word |= 1 << (bit % 64);
        } else {
            *word &= !(1 << (bit % 64));
        }
    }

    fn is_seen(&self, e: u64) -> bool {
        let bit = e % SEEN_WINDOW;
        self.seen[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    /// Starts a new window; the unwrapper keeps its place in the stream.
    pub fn reset(&mut self) {
        self.received = 0;
    }

    pub fn lost(&self) -> u64 {
        if self.received == 0 {
            return 0;
        }
        (self.hi - self.lo + 1).saturating_sub(self.received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(cc: u8, ext_words: u16, payload: &[u8], pad: u8) -> Vec<u8> {
        let mut p = vec![
            0x80 | cc,
            0x80 | 100,
            0x12,
            0x34,
            0,
            0,
            0x10,
            0,
            0,
            0,
            0x03,
            0xe8,
        ];
        p.extend(std::iter::repeat_n(0xcc, 4 * usize::from(cc)));
        if ext_words > 0 {
            p[0] |= 0x10;
            p.extend([0xbe, 0xde]);
            p.extend(ext_words.to_be_bytes());
            p.extend(std::iter::repeat_n(0xee, 4 * usize::from(ext_words)));
        }
        p.extend_from_slice(payload);
        if pad > 0 {
            p[0] |= 0x20;
            p.extend(std::iter::repeat_n(0, usize::from(pad - 1)));
            p.push(pad);
        }
        p
    }

    #[test]
    fn parses_header_extension_csrc_and_padding() {
        let p = packet(2, 1, b"hello", 4);
        let r = RawRtp::parse(&p).expect("rtp");
        assert_eq!((r.pt, r.seq, r.ts, r.ssrc), (100, 0x1234, 0x1000, 1000));
        assert_eq!(&p[r.payload], b"hello");
    }

    #[test]
    fn rejects_rtcp_short_and_bad_lengths() {
        assert!(RawRtp::parse(&[0x80, 200, 0, 1, 0, 0, 0, 0]).is_none());
        let mut rr = packet(0, 0, b"xxxx", 0);
        rr[1] = 201;
        assert!(RawRtp::parse(&rr).is_none());
        let mut p = packet(0, 0, b"ab", 0);
        p[0] |= 0x20;
        *p.last_mut().expect("byte") = 200;
        assert!(RawRtp::parse(&p).is_none());
        let mut p = packet(0, 0, b"", 0);
        p[0] |= 0x10;
        assert!(RawRtp::parse(&p).is_none());
    }

    #[test]
    fn rewrite_keeps_marker() {
        let mut p = packet(0, 0, b"x", 0);
        rewrite_header(&mut p, 111, 7, 9, 1010);
        let r = RawRtp::parse(&p).expect("rtp");
        assert_eq!((r.pt, r.seq, r.ts, r.ssrc), (111, 7, 9, 1010));
        assert_eq!(p[1] & 0x80, 0x80);
    }

    #[test]
    fn stamp_round_trip_and_short_payloads() {
        let mut long = vec![7u8; 40];
        assert!(stamp(&mut long, 0x0102_0304_0506_0708));
        assert_eq!(&long[..28], &[7u8; 28]);
        assert_eq!(&long[28..32], b"SFUt");
        assert_eq!(read_stamp(&long), Some(0x0102_0304_0506_0708));
        let mut short = vec![7u8; MIN_STAMPED_PAYLOAD - 1];
        assert!(!stamp(&mut short, 1));
        assert_eq!(short, vec![7u8; MIN_STAMPED_PAYLOAD - 1]);
        assert_eq!(read_stamp(&[0u8; 40]), None);
    }

    #[test]
    fn unwraps_across_wrap_and_reordering() {
        let mut u = SeqUnwrapper::default();
        let a = u.unwrap(65534);
        assert_eq!(u.unwrap(65535), a + 1);
        assert_eq!(u.unwrap(1), a + 3);
        assert_eq!(u.unwrap(0), a + 2);
        assert_eq!(u.unwrap(65533), a - 1);
        let mut t = TsUnwrapper::default();
        let b = t.unwrap(u64::from(u32::MAX - 10));
        assert_eq!(t.unwrap(20), b + 31);
    }

    #[test]
    fn loss_is_span_minus_received() {
        let mut l = LossCounter::default();
        for s in [65530u16, 65531, 65533, 2, 65532, 3] {
            l.on_packet(s);
        }
        // 65530..=3 is 10 numbers; 65534, 65535, 0, 1 missing.
        assert_eq!(l.lost(), 4);
        l.reset();
        assert_eq!(l.lost(), 0);
        l.on_packet(10);
        l.on_packet(12);
        assert_eq!(l.lost(), 1);
    }

    #[test]
    fn a_packet_sent_again_is_not_counted_twice() {
        let mut l = LossCounter::default();
        assert!(l.on_packet(100));
        assert!(l.on_packet(102));
        assert!(!l.on_packet(100), "a retransmission");
        assert!(l.on_packet(101), "late, but new");
        assert!(!l.on_packet(101));
        assert!(l.on_packet(100 + 2000));
        assert!(!l.on_packet(102), "too old to tell: left out");
        assert_eq!(l.lost(), 2000 - 3);
    }
}
