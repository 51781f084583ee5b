//! The recording file: every datagram with its arrival time, so a replay
//! keeps the encoders' real pacing (keyframe bursts, audio every 20 ms).
//!
//! Format: `SFUREC1\n`, then per packet a u64 LE arrival offset in ns from
//! the first packet, a u16 LE length and the datagram.

use std::io::{self, Write};
use std::path::Path;

use crate::rtp::{RawRtp, TsUnwrapper, Unwrapper};

pub const MAGIC: &[u8; 8] = b"SFUREC1\n";
const PACKET_HEADER: usize = 10;
/// Recordings are loaded whole; this keeps a wrong path (a disk image, say)
/// from eating the machine's memory.
pub const MAX_RECORDING_BYTES: u64 = 1 << 30;
/// A replay's streams are indexed by a byte.
pub const MAX_STREAMS: usize = 64;
/// Clock rates a stream's measured rate is snapped to.
const KNOWN_CLOCKS: [u32; 7] = [8_000, 16_000, 24_000, 32_000, 44_100, 48_000, 90_000];
/// Below this a stream's duration is too short to measure its clock.
const MIN_CLOCK_SPAN_NS: u64 = 200_000_000;
/// Clock assumed when it cannot be measured: RTP video's.
const DEFAULT_CLOCK: u32 = 90_000;

/// Streams a recording to a file as datagrams arrive.
pub struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(MAGIC)?;
        Ok(Writer { out })
    }

    pub fn packet(&mut self, offset_ns: u64, data: &[u8]) -> io::Result<()> {
        let len = u16::try_from(data.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "datagram over 65535 bytes")
        })?;
        self.out.write_all(&offset_ns.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(data)
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One RTP stream of a recording, as a replay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub ssrc: u32,
    pub pt: u8,
    pub packets: usize,
    /// Sequence numbers one pass covers, so the next pass continues after it.
    pub seq_span: u64,
    /// Measured from timestamps against arrival times, snapped to a known rate.
    pub clock: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct Packet {
    pub offset_ns: u64,
    start: usize,
    len: u16,
    /// Index into `Recording::streams`, or `NOT_RTP`.
    pub stream: u8,
}

const NOT_RTP: u8 = u8::MAX;

#[derive(Debug)]
pub struct Recording {
    data: Vec<u8>,
    pub packets: Vec<Packet>,
    pub streams: Vec<StreamInfo>,
}

impl Recording {
    pub fn load(path: &Path) -> Result<Recording, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > MAX_RECORDING_BYTES {
            return Err(format!(
                "{}: larger than {MAX_RECORDING_BYTES} bytes",
                path.display()
            ));
        }
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Recording::parse(data).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(data: Vec<u8>) -> Result<Recording, String> {
        if data.get(..MAGIC.len()) != Some(MAGIC.as_slice()) {
            return Err("not a recording (bad magic)".into());
        }
        let mut packets = Vec::new();
        let mut at = MAGIC.len();
        while at < data.len() {
            let Some(h) = data.get(at..at + PACKET_HEADER) else {
                return Err(format!("truncated header of packet {}", packets.len()));
            };
            let mut off = [0u8; 8];
            off.copy_from_slice(&h[..8]);
            let len = u16::from_le_bytes([h[8], h[9]]);
            let start = at + PACKET_HEADER;
            if start + usize::from(len) > data.len() {
                return Err(format!("truncated body of packet {}", packets.len()));
            }
            let offset_ns = u64::from_le_bytes(off);
            if packets
                .last()
                .is_some_and(|p: &Packet| p.offset_ns > offset_ns)
            {
                return Err(format!("packet {} goes back in time", packets.len()));
            }
            packets.push(Packet {
                offset_ns,
                start,
                len,
                stream: NOT_RTP,
            });
            at = start + usize::from(len);
        }
        let mut rec = Recording {
            data,
            packets,
            streams: Vec::new(),
        };
        rec.index_streams()?;
        Ok(rec)
    }

    pub fn bytes(&self, p: &Packet) -> &[u8] {
        &self.data[p.start..p.start + usize::from(p.len)]
    }

    /// Offset of the last packet: with a frame's gap, one pass's length.
    pub fn duration_ns(&self) -> u64 {
        self.packets.last().map_or(0, |p| p.offset_ns)
    }

    fn index_streams(&mut self) -> Result<(), String> {
        struct Acc {
            seq: Unwrapper<16>,
            ts: TsUnwrapper,
            seq_lo: u64,
            seq_hi: u64,
            first: (u64, u64),
            last: (u64, u64),
        }
        let mut accs: Vec<Acc> = Vec::new();
        for i in 0..self.packets.len() {
            let p = self.packets[i];
            let Some(r) = RawRtp::parse(self.bytes(&p)) else {
                continue;
            };
            let idx = match self.streams.iter().position(|s| s.ssrc == r.ssrc) {
                Some(idx) => idx,
                None => {
                    if self.streams.len() >= MAX_STREAMS {
                        return Err(format!("more than {MAX_STREAMS} SSRCs"));
                    }
                    self.streams.push(StreamInfo {
                        ssrc: r.ssrc,
                        pt: r.pt,
                        packets: 0,
                        seq_span: 0,
                        clock: DEFAULT_CLOCK,
                    });
                    accs.push(Acc {
                        seq: Unwrapper::default(),
                        ts: TsUnwrapper::default(),
                        seq_lo: u64::MAX,
                        seq_hi: 0,
                        first: (0, 0),
                        last: (0, 0),
                    });
                    self.streams.len() - 1
                }
            };
            let a = &mut accs[idx];
            let s = &mut self.streams[idx];
            let seq = a.seq.unwrap(u64::from(r.seq));
            let ts = a.ts.unwrap(u64::from(r.ts));
            if s.packets == 0 {
                a.first = (p.offset_ns, ts);
            }
            a.last = (p.offset_ns, ts);
            a.seq_lo = a.seq_lo.min(seq);
            a.seq_hi = a.seq_hi.max(seq);
            s.packets += 1;
            self.packets[i].stream = idx as u8;
        }
        for (s, a) in self.streams.iter_mut().zip(&accs) {
            s.seq_span = a.seq_hi - a.seq_lo + 1;
            s.clock = snap_clock(a.last.0 - a.first.0, a.last.1.saturating_sub(a.first.1));
        }
        Ok(())
    }

    pub fn stream_of(&self, p: &Packet) -> Option<usize> {
        (p.stream != NOT_RTP).then_some(usize::from(p.stream))
    }
}

/// The known clock nearest (by ratio) to `ticks` over `span_ns`.
fn snap_clock(span_ns: u64, ticks: u64) -> u32 {
    if span_ns < MIN_CLOCK_SPAN_NS || ticks == 0 {
        return DEFAULT_CLOCK;
    }
    let rate = ticks as f64 * 1e9 / span_ns as f64;
    KNOWN_CLOCKS
        .into_iter()
        .min_by(|a, b| {
            let da = (rate / f64::from(*a)).ln().abs();
            let db = (rate / f64::from(*b)).ln().abs();
            da.total_cmp(&db)
        })
        .unwrap_or(DEFAULT_CLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(ssrc: u32, pt: u8, seq: u16, ts: u32) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        crate::rtp::rewrite_header(&mut p, pt, seq, ts, ssrc);
        p.extend([1u8; 30]);
        p
    }

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Vec::new()).expect("writer");
        for i in 0..50u16 {
            let t = u64::from(i) * 20_000_000;
            w.packet(
                t,
                &rtp(4, 111, 65530u16.wrapping_add(i), 960 * u32::from(i)),
            )
            .expect("write");
            if i % 2 == 0 {
                let ts = 3000 * u32::from(i / 2);
                w.packet(t + 1, &rtp(1, 100, i / 2, ts)).expect("write");
            }
        }
        w.packet(1_000_000_000, b"not rtp").expect("write");
        w.finish().expect("finish")
    }

    #[test]
    fn round_trip_and_stream_index() {
        let rec = Recording::parse(sample()).expect("parse");
        assert_eq!(rec.packets.len(), 76);
        assert_eq!(rec.duration_ns(), 1_000_000_000);
        assert_eq!(rec.bytes(&rec.packets[75]), b"not rtp");
        assert_eq!(rec.stream_of(&rec.packets[75]), None);
        let opus = &rec.streams[0];
        assert_eq!(
            (opus.ssrc, opus.pt, opus.packets, opus.seq_span, opus.clock),
            (4, 111, 50, 50, 48_000)
        );
        let vp8 = &rec.streams[1];
        assert_eq!(
            (vp8.ssrc, vp8.packets, vp8.seq_span, vp8.clock),
            (1, 25, 25, 90_000)
        );
    }

    #[test]
    fn rejects_bad_files() {
        assert!(Recording::parse(b"SFUREC2\n".to_vec()).is_err());
        let mut f = sample();
        f.truncate(f.len() - 3);
        assert!(Recording::parse(f).unwrap_err().contains("truncated body"));
        let mut f = MAGIC.to_vec();
        f.extend([0u8; 5]);
        assert!(
            Recording::parse(f)
                .unwrap_err()
                .contains("truncated header")
        );
        let mut w = Writer::new(Vec::new()).expect("writer");
        w.packet(5, b"a").expect("write");
        w.packet(4, b"b").expect("write");
        assert!(Recording::parse(w.finish().expect("finish")).is_err());
    }

    #[test]
    fn clock_snaps_to_nearest_known_rate() {
        assert_eq!(snap_clock(1_000_000_000, 89_000), 90_000);
        assert_eq!(snap_clock(1_000_000_000, 47_000), 48_000);
        assert_eq!(snap_clock(1_000, 47_000), DEFAULT_CLOCK);
    }
}
