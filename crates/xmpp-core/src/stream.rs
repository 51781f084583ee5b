//! The c2s negotiation core: which features a stream offers in which state,
//! and the SASL exchange (RFC 6120 §5–7). No I/O: the session feeds it
//! elements and carries out the steps it returns, including the one
//! asynchronous step, looking up a user's stored SCRAM keys.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use minidom::Element;

use crate::ns;
use crate::sasl::{
    ChannelBinding, SaslError, ScramCredentials, ScramHash, ScramServer, parse_plain,
};
use crate::stanza::ElementExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    ScramSha256Plus,
    ScramSha1Plus,
    ScramSha256,
    ScramSha1,
    Plain,
    Anonymous,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
            Mechanism::Anonymous => "ANONYMOUS",
        }
    }

    fn scram(self) -> Option<(ScramHash, bool)> {
        match self {
            Mechanism::ScramSha256Plus => Some((ScramHash::Sha256, true)),
            Mechanism::ScramSha1Plus => Some((ScramHash::Sha1, true)),
            Mechanism::ScramSha256 => Some((ScramHash::Sha256, false)),
            Mechanism::ScramSha1 => Some((ScramHash::Sha1, false)),
            _ => None,
        }
    }
}

/// What a stream can offer; fixed per connection state.
#[derive(Debug, Clone, Default)]
pub struct StreamPolicy {
    /// STARTTLS can still be negotiated on this transport.
    pub starttls_available: bool,
    /// The transport is already encrypted.
    pub secure: bool,
    pub require_encryption: bool,
    pub allow_plain: bool,
    /// PLAIN on a clear stream too (a benchmark setting; off by default).
    pub allow_unencrypted_plain: bool,
    /// The host is a guest host: ANONYMOUS only.
    pub anonymous_host: bool,
    /// tls-exporter keying material can be had from the TLS layer.
    pub channel_binding: bool,
    /// XEP-0077 in-band registration before authentication.
    pub registration: bool,
    /// Registration with an invitation token (XEP-0401, XEP-0445), open
    /// registration or not.
    pub invites: bool,
    /// XEP-0115 `<c/>` element to add to every features list.
    pub caps: Option<String>,
}

impl StreamPolicy {
    /// SASL may only start once the stream is as secure as policy demands.
    pub fn may_authenticate(&self) -> bool {
        self.secure || !self.require_encryption
    }

    pub fn mechanisms(&self) -> Vec<Mechanism> {
        if !self.may_authenticate() {
            return Vec::new();
        }
        if self.anonymous_host {
            return vec![Mechanism::Anonymous];
        }
        let mut m = Vec::with_capacity(5);
        if self.secure && self.channel_binding {
            m.push(Mechanism::ScramSha256Plus);
            m.push(Mechanism::ScramSha1Plus);
        }
        m.push(Mechanism::ScramSha256);
        m.push(Mechanism::ScramSha1);
        // PLAIN sends the password itself: never over a clear channel,
        // unless explicitly allowed for a loopback benchmark.
        if self.allow_plain && (self.secure || self.allow_unencrypted_plain) {
            m.push(Mechanism::Plain);
        }
        m
    }

    pub fn features_before_auth(&self) -> String {
        let mut s =
            String::from("<stream:features xmlns:stream='http://etherx.jabber.org/streams'>");
        if self.starttls_available && !self.secure {
            s.push_str("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>");
            if self.require_encryption {
                s.push_str("<required/>");
            }
            s.push_str("</starttls>");
        }
        let mechs = self.mechanisms();
        if !mechs.is_empty() {
            s.push_str("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>");
            for m in &mechs {
                s.push_str("<mechanism>");
                s.push_str(m.name());
                s.push_str("</mechanism>");
            }
            s.push_str("</mechanisms>");
            if self.secure && self.channel_binding && !self.anonymous_host {
                s.push_str("<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/></sasl-channel-binding>");
            }
            if self.registration && !self.anonymous_host {
                s.push_str("<register xmlns='http://jabber.org/features/iq-register'/>");
            }
            if self.invites && !self.anonymous_host {
                s.push_str(
                    "<register xmlns='urn:xmpp:invite'/><register xmlns='urn:xmpp:ibr-token:0'/>",
                );
            }
        }
        if let Some(c) = &self.caps {
            s.push_str(c);
        }
        s.push_str("</stream:features>");
        s
    }

    pub fn features_after_auth(&self) -> String {
        let mut s = String::from(
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
             <session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>\
             <ver xmlns='urn:xmpp:features:rosterver'/>\
             <csi xmlns='urn:xmpp:csi:0'/><sm xmlns='urn:xmpp:sm:3'/>",
        );
        if let Some(c) = &self.caps {
            s.push_str(c);
        }
        s.push_str("</stream:features>");
        s
    }
}

/// What the session must do next in a SASL exchange.
#[derive(Debug)]
pub enum SaslStep {
    /// Send this XML (a challenge) and wait for the next `<response/>`.
    Send(String),
    /// Look up the user's SCRAM keys and call [`SaslExchange::credentials`].
    LookupScram { username: String, hash: ScramHash },
    /// Verify this PLAIN password against the stored keys and call
    /// [`SaslExchange::plain_checked`].
    CheckPlain { username: String, password: String },
    /// Authenticated: send `xml` (the `<success/>`) and restart the stream.
    /// `username` is `None` for ANONYMOUS.
    Success {
        username: Option<String>,
        xml: String,
    },
    /// Failed: send `xml`; the client may try again.
    Failure { error: SaslError, xml: String },
}

fn failure(error: SaslError) -> SaslStep {
    let xml = format!(
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><{}/></failure>",
        error.condition()
    );
    SaslStep::Failure { error, xml }
}

fn success(username: Option<String>, data: Option<&[u8]>) -> SaslStep {
    let xml = match data {
        Some(d) => format!(
            "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</success>",
            B64.encode(d)
        ),
        None => "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>".to_owned(),
    };
    SaslStep::Success { username, xml }
}

/// Decodes the base64 text of `<auth/>` or `<response/>`; `=` is the empty
/// response (RFC 6120 §6.4.2).
fn payload(el: &Element) -> Result<Vec<u8>, SaslError> {
    let text = el.text();
    let t = text.trim();
    if t.is_empty() || t == "=" {
        return Ok(Vec::new());
    }
    B64.decode(t).map_err(|_| SaslError::IncorrectEncoding)
}

enum State {
    ScramFirst,
    ScramFinal,
    Plain { username: String },
    Done,
}

/// One SASL exchange on one stream.
pub struct SaslExchange {
    scram: Option<ScramServer>,
    state: State,
    username: String,
    authzid: Option<String>,
}

impl SaslExchange {
    /// Starts an exchange from an `<auth/>` element. Returns `None` with a
    /// failure step when the exchange cannot even start.
    pub fn begin(
        auth: &Element,
        policy: &StreamPolicy,
        cb: ChannelBinding,
    ) -> (Option<SaslExchange>, SaslStep) {
        let offered = policy.mechanisms();
        let Some(mech) = auth
            .attr("mechanism")
            .and_then(|name| offered.iter().copied().find(|m| m.name() == name))
        else {
            return (None, failure(SaslError::InvalidMechanism));
        };
        let data = match payload(auth) {
            Ok(d) => d,
            Err(e) => return (None, failure(e)),
        };
        match mech {
            Mechanism::Anonymous => (None, success(None, None)),
            Mechanism::Plain => match parse_plain(&data) {
                Ok(p) => {
                    let mut ex = SaslExchange {
                        scram: None,
                        state: State::Plain {
                            username: p.authcid.clone(),
                        },
                        username: p.authcid.clone(),
                        authzid: p.authzid,
                    };
                    if let Some(step) = ex.authzid_failure() {
                        return (None, step);
                    }
                    ex.state = State::Plain {
                        username: p.authcid.clone(),
                    };
                    (
                        Some(ex),
                        SaslStep::CheckPlain {
                            username: p.authcid,
                            password: p.password,
                        },
                    )
                }
                Err(e) => (None, failure(e)),
            },
            m => {
                let Some((hash, plus)) = m.scram() else {
                    return (None, failure(SaslError::InvalidMechanism));
                };
                let offered_plus = offered
                    .iter()
                    .any(|m| matches!(m, Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus));
                let mut server = ScramServer::new(hash, plus, offered_plus, cb);
                match server.client_first(&data) {
                    Ok(first) => {
                        let ex = SaslExchange {
                            scram: Some(server),
                            state: State::ScramFirst,
                            username: first.username.clone(),
                            authzid: first.authzid,
                        };
                        if let Some(step) = ex.authzid_failure() {
                            return (None, step);
                        }
                        (
                            Some(ex),
                            SaslStep::LookupScram {
                                username: first.username,
                                hash,
                            },
                        )
                    }
                    Err(e) => (None, failure(e)),
                }
            }
        }
    }

    /// An authzid may only name the authenticating user itself; a bare
    /// JID `user@host` is accepted when its localpart is the username.
    fn authzid_failure(&self) -> Option<SaslStep> {
        let az = self.authzid.as_deref()?;
        let local = az.split('@').next().unwrap_or(az);
        if az.is_empty() || local == self.username {
            None
        } else {
            Some(failure(SaslError::InvalidAuthzid))
        }
    }

    /// Continues a SCRAM exchange with the looked-up keys (`None` for an
    /// unknown user, which fails only at the end, so that user names cannot
    /// be probed).
    pub fn credentials(&mut self, creds: Option<ScramCredentials>) -> SaslStep {
        match (&mut self.scram, &self.state) {
            (Some(s), State::ScramFirst) => {
                let first = s.server_first(creds);
                self.state = State::ScramFinal;
                SaslStep::Send(format!(
                    "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</challenge>",
                    B64.encode(first)
                ))
            }
            _ => failure(SaslError::MalformedRequest),
        }
    }

    /// The result of checking a PLAIN password.
    pub fn plain_checked(&mut self, ok: bool) -> SaslStep {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Plain { username } if ok => success(Some(username), None),
            _ => failure(SaslError::NotAuthorized),
        }
    }

    /// Handles `<response/>` or `<abort/>`.
    pub fn step(&mut self, el: &Element) -> SaslStep {
        if el.name() == "abort" {
            self.state = State::Done;
            return failure(SaslError::Aborted);
        }
        if el.name() != "response" {
            self.state = State::Done;
            return failure(SaslError::MalformedRequest);
        }
        let data = match payload(el) {
            Ok(d) => d,
            Err(e) => return failure(e),
        };
        match (
            &mut self.scram,
            std::mem::replace(&mut self.state, State::Done),
        ) {
            (Some(s), State::ScramFinal) => match s.client_final(&data) {
                Ok(final_msg) => success(Some(self.username.clone()), Some(&final_msg)),
                Err(e) => failure(e),
            },
            _ => failure(SaslError::MalformedRequest),
        }
    }
}

/// The resource a bind request asks for, if any (RFC 6120 §7.6–7.7).
/// `Err` carries the stanza error condition.
pub fn bind_request(iq: &Element) -> Result<Option<String>, &'static str> {
    if iq.attr("type") != Some("set") {
        return Err("bad-request");
    }
    let bind = iq.get_child("bind", ns::BIND).ok_or("bad-request")?;
    match bind.get_child("resource", ns::BIND) {
        None => Ok(None),
        Some(r) => {
            let text = r.text();
            let t = text.trim();
            if t.is_empty() {
                return Ok(None);
            }
            // Resourceprep happens when the full JID is built; here only the
            // length limit of RFC 7622 §3.1 is enforced.
            if t.len() > 1023 {
                return Err("bad-request");
            }
            Ok(Some(t.to_owned()))
        }
    }
}

pub fn bind_result(iq: &Element, full_jid: &str) -> Element {
    let mut jid = Element::bare("jid", ns::BIND);
    jid.append_text(full_jid);
    let mut bind = Element::bare("bind", ns::BIND);
    bind.append_child(jid);
    let mut reply = Element::bare("iq", ns::CLIENT);
    if let Some(id) = iq.attr("id") {
        reply.set("id", id);
    }
    reply.set("type", "result");
    reply.append_child(bind);
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::parse_element;

    fn policy() -> StreamPolicy {
        StreamPolicy {
            starttls_available: true,
            secure: false,
            require_encryption: true,
            allow_plain: true,
            ..Default::default()
        }
    }

    #[test]
    fn invitation_features_only_once_secure_and_not_for_guests() {
        let mut p = StreamPolicy {
            invites: true,
            ..policy()
        };
        assert!(!p.features_before_auth().contains("urn:xmpp:invite"));
        p.secure = true;
        let f = p.features_before_auth();
        assert!(f.contains("<register xmlns='urn:xmpp:invite'/>"));
        assert!(f.contains("<register xmlns='urn:xmpp:ibr-token:0'/>"));
        assert!(!f.contains("iq-register"), "open registration is separate");
        p.anonymous_host = true;
        assert!(!p.features_before_auth().contains("urn:xmpp:invite"));
    }

    #[test]
    fn nothing_but_starttls_before_encryption() {
        let p = policy();
        let f = p.features_before_auth();
        assert!(f.contains("<starttls") && f.contains("<required/>"));
        assert!(!f.contains("mechanism"));
        assert!(p.mechanisms().is_empty());
    }

    #[test]
    fn plain_only_when_secure() {
        let mut p = policy();
        p.require_encryption = false;
        assert!(!p.mechanisms().contains(&Mechanism::Plain));
        p.secure = true;
        p.channel_binding = true;
        assert_eq!(
            p.mechanisms(),
            vec![
                Mechanism::ScramSha256Plus,
                Mechanism::ScramSha1Plus,
                Mechanism::ScramSha256,
                Mechanism::ScramSha1,
                Mechanism::Plain
            ]
        );
        p.anonymous_host = true;
        assert_eq!(p.mechanisms(), vec![Mechanism::Anonymous]);
    }

    fn auth(mech: &str, data: &[u8]) -> Element {
        let xml = format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{}</auth>",
            B64.encode(data)
        );
        parse_element(xml.as_bytes(), 4096).unwrap()
    }

    #[test]
    fn unencrypted_plain_only_when_allowed() {
        let mut p = policy();
        p.require_encryption = false;
        // Refused by default: not offered, and an attempt is invalid-mechanism.
        assert!(!p.mechanisms().contains(&Mechanism::Plain));
        let (ex, step) = SaslExchange::begin(&auth("PLAIN", b"\0a\0b"), &p, ChannelBinding::None);
        assert!(ex.is_none());
        assert!(matches!(
            step,
            SaslStep::Failure {
                error: SaslError::InvalidMechanism,
                ..
            }
        ));
        p.allow_unencrypted_plain = true;
        assert!(p.mechanisms().contains(&Mechanism::Plain));
        let (ex, step) = SaslExchange::begin(&auth("PLAIN", b"\0a\0b"), &p, ChannelBinding::None);
        assert!(ex.is_some() && matches!(step, SaslStep::CheckPlain { .. }));
        // Still subject to allow_plain, and never before TLS when TLS is required.
        p.allow_plain = false;
        assert!(!p.mechanisms().contains(&Mechanism::Plain));
        p.allow_plain = true;
        p.require_encryption = true;
        assert!(p.mechanisms().is_empty());
    }

    #[test]
    fn plain_exchange() {
        let mut p = policy();
        p.secure = true;
        let (ex, step) =
            SaslExchange::begin(&auth("PLAIN", b"\0alice\0secret"), &p, ChannelBinding::None);
        let mut ex = ex.unwrap();
        match step {
            SaslStep::CheckPlain { username, password } => {
                assert_eq!(username, "alice");
                assert_eq!(password, "secret");
            }
            s => panic!("{s:?}"),
        }
        assert!(
            matches!(ex.plain_checked(true), SaslStep::Success { username: Some(u), .. } if u == "alice")
        );
        let (ex, _) =
            SaslExchange::begin(&auth("PLAIN", b"\0alice\0wrong"), &p, ChannelBinding::None);
        assert!(matches!(
            ex.unwrap().plain_checked(false),
            SaslStep::Failure {
                error: SaslError::NotAuthorized,
                ..
            }
        ));
    }

    #[test]
    fn unoffered_mechanism_is_invalid() {
        let p = policy(); // not secure: nothing offered
        let (ex, step) = SaslExchange::begin(&auth("PLAIN", b"\0a\0b"), &p, ChannelBinding::None);
        assert!(ex.is_none());
        assert!(matches!(
            step,
            SaslStep::Failure {
                error: SaslError::InvalidMechanism,
                ..
            }
        ));
    }

    #[test]
    fn foreign_authzid_is_refused() {
        let mut p = policy();
        p.secure = true;
        let (ex, step) = SaslExchange::begin(
            &auth("PLAIN", b"bob@localhost\0alice\0pw"),
            &p,
            ChannelBinding::None,
        );
        assert!(ex.is_none());
        assert!(matches!(
            step,
            SaslStep::Failure {
                error: SaslError::InvalidAuthzid,
                ..
            }
        ));
    }

    #[test]
    fn scram_exchange_end_to_end() {
        use aws_lc_rs::{digest, hmac};
        let mut p = policy();
        p.secure = true;
        let creds =
            ScramCredentials::derive(ScramHash::Sha256, "pencil", b"saltsaltsalt", 4096).unwrap();
        let (ex, step) = SaslExchange::begin(
            &auth("SCRAM-SHA-256", b"n,,n=user,r=abc"),
            &p,
            ChannelBinding::None,
        );
        let mut ex = ex.unwrap();
        assert!(matches!(step, SaslStep::LookupScram { ref username, .. } if username == "user"));
        let SaslStep::Send(ch) = ex.credentials(Some(creds)) else {
            panic!()
        };
        let ch = parse_element(ch.as_bytes(), 4096).unwrap();
        let server_first = String::from_utf8(B64.decode(ch.text()).unwrap()).unwrap();
        let mut nonce = "";
        for part in server_first.split(',') {
            if let Some(r) = part.strip_prefix("r=") {
                nonce = r;
            }
        }
        // Client side, computed independently of the server module.
        let mut salted = [0u8; 32];
        aws_lc_rs::pbkdf2::derive(
            aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(4096).unwrap(),
            b"saltsaltsalt",
            b"pencil",
            &mut salted,
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let stored = digest::digest(&digest::SHA256, client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_msg = format!("n=user,r=abc,{server_first},{without_proof}");
        let sig = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, stored.as_ref()),
            auth_msg.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(sig.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        let final_msg = format!("{without_proof},p={}", B64.encode(proof));
        let resp = parse_element(
            format!(
                "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
                B64.encode(final_msg)
            )
            .as_bytes(),
            4096,
        )
        .unwrap();
        assert!(
            matches!(ex.step(&resp), SaslStep::Success { username: Some(u), .. } if u == "user")
        );
    }

    #[test]
    fn bind_requests() {
        let iq = parse_element(b"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>phone</resource></bind></iq>", 4096).unwrap();
        assert_eq!(bind_request(&iq), Ok(Some("phone".into())));
        let iq = parse_element(b"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>", 4096).unwrap();
        assert_eq!(bind_request(&iq), Ok(None));
        let iq = parse_element(b"<iq xmlns='jabber:client' type='get' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>", 4096).unwrap();
        assert_eq!(bind_request(&iq), Err("bad-request"));
    }
}
