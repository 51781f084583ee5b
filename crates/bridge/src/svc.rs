//! Scalable video in one SSRC (VP9 and AV1 SVC, as lib-jitsi-meet sends
//! them), sans IO: which spatial layer a packet belongs to, and per
//! receiver, which packets to forward so that it gets the layers it wants
//! and a stream it can decode.
//!
//! Simulcast sends each size on an SSRC of its own and is switched by
//! `forwarding::Projection`; SVC sends every size in one stream, each
//! picture as a superframe of layer frames, lowest first. A receiver that
//! wants less is sent the lower layer frames only: dropped packets leave no
//! gaps (sequence numbers are renumbered), and the last packet forwarded of
//! each picture carries the marker bit, as the dropped top layer's would
//! have. A layer is given up at the start of a picture and taken up at a
//! keyframe, where it does not depend on pictures the receiver never got.

/// What one packet of a VP9 stream says of itself (RFC 9628 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerInfo {
    pub spatial: u8,
    pub temporal: u8,
    /// The first packet of a layer frame (B), and the last (E).
    pub begin: bool,
    pub end: bool,
    /// Not inter-picture predicted (P = 0): a picture that depends on no
    /// earlier one, where a receiver may start or take up a layer.
    pub independent: bool,
}

/// The layer indices of a VP9 packet, if its descriptor carries them (L);
/// `None` for a stream without SVC, or a payload too short to say.
pub fn vp9_layer(payload: &[u8]) -> Option<LayerInfo> {
    let first = *payload.first()?;
    let (i, p, l, b, e) = (
        first & 0x80 != 0,
        first & 0x40 != 0,
        first & 0x20 != 0,
        first & 0x08 != 0,
        first & 0x04 != 0,
    );
    if !l {
        return None;
    }
    let mut at = 1;
    if i {
        // PictureID: 7 bits, or 15 with the M bit.
        let m = payload.get(at)? & 0x80 != 0;
        at += if m { 2 } else { 1 };
    }
    let layers = *payload.get(at)?;
    Some(LayerInfo {
        temporal: layers >> 5,
        spatial: (layers >> 1) & 0x07,
        begin: b,
        end: e,
        independent: !p,
    })
}

/// The dependency descriptor's URI (AV1 RTP spec, appendix A): AV1 says
/// which layer a packet is of only there, not in its payload.
pub const DD_URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";

/// The layer of each frame dependency template, from the template
/// dependency structure a keyframe's descriptor carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdStructure {
    template_id_offset: u8,
    /// (spatial, temporal) per template.
    layers: Vec<(u8, u8)>,
}

/// Reads bits most significant first, as the descriptor is written.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self.data.get(self.at / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.at % 8)) & 1);
            self.at += 1;
        }
        Some(v)
    }
}

/// The layer of an AV1 packet from its dependency descriptor `dd`,
/// learning the template structure when the descriptor carries one (into
/// `structure`, kept per stream). `independent` comes from the payload's
/// aggregation header (N: the first packet of a coded video sequence).
pub fn av1_layer(
    dd: &[u8],
    payload: &[u8],
    structure: &mut Option<DdStructure>,
) -> Option<LayerInfo> {
    let mut b = Bits { data: dd, at: 0 };
    let begin = b.read(1)? == 1;
    let end = b.read(1)? == 1;
    let template_id = b.read(6)? as u8;
    let _frame_number = b.read(16)?;
    if dd.len() > 3 && b.read(1)? == 1 {
        // template_dependency_structure_present_flag: the other four
        // flags, then the structure, whose layers come first.
        b.read(4)?;
        let template_id_offset = b.read(6)? as u8;
        let _dt_cnt_minus_one = b.read(5)?;
        let (mut spatial, mut temporal) = (0u8, 0u8);
        let mut layers = Vec::new();
        loop {
            layers.push((spatial, temporal));
            match b.read(2)? {
                1 => temporal = temporal.checked_add(1)?,
                2 => {
                    temporal = 0;
                    spatial = spatial.checked_add(1)?;
                }
                3 => break,
                _ => {}
            }
            if layers.len() >= 64 {
                return None;
            }
        }
        *structure = Some(DdStructure {
            template_id_offset,
            layers,
        });
    }
    let s = structure.as_ref()?;
    let index = (usize::from(template_id) + 64 - usize::from(s.template_id_offset)) % 64;
    let &(spatial, temporal) = s.layers.get(index)?;
    Some(LayerInfo {
        spatial,
        temporal,
        begin,
        end,
        independent: payload.first().is_some_and(|h| h & 0x08 != 0),
    })
}

/// Sequence numbers remembered for renumbering late packets.
const WINDOW: usize = 1024;

/// What one receiver gets of one SVC stream.
#[derive(Debug)]
pub struct SvcFilter {
    /// The highest spatial layer forwarded now; `None` before the first
    /// keyframe.
    spatial: Option<u8>,
    /// Packets dropped so far, in sequence order: what forwarded ones are
    /// moved down by.
    dropped: u64,
    highest: Option<u64>,
    /// The shift each recent sequence number got (by `seq % WINDOW`), so
    /// that a retransmission is renumbered as the original was.
    shifts: Box<[u64; WINDOW]>,
}

impl Default for SvcFilter {
    fn default() -> Self {
        SvcFilter {
            spatial: None,
            dropped: 0,
            highest: None,
            shifts: Box::new([0; WINDOW]),
        }
    }
}

/// A packet to forward, in the receiver's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub seq: u64,
    pub marker: bool,
}

impl SvcFilter {
    pub fn spatial(&self) -> Option<u8> {
        self.spatial
    }

    /// The receiver is to get spatial layers up to `target` (`None`:
    /// none): `Some` to forward packet `seq` (extended) with `info`, whose
    /// own marker bit is `marker`.
    pub fn on_packet(
        &mut self,
        seq: u64,
        info: &LayerInfo,
        marker: bool,
        target: Option<u8>,
    ) -> Option<Forward> {
        let picture_start = info.spatial == 0 && info.begin;
        // Down (or off) at the start of a picture; on or up at one that
        // depends on no earlier picture.
        self.spatial = match (self.spatial, target) {
            (Some(s), Some(t)) if t < s && picture_start => Some(t),
            (_, None) if picture_start => None,
            (s, Some(t)) if s.is_none_or(|s| t > s) && picture_start && info.independent => Some(t),
            (s, _) => s,
        };
        let forward = self.spatial.is_some_and(|s| info.spatial <= s);
        let late = self.highest.is_some_and(|h| seq <= h);
        if !late {
            // Packets lost on the way in are taken as forwarded: they may
            // still come, retransmitted.
            let from = self.highest.map_or(seq, |h| h + 1);
            for s in from..seq {
                self.shifts[(s % WINDOW as u64) as usize] = self.dropped;
            }
            self.highest = Some(seq);
            if !forward {
                self.dropped += 1;
                return None;
            }
            self.shifts[(seq % WINDOW as u64) as usize] = self.dropped;
        } else if !forward {
            return None;
        }
        let shift = if late {
            self.shifts[(seq % WINDOW as u64) as usize]
        } else {
            self.dropped
        };
        let top = self.spatial.is_some_and(|s| info.spatial == s);
        Some(Forward {
            seq: seq.wrapping_sub(shift),
            marker: marker || (top && info.end),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A non-flexible-mode VP9 descriptor with a 15-bit picture id.
    fn vp9(spatial: u8, temporal: u8, begin: bool, end: bool, independent: bool) -> Vec<u8> {
        let mut first = 0x80 | 0x20; // I, L
        if !independent {
            first |= 0x40;
        }
        if begin {
            first |= 0x08;
        }
        if end {
            first |= 0x04;
        }
        vec![
            first,
            0x80 | 0x01,
            0x23,
            (temporal << 5) | (spatial << 1),
            0x07,
            0xaa,
        ]
    }

    #[test]
    fn the_descriptor_names_the_layers() {
        let l = vp9_layer(&vp9(2, 1, true, false, false)).unwrap();
        assert_eq!(
            (l.spatial, l.temporal, l.begin, l.end, l.independent),
            (2, 1, true, false, false)
        );
        // a 7-bit picture id
        assert_eq!(vp9_layer(&[0xa8, 0x05, 0x02]).map(|l| l.spatial), Some(1));
        // no layer indices, or cut short
        assert_eq!(vp9_layer(&[0x88, 0x05]), None);
        assert_eq!(vp9_layer(&vp9(1, 0, true, true, true)[..3]), None);
        assert_eq!(vp9_layer(&[]), None);
    }

    /// One picture of three spatial layers, a packet each; `start` is the
    /// first sequence number.
    fn picture(
        f: &mut SvcFilter,
        start: u64,
        key: bool,
        target: Option<u8>,
    ) -> Vec<(u64, u8, bool)> {
        (0..3u8)
            .filter_map(|s| {
                let info = vp9_layer(&vp9(s, 0, true, true, key)).unwrap();
                f.on_packet(start + u64::from(s), &info, s == 2, target)
                    .map(|fw| (fw.seq, s, fw.marker))
            })
            .collect()
    }

    #[test]
    fn a_receiver_starts_at_a_keyframe_and_gets_the_layers_it_wants_renumbered() {
        let mut f = SvcFilter::default();
        // nothing before a keyframe
        assert_eq!(picture(&mut f, 100, false, Some(1)), []);
        // from the keyframe, layers 0 and 1; 1 carries the marker now
        assert_eq!(
            picture(&mut f, 103, true, Some(1)),
            [(100, 0, false), (101, 1, true)]
        );
        assert_eq!(
            picture(&mut f, 106, false, Some(1)),
            [(102, 0, false), (103, 1, true)]
        );
        // down to layer 0 at the next picture
        assert_eq!(picture(&mut f, 109, false, Some(0)), [(104, 0, true)]);
        // up to 2 waits for a keyframe
        assert_eq!(picture(&mut f, 112, false, Some(2)), [(105, 0, true)]);
        assert_eq!(
            picture(&mut f, 115, true, Some(2)),
            [(106, 0, false), (107, 1, false), (108, 2, true)]
        );
        // none at all
        assert_eq!(picture(&mut f, 118, false, None), []);
        assert_eq!(f.spatial(), None);
    }

    #[test]
    fn a_retransmission_gets_the_number_the_original_would_have() {
        let mut f = SvcFilter::default();
        picture(&mut f, 0, true, Some(0)); // 0 forwarded as 0; 1, 2 dropped
        let base = vp9_layer(&vp9(0, 0, true, true, false)).unwrap();
        // 3 is lost, 4 and 5 (layers 1 and 2) dropped, 6 comes
        let top = vp9_layer(&vp9(2, 0, true, true, false)).unwrap();
        assert_eq!(
            f.on_packet(
                4,
                &vp9_layer(&vp9(1, 0, true, true, false)).unwrap(),
                false,
                Some(0)
            ),
            None
        );
        assert_eq!(f.on_packet(5, &top, true, Some(0)), None);
        let six = f.on_packet(6, &base, false, Some(0)).unwrap();
        assert_eq!(six.seq, 2);
        // 3 arrives late: it takes the place just after 0
        assert_eq!(
            f.on_packet(3, &base, false, Some(0)).map(|x| x.seq),
            Some(1)
        );
        // a late packet of a dropped layer stays dropped
        assert_eq!(f.on_packet(5, &top, true, Some(0)), None);
    }

    /// A descriptor: the mandatory fields, and with `layers` (next_layer_idc
    /// values) a template structure after the five flags.
    fn dd(begin: bool, end: bool, template: u8, structure: Option<(u8, &[u32])>) -> Vec<u8> {
        let mut bits: Vec<(u32, usize)> = vec![
            (u32::from(begin), 1),
            (u32::from(end), 1),
            (u32::from(template), 6),
            (7, 16),
        ];
        if let Some((offset, idcs)) = structure {
            bits.extend([(1, 1), (0, 4), (u32::from(offset), 6), (0, 5)]);
            bits.extend(idcs.iter().map(|&v| (v, 2)));
        }
        let mut out = Vec::new();
        let mut at = 0;
        for (v, n) in bits {
            for i in (0..n).rev() {
                if at % 8 == 0 {
                    out.push(0);
                }
                if (v >> i) & 1 == 1 {
                    let last = out.len() - 1;
                    out[last] |= 0x80 >> (at % 8);
                }
                at += 1;
            }
        }
        out
    }

    #[test]
    fn the_av1_descriptor_names_the_layer_once_its_structure_is_known() {
        let mut st = None;
        // Before any structure: unknown.
        assert_eq!(av1_layer(&dd(true, false, 3, None), &[0x10], &mut st), None);
        // L3T1-like: templates (0,0), (1,0), (2,0) then end; offset 5.
        let key = dd(true, false, 5, Some((5, &[2, 2, 3])));
        let l = av1_layer(&key, &[0x18], &mut st).unwrap();
        assert_eq!(
            (l.spatial, l.temporal, l.begin, l.end, l.independent),
            (0, 0, true, false, true)
        );
        let l = av1_layer(&dd(false, true, 7, None), &[0x10], &mut st).unwrap();
        assert_eq!((l.spatial, l.end, l.independent), (2, true, false));
        // temporal layers: (0,0), (0,1), (0,2)
        let mut t = None;
        av1_layer(&dd(true, true, 0, Some((0, &[1, 1, 3]))), &[0x08], &mut t).unwrap();
        assert_eq!(
            av1_layer(&dd(true, true, 2, None), &[0], &mut t).map(|l| l.temporal),
            Some(2)
        );
        // a template the structure does not have, or a cut descriptor
        assert_eq!(av1_layer(&dd(true, true, 9, None), &[0], &mut t), None);
        assert_eq!(av1_layer(&key[..4], &[0], &mut None), None);
        assert_eq!(av1_layer(&[], &[0], &mut t), None);
    }
}
