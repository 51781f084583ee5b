//! Plain RTP in, for benchmarks (`meetings.rtp_ingest`, off by default),
//! sans IO.
//!
//! Janus's VideoRoom takes "remote publishers" as plain RTP, which lets a
//! benchmark feed both SFUs a replayed recording without paying for a
//! publisher's ICE, DTLS and decryption on the load machine. This is the
//! bridge's equivalent: a datagram on the ingest socket is taken as
//! coming from whichever endpoint signalled its SSRC (as Janus does, by
//! SSRC), then forwarded exactly as if it had arrived over SRTP. Nothing
//! authenticates it, which is why the setting takes only a loopback
//! address.

/// The parts of a plain RTP packet (RFC 3550 §5.1) the bridge reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainRtp {
    pub ssrc: u32,
    pub pt: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    /// Where the payload lies in the datagram (header, CSRCs, header
    /// extension and padding left out).
    pub payload: std::ops::Range<usize>,
}

/// Parses an RTP packet's header; RTCP (payload types 64 to 95 once the
/// marker bit is taken off: RFC 5761 §4), a version other than 2, or any
/// length that does not add up gives `None`.
pub fn parse(d: &[u8]) -> Option<PlainRtp> {
    if d.len() < 12 || d[0] >> 6 != 2 || (192..=223).contains(&d[1]) {
        return None;
    }
    let padding = d[0] & 0x20 != 0;
    let extension = d[0] & 0x10 != 0;
    let csrcs = usize::from(d[0] & 0x0F);
    let mut start = 12 + 4 * csrcs;
    if extension {
        let h = d.get(start..start + 4)?;
        let words = usize::from(u16::from_be_bytes([h[2], h[3]]));
        start += 4 + 4 * words;
    }
    let mut end = d.len();
    if padding {
        let pad = usize::from(*d.last()?);
        if pad == 0 {
            return None;
        }
        end = end.checked_sub(pad)?;
    }
    if start > end {
        return None;
    }
    Some(PlainRtp {
        ssrc: u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
        pt: d[1] & 0x7F,
        seq: u16::from_be_bytes([d[2], d[3]]),
        timestamp: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
        marker: d[1] & 0x80 != 0,
        payload: start..end,
    })
}

/// Extends a 16-bit sequence number to 64 bits against the last one of
/// its stream (RFC 3550 appendix A.1's idea): the nearest value to the
/// previous, so reordering by less than half the space keeps its order.
pub fn extend_seq(previous: Option<u64>, seq: u16) -> u64 {
    let Some(prev) = previous else {
        return u64::from(seq);
    };
    let base = prev & !0xFFFF;
    let candidates = [
        base.wrapping_sub(0x1_0000) | u64::from(seq),
        base | u64::from(seq),
        (base + 0x1_0000) | u64::from(seq),
    ];
    candidates
        .into_iter()
        .filter(|&c| c <= prev + 0x8000 && c + 0x8000 >= prev)
        .min_by_key(|&c| c.abs_diff(prev))
        .unwrap_or(base | u64::from(seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(first: u8, second: u8, extra: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut d = vec![
            first, second, 0x12, 0x34, 0, 0, 0x10, 0, 0xDE, 0xAD, 0xBE, 0xEF,
        ];
        d.extend_from_slice(extra);
        d.extend_from_slice(payload);
        d
    }

    #[test]
    fn reads_the_fixed_header() {
        let d = packet(0x80, 0x80 | 100, &[], b"vp8");
        let p = parse(&d).unwrap();
        assert_eq!(p.ssrc, 0xDEAD_BEEF);
        assert_eq!(p.pt, 100);
        assert!(p.marker);
        assert_eq!(p.seq, 0x1234);
        assert_eq!(p.timestamp, 0x1000);
        assert_eq!(&d[p.payload], b"vp8");
    }

    #[test]
    fn skips_csrcs_extension_and_padding() {
        // One CSRC, a one-word extension, two bytes of padding.
        let extra = [1, 2, 3, 4, 0xBE, 0xDE, 0, 1, 0x10, 0xFF, 0, 0];
        let mut d = packet(0x80 | 0x20 | 0x10 | 1, 111, &extra, b"opus");
        d.extend_from_slice(&[0, 2]);
        let p = parse(&d).unwrap();
        assert_eq!(&d[p.payload], b"opus");
        assert!(!p.marker);
    }

    #[test]
    fn refuses_what_does_not_add_up() {
        assert_eq!(parse(&[0x80; 11]), None);
        // RTCP receiver report.
        assert_eq!(parse(&packet(0x81, 201, &[], &[0; 8])), None);
        // Version 1.
        assert_eq!(parse(&packet(0x40, 100, &[], b"x")), None);
        // An extension longer than the packet.
        assert_eq!(parse(&packet(0x90, 100, &[0xBE, 0xDE, 0, 9], b"")), None);
        // Padding longer than the packet, and zero padding.
        let mut d = packet(0xA0, 100, &[], b"x");
        d.push(200);
        assert_eq!(parse(&d), None);
        let mut d = packet(0xA0, 100, &[], b"x");
        d.push(0);
        assert_eq!(parse(&d), None);
    }

    #[test]
    fn sequence_numbers_extend_across_wraps() {
        assert_eq!(extend_seq(None, 65_535), 65_535);
        assert_eq!(extend_seq(Some(65_535), 0), 65_536);
        assert_eq!(extend_seq(Some(65_536), 65_534), 65_534);
        assert_eq!(extend_seq(Some(0x2_0005), 3), 0x2_0003);
        assert_eq!(extend_seq(Some(0x2_FFF0), 0x10), 0x3_0010);
        assert_eq!(extend_seq(Some(10), 9), 9);
    }
}
