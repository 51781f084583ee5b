//! Which endpoint a datagram on the shared port belongs to, sans IO.
//!
//! Every endpoint of every conference shares one UDP port, so the first
//! question for each datagram is whose it is. A STUN binding request names
//! the bridge's ufrag for that endpoint in its USERNAME (RFC 8445 §7.2.2:
//! `<receiver ufrag>:<sender ufrag>`), which is how a new remote address is
//! learnt; everything else (DTLS, SRTP, STUN answers) is looked up by the
//! address it came from. No datagram is ever offered to endpoints in turn.

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;
const HEADER: usize = 20;

/// The datagram's first byte says which protocol it is (RFC 7983 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stun,
    Dtls,
    Rtp,
    /// Anything else: not for us, dropped and counted.
    Garbage,
}

pub fn kind(datagram: &[u8]) -> Kind {
    match datagram.first() {
        Some(0..=3) if datagram.len() >= HEADER => Kind::Stun,
        Some(20..=63) => Kind::Dtls,
        Some(128..=191) if datagram.len() >= 12 => Kind::Rtp,
        _ => Kind::Garbage,
    }
}

/// The SSRC of an RTP packet (not RTCP), read from its clear header: SRTP
/// encrypts the payload only (RFC 3711 §3.1), so a packet for a stream
/// nobody signalled can be dropped before it costs a decryption. RTCP
/// shares the first byte's range and is told apart by its packet type
/// (RFC 5761 §4: 192 to 223 in the second byte).
pub fn rtp_ssrc(datagram: &[u8]) -> Option<u32> {
    if kind(datagram) != Kind::Rtp || (192..=223).contains(&datagram[1]) {
        return None;
    }
    let b = datagram.get(8..12)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The bridge-side ufrag a STUN binding request is addressed to, if the
/// datagram is one. Attributes are walked with every length checked, so a
/// truncated or lying message yields `None`, never a panic.
pub fn local_ufrag(datagram: &[u8]) -> Option<&str> {
    if datagram.len() < HEADER || datagram[4..8] != MAGIC_COOKIE {
        return None;
    }
    // A binding request: method 0x001, class request.
    if u16::from_be_bytes([datagram[0], datagram[1]]) != 0x0001 {
        return None;
    }
    let len = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    let body = datagram.get(HEADER..HEADER + len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let ty = u16::from_be_bytes([body[at], body[at + 1]]);
        let alen = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + alen)?;
        if ty == ATTR_USERNAME {
            let user = std::str::from_utf8(value).ok()?;
            return user.split_once(':').map(|(local, _)| local);
        }
        at += 4 + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        // a PRIORITY attribute first, as browsers send it
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn a_binding_request_names_the_bridge_ufrag() {
        let m = binding_request("bridgeUf:browserUf");
        assert_eq!(kind(&m), Kind::Stun);
        assert_eq!(local_ufrag(&m), Some("bridgeUf"));
    }

    #[test]
    fn truncated_or_lying_messages_name_nobody() {
        let m = binding_request("bridgeUf:browserUf");
        for cut in 0..m.len() {
            assert_eq!(local_ufrag(&m[..cut]), None, "cut at {cut}");
        }
        let mut lying = m.clone();
        lying[HEADER + 10] = 0xff; // USERNAME's length beyond the message
        assert_eq!(local_ufrag(&lying), None);
        let mut response = m;
        response[0] = 0x01; // 0x0101: a success response, not a request
        assert_eq!(local_ufrag(&response), None);
    }

    #[test]
    fn the_first_byte_tells_the_protocol() {
        assert_eq!(kind(&[22, 254, 253]), Kind::Dtls);
        assert_eq!(kind(&[0x80; 12]), Kind::Rtp);
        assert_eq!(kind(b"GET / HTTP/1.1"), Kind::Garbage);
        assert_eq!(kind(&[]), Kind::Garbage);
    }

    #[test]
    fn rtp_names_its_ssrc_and_rtcp_does_not() {
        let mut rtp = vec![0x80, 111, 0, 1, 0, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef, 1, 2];
        assert_eq!(rtp_ssrc(&rtp), Some(0xdead_beef));
        rtp[1] = 0x80 | 96; // marker bit set
        assert_eq!(rtp_ssrc(&rtp), Some(0xdead_beef));
        let rr = [0x81, 201, 0, 7, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0];
        assert_eq!(rtp_ssrc(&rr), None);
        assert_eq!(rtp_ssrc(&rtp[..11]), None);
        assert_eq!(rtp_ssrc(&[22; 20]), None);
    }
}
