//! Enough of VP8's RTP payload (RFC 7741) to see keyframes and their size
//! without decoding, so a run can tell which simulcast layer a receiver got.

/// What the first packet of a VP8 frame says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameStart {
    /// A keyframe's first packet, with its coded size.
    Key { width: u16, height: u16 },
    /// Any other packet: an interframe, or not the start of a partition 0.
    Other,
}

/// The keyframe start code (RFC 6386 §9.1).
const START_CODE: [u8; 3] = [0x9d, 0x01, 0x2a];
/// Frame tag (3 bytes), start code (3), width (2), height (2).
const KEY_HEADER_LEN: usize = 10;

/// Length of the payload descriptor at the front of `p`, or `None` when the
/// packet is too short to hold what its flags announce.
fn descriptor_len(p: &[u8]) -> Option<usize> {
    let first = *p.first()?;
    let mut n = 1;
    if first & 0x80 != 0 {
        let x = *p.get(n)?;
        n += 1;
        if x & 0x80 != 0 {
            // Picture ID: 15 bits when its first byte's M bit is set.
            let pid = *p.get(n)?;
            n += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            n += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            n += 1; // TID / Y / KEYIDX
        }
    }
    (n <= p.len()).then_some(n)
}

/// Looks at one VP8 RTP payload. `None` if it is malformed.
pub fn frame_start(p: &[u8]) -> Option<FrameStart> {
    let n = descriptor_len(p)?;
    let first = p[0];
    let starts_partition0 = first & 0x10 != 0 && first & 0x07 == 0;
    if !starts_partition0 {
        return Some(FrameStart::Other);
    }
    let h = &p[n..];
    let &tag = h.first()?;
    // Frame tag bit 0 is the inverse key frame flag.
    if tag & 0x01 != 0 {
        return Some(FrameStart::Other);
    }
    if h.len() < KEY_HEADER_LEN || h[3..6] != START_CODE {
        return None;
    }
    // 14 bits of size; the top two are the (ignored) scaling mode.
    let width = u16::from_le_bytes([h[6], h[7]]) & 0x3fff;
    let height = u16::from_le_bytes([h[8], h[9]]) & 0x3fff;
    Some(FrameStart::Key { width, height })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_payload(descriptor: &[u8], w: u16, h: u16) -> Vec<u8> {
        let mut p = descriptor.to_vec();
        p.extend([0x50, 0x2b, 0x00]); // tag: key frame, version 0, shown
        p.extend(START_CODE);
        p.extend((w | 0x4000).to_le_bytes()); // with a scaling mode set
        p.extend(h.to_le_bytes());
        p.extend([0u8; 30]);
        p
    }

    #[test]
    fn keyframe_dimensions_with_15_bit_picture_id() {
        // X, S, PID 0; I with a 15-bit picture ID.
        let p = key_payload(&[0x90, 0x80, 0x81, 0x23], 1280, 720);
        assert_eq!(
            frame_start(&p),
            Some(FrameStart::Key {
                width: 1280,
                height: 720
            })
        );
    }

    #[test]
    fn keyframe_dimensions_with_all_extensions() {
        // I (7-bit), L, T and K.
        let p = key_payload(&[0x90, 0xf0, 0x12, 0x05, 0x40], 320, 180);
        assert_eq!(
            frame_start(&p),
            Some(FrameStart::Key {
                width: 320,
                height: 180
            })
        );
        let p = key_payload(&[0x10], 640, 360);
        assert_eq!(
            frame_start(&p),
            Some(FrameStart::Key {
                width: 640,
                height: 360
            })
        );
    }

    #[test]
    fn interframes_and_continuations_are_not_keyframes() {
        let mut inter = key_payload(&[0x10], 640, 360);
        inter[1] |= 0x01;
        assert_eq!(frame_start(&inter), Some(FrameStart::Other));
        let mut cont = key_payload(&[0x00], 640, 360);
        cont[0] = 0x00;
        assert_eq!(frame_start(&cont), Some(FrameStart::Other));
        // S set but partition 1.
        assert_eq!(frame_start(&[0x11, 0, 0]), Some(FrameStart::Other));
    }

    #[test]
    fn malformed_payloads_are_none() {
        assert_eq!(frame_start(&[]), None);
        assert_eq!(frame_start(&[0x90, 0x80]), None);
        assert_eq!(frame_start(&[0x10]), None);
        assert_eq!(frame_start(&[0x10, 0x50, 0x2b, 0, 1, 2, 3]), None);
    }
}
