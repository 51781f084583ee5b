//! SCRAM server (RFC 5802, RFC 7677) with `tls-exporter` channel binding (RFC 9266).

use std::mem;
use std::num::NonZeroU32;
use std::sync::OnceLock;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::{digest, hmac, pbkdf2, rand};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::{SaslError, saslprep, utf8};

/// Iteration count used for the decoy answer to unknown users. The store should generate real
/// credentials with the same count: a differing `i=` would reveal which accounts exist.
pub const DEFAULT_ITERATIONS: u32 = 10_000;

/// Salt length for new credentials; also the decoy salt length, for the same reason as above.
const SALT_LEN: usize = 16;

/// The SCRAM hash family. SHA-1 remains because many deployed XMPP clients still only do
/// SCRAM-SHA-1; offering it is a policy decision of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    /// Mechanism name without channel binding, as advertised in `<mechanisms/>`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SCRAM-SHA-1",
            Self::Sha256 => "SCRAM-SHA-256",
        }
    }

    /// Mechanism name of the channel-binding variant.
    pub fn plus_name(self) -> &'static str {
        match self {
            Self::Sha1 => "SCRAM-SHA-1-PLUS",
            Self::Sha256 => "SCRAM-SHA-256-PLUS",
        }
    }

    /// Maps a client-selected mechanism name to `(hash, plus)`, so the stream layer does not
    /// duplicate the name table.
    pub fn from_mechanism(name: &str) -> Option<(Self, bool)> {
        [Self::Sha1, Self::Sha256].into_iter().find_map(|h| {
            if name == h.name() {
                Some((h, false))
            } else if name == h.plus_name() {
                Some((h, true))
            } else {
                None
            }
        })
    }

    fn digest_alg(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &digest::SHA256,
        }
    }

    fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            Self::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => hmac::HMAC_SHA256,
        }
    }

    fn pbkdf2_alg(self) -> pbkdf2::Algorithm {
        match self {
            Self::Sha1 => pbkdf2::PBKDF2_HMAC_SHA1,
            Self::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
        }
    }

    fn len(self) -> usize {
        self.digest_alg().output_len()
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac_alg(), key), data)
            .as_ref()
            .to_vec()
    }

    fn h(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_alg(), data).as_ref().to_vec()
    }
}

/// What the store keeps per user per hash: never the password, never SaltedPassword.
///
/// StoredKey lets us verify a proof without being able to produce one, and ServerKey lets us
/// prove to the client that we know its verifier, so a stolen database does not directly allow
/// logging in (RFC 5802 §9).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    pub hash: ScramHash,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// Keys are redacted: they are password-equivalent for offline guessing.
impl std::fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("hash", &self.hash)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredentials {
    /// Computes the verifier for `password` (SASLprep'ed first, so every client's Unicode
    /// normalisation agrees).
    ///
    /// Errors: `MalformedRequest` if SASLprep rejects the password; `TemporaryAuthFailure` for
    /// `iterations == 0`, which is a server misconfiguration rather than the client's fault.
    pub fn derive(
        hash: ScramHash,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, SaslError> {
        let rounds = NonZeroU32::new(iterations).ok_or(SaslError::TemporaryAuthFailure)?;
        let password = saslprep(password)?;
        let mut salted = vec![0u8; hash.len()];
        pbkdf2::derive(
            hash.pbkdf2_alg(),
            rounds,
            salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hash.hmac(&salted, b"Client Key");
        Ok(Self {
            hash,
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.h(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
        })
    }

    /// [`derive`](Self::derive) with a fresh random salt, for registration and password changes.
    pub fn generate(hash: ScramHash, password: &str, iterations: u32) -> Result<Self, SaslError> {
        let mut salt = [0u8; SALT_LEN];
        rand::fill(&mut salt).map_err(|_| SaslError::TemporaryAuthFailure)?;
        Self::derive(hash, password, &salt, iterations)
    }

    /// Checks a cleartext password (PLAIN) against the SCRAM verifier, so PLAIN needs no extra
    /// stored secret. The comparison is constant-time to avoid leaking StoredKey prefixes.
    pub fn verify_password(&self, password: &str) -> bool {
        Self::derive(self.hash, password, &self.salt, self.iterations)
            .is_ok_and(|c| verify_slices_are_equal(&c.stored_key, &self.stored_key).is_ok())
    }
}

/// What the transport can offer for this stream. Only `tls-exporter` (RFC 9266) is supported:
/// `tls-unique` is undefined for TLS 1.3 and unsafe without extended master secret on 1.2.
/// The data is the 32-byte exporter output for label "EXPORTER-Channel-Binding", empty context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelBinding {
    None,
    TlsExporter(Vec<u8>),
}

/// Result of parsing client-first-message, handed back so the caller can look credentials up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// SASLprep'ed authentication identity, ready to use as a store key.
    pub username: String,
    /// Requested authorization identity (a JID in XMPP), escape-decoded but otherwise raw.
    pub authzid: Option<String>,
}

enum Step {
    Start,
    GotClientFirst {
        /// gs2-header followed by channel-binding data: what `c=` must encode.
        cbind_input: Vec<u8>,
        bare: String,
        client_nonce: String,
        decoy: ScramCredentials,
    },
    SentServerFirst {
        cbind_input: Vec<u8>,
        /// client-first-message-bare "," server-first-message
        auth_prefix: String,
        nonce: String,
        creds: ScramCredentials,
        known: bool,
    },
    Done,
}

/// One server-side SCRAM exchange. Every step consumes the state, so any error (or a call out
/// of order) leaves it finished and later calls fail with `MalformedRequest` instead of
/// continuing a half-verified exchange.
pub struct ScramServer {
    hash: ScramHash,
    plus: bool,
    offered_plus: bool,
    cb: ChannelBinding,
    server_nonce: Option<String>,
    decoy_secret: Option<Vec<u8>>,
    decoy_iterations: u32,
    step: Step,
}

impl ScramServer {
    /// `plus`: the -PLUS mechanism was chosen. `offered_plus`: whether any -PLUS mechanism was
    /// advertised on this stream; needed to detect downgrades, where an attacker strips -PLUS
    /// from `<mechanisms/>` and the client answers with gs2 flag `y`.
    pub fn new(hash: ScramHash, plus: bool, offered_plus: bool, cb: ChannelBinding) -> Self {
        Self {
            hash,
            plus,
            offered_plus,
            cb,
            server_nonce: None,
            decoy_secret: None,
            decoy_iterations: DEFAULT_ITERATIONS,
            step: Step::Start,
        }
    }

    /// Fixes the server nonce part (otherwise 24 random bytes, base64). Only for tests and RFC
    /// vectors: a predictable nonce allows replay. Must be printable ASCII without ','.
    pub fn with_nonce(mut self, server_nonce: String) -> Self {
        self.server_nonce = Some(server_nonce);
        self
    }

    /// Sets how unknown users are answered. The fake salt is keyed by `secret` so outsiders cannot
    /// recompute it, and stable per username so repeated probes look like a real account. The
    /// default secret is random per process; pass a persisted one to stay stable across restarts.
    /// `iterations` must equal what real credentials use.
    pub fn with_decoy(mut self, secret: &[u8], iterations: u32) -> Self {
        self.decoy_secret = Some(secret.to_vec());
        self.decoy_iterations = iterations;
        self
    }

    /// Parses client-first-message and returns the identity so the caller can look up
    /// credentials (possibly asynchronously) before calling [`server_first`](Self::server_first).
    pub fn client_first(&mut self, msg: &[u8]) -> Result<ClientFirst, SaslError> {
        let Step::Start = mem::replace(&mut self.step, Step::Done) else {
            return Err(SaslError::MalformedRequest);
        };
        let text = utf8(msg)?;
        let mut gs2 = text.splitn(3, ',');
        let (Some(flag), Some(authzid), Some(bare)) = (gs2.next(), gs2.next(), gs2.next()) else {
            return Err(SaslError::MalformedRequest);
        };
        let gs2_header = text.strip_suffix(bare).ok_or(SaslError::MalformedRequest)?;
        let authzid = match authzid {
            "" => None,
            a => Some(decode_saslname(
                a.strip_prefix("a=").ok_or(SaslError::MalformedRequest)?,
            )?),
        };
        let mut attrs = bare.split(',');
        let username = attr(attrs.next(), "n=")?;
        let client_nonce = attr(attrs.next(), "r=")?;
        attrs.try_for_each(extension)?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(SaslError::MalformedRequest);
        }
        let username = saslprep(&decode_saslname(username)?)?;
        if username.is_empty() {
            return Err(SaslError::MalformedRequest);
        }
        let mut cbind_input = gs2_header.as_bytes().to_vec();
        cbind_input.extend_from_slice(self.check_cbind_flag(flag)?);

        if self.server_nonce.is_none() {
            let mut raw = [0u8; 24];
            rand::fill(&mut raw).map_err(|_| SaslError::TemporaryAuthFailure)?;
            self.server_nonce = Some(B64.encode(raw));
        }
        let secret = match &self.decoy_secret {
            Some(s) => s.as_slice(),
            None => process_decoy_secret()?,
        };
        let decoy = decoy_credentials(self.hash, secret, self.decoy_iterations, &username);
        self.step = Step::GotClientFirst {
            cbind_input,
            bare: bare.to_owned(),
            client_nonce: client_nonce.to_owned(),
            decoy,
        };
        Ok(ClientFirst { username, authzid })
    }

    /// Produces server-first-message. `None` (unknown user) or credentials for another hash get a
    /// decoy answer indistinguishable from a real account; the exchange then fails at
    /// [`client_final`](Self::client_final) with `NotAuthorized`, like a wrong password.
    ///
    /// Kept infallible for the caller's convenience: called out of order it returns an empty
    /// message and finishes the exchange, so the next step fails with `MalformedRequest`.
    pub fn server_first(&mut self, creds: Option<ScramCredentials>) -> Vec<u8> {
        let Step::GotClientFirst {
            cbind_input,
            bare,
            client_nonce,
            decoy,
        } = mem::replace(&mut self.step, Step::Done)
        else {
            return Vec::new();
        };
        let (creds, known) = match creds {
            Some(c)
                if c.hash == self.hash
                    && c.stored_key.len() == self.hash.len()
                    && c.server_key.len() == self.hash.len() =>
            {
                (c, true)
            }
            _ => (decoy, false),
        };
        let nonce = format!(
            "{client_nonce}{}",
            self.server_nonce.as_deref().unwrap_or_default()
        );
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&creds.salt),
            creds.iterations
        );
        self.step = Step::SentServerFirst {
            cbind_input,
            auth_prefix: format!("{bare},{server_first}"),
            nonce,
            creds,
            known,
        };
        server_first.into_bytes()
    }

    /// Verifies client-final-message (channel binding, nonce, proof) and returns
    /// server-final-message (`v=...`), which the caller sends in `<success/>`.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<Vec<u8>, SaslError> {
        let Step::SentServerFirst {
            cbind_input,
            auth_prefix,
            nonce,
            creds,
            known,
        } = mem::replace(&mut self.step, Step::Done)
        else {
            return Err(SaslError::MalformedRequest);
        };
        let text = utf8(msg)?;
        let (without_proof, proof) = text.rsplit_once(',').ok_or(SaslError::MalformedRequest)?;
        let proof = decode_b64(
            proof
                .strip_prefix("p=")
                .ok_or(SaslError::MalformedRequest)?,
        )?;
        let mut attrs = without_proof.split(',');
        let cbind = attr(attrs.next(), "c=")?;
        let client_nonce = attr(attrs.next(), "r=")?;
        attrs.try_for_each(extension)?;
        decode_b64(cbind)?;
        if proof.len() != self.hash.len() || client_nonce != nonce {
            return Err(SaslError::MalformedRequest);
        }

        let cbind_ok =
            verify_slices_are_equal(cbind.as_bytes(), B64.encode(&cbind_input).as_bytes()).is_ok();
        let auth_message = format!("{auth_prefix},{without_proof}");
        let signature = self.hash.hmac(&creds.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let proof_ok =
            verify_slices_are_equal(&self.hash.h(&client_key), &creds.stored_key).is_ok();
        if !(cbind_ok && proof_ok && known) {
            return Err(SaslError::NotAuthorized);
        }
        let verifier = self.hash.hmac(&creds.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(verifier)).into_bytes())
    }

    /// Applies the gs2 channel-binding policy and returns the cb data `c=` must cover.
    fn check_cbind_flag(&self, flag: &str) -> Result<&[u8], SaslError> {
        match flag {
            "n" if !self.plus => Ok(&[]),
            // 'y' means "I could bind, but you didn't offer it": if we did, someone stripped it.
            "y" if !self.plus && !self.offered_plus => Ok(&[]),
            "n" | "y" => Err(SaslError::NotAuthorized),
            _ => {
                let name = flag
                    .strip_prefix("p=")
                    .filter(|n| {
                        !n.is_empty()
                            && n.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                    })
                    .ok_or(SaslError::MalformedRequest)?;
                match &self.cb {
                    ChannelBinding::TlsExporter(data) if self.plus && name == "tls-exporter" => {
                        Ok(data)
                    }
                    _ => Err(SaslError::NotAuthorized),
                }
            }
        }
    }
}

/// Per-process secret for decoy salts, created lazily so constructing a server stays infallible.
fn process_decoy_secret() -> Result<&'static [u8], SaslError> {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    if let Some(s) = SECRET.get() {
        return Ok(s);
    }
    let mut fresh = [0u8; 32];
    rand::fill(&mut fresh).map_err(|_| SaslError::TemporaryAuthFailure)?;
    Ok(SECRET.get_or_init(|| fresh))
}

/// Deterministic per (secret, hash, username), with keys of the right length so the final step
/// does the same work as for a real user before failing.
fn decoy_credentials(
    hash: ScramHash,
    secret: &[u8],
    iterations: u32,
    username: &str,
) -> ScramCredentials {
    let mac = |label: &str| hash.hmac(secret, format!("{label}\0{username}").as_bytes());
    ScramCredentials {
        hash,
        salt: mac("salt").into_iter().take(SALT_LEN).collect(),
        iterations,
        stored_key: mac("stored"),
        server_key: mac("server"),
    }
}

fn attr<'a>(part: Option<&'a str>, prefix: &str) -> Result<&'a str, SaslError> {
    part.and_then(|p| p.strip_prefix(prefix))
        .ok_or(SaslError::MalformedRequest)
}

/// Unknown extensions are ignored per RFC 5802, but `m=` is reserved for mandatory ones we cannot
/// understand, so it must fail.
fn extension(part: &str) -> Result<(), SaslError> {
    let mut b = part.bytes();
    match (b.next(), b.next()) {
        (Some(name), Some(b'=')) if name.is_ascii_alphabetic() && name != b'm' => Ok(()),
        _ => Err(SaslError::MalformedRequest),
    }
}

fn decode_b64(s: &str) -> Result<Vec<u8>, SaslError> {
    B64.decode(s).map_err(|_| SaslError::MalformedRequest)
}

/// saslname: only `=2C` and `=3D` are valid escapes; anything else could smuggle a different
/// identity past naive comparisons.
fn decode_saslname(s: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some((head, tail)) = rest.split_once('=') {
        out.push_str(head);
        rest = if let Some(t) = tail.strip_prefix("2C") {
            out.push(',');
            t
        } else if let Some(t) = tail.strip_prefix("3D") {
            out.push('=');
            t
        } else {
            return Err(SaslError::MalformedRequest);
        };
    }
    out.push_str(rest);
    if out.is_empty() || out.contains('\0') {
        return Err(SaslError::MalformedRequest);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPORTER: &[u8] = &[7u8; 32];

    fn creds(hash: ScramHash, password: &str) -> ScramCredentials {
        ScramCredentials::derive(hash, password, b"0123456789abcdef", 4096).unwrap()
    }

    /// Runs an exchange whose client messages are given verbatim.
    fn check_vector(
        hash: ScramHash,
        salt_b64: &str,
        snonce: &str,
        client_first: &str,
        server_first: &str,
        client_final: &str,
        server_final: &str,
    ) {
        let salt = B64.decode(salt_b64).unwrap();
        let creds = ScramCredentials::derive(hash, "pencil", &salt, 4096).unwrap();
        assert!(creds.verify_password("pencil"));
        let mut s = ScramServer::new(hash, false, false, ChannelBinding::None)
            .with_nonce(snonce.to_owned());
        let cf = s.client_first(client_first.as_bytes()).unwrap();
        assert_eq!(
            cf,
            ClientFirst {
                username: "user".into(),
                authzid: None
            }
        );
        assert_eq!(
            String::from_utf8(s.server_first(Some(creds))).unwrap(),
            server_first
        );
        assert_eq!(
            String::from_utf8(s.client_final(client_final.as_bytes()).unwrap()).unwrap(),
            server_final
        );
        // The exchange is over; nothing may continue it.
        assert_eq!(
            s.client_final(client_final.as_bytes()),
            Err(SaslError::MalformedRequest)
        );
    }

    #[test]
    fn rfc5802_sha1_vector() {
        check_vector(
            ScramHash::Sha1,
            "QSXCR+Q6sek8bf92",
            "3rfcNHYJY1ZVvWVs7j",
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        );
    }

    #[test]
    fn rfc7677_sha256_vector() {
        check_vector(
            ScramHash::Sha256,
            "W22ZaJ0SNY7soEsUEjb6gQ==",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        );
    }

    /// Hand-written client side (RFC 5802 §3), independent of the server's parsing code.
    fn hand_client_final(
        hash: ScramHash,
        password: &str,
        bare: &str,
        server_first: &[u8],
        cbind_input: &[u8],
    ) -> String {
        let sf = std::str::from_utf8(server_first).unwrap();
        let mut it = sf.split(',');
        let nonce = it.next().unwrap().strip_prefix("r=").unwrap();
        let salt = B64
            .decode(it.next().unwrap().strip_prefix("s=").unwrap())
            .unwrap();
        let i: u32 = it
            .next()
            .unwrap()
            .strip_prefix("i=")
            .unwrap()
            .parse()
            .unwrap();
        let mut salted = vec![0; hash.len()];
        let rounds = NonZeroU32::new(i).unwrap();
        pbkdf2::derive(
            hash.pbkdf2_alg(),
            rounds,
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hash.hmac(&salted, b"Client Key");
        let without_proof = format!("c={},r={nonce}", B64.encode(cbind_input));
        let auth = format!("{bare},{sf},{without_proof}");
        let sig = hash.hmac(&hash.h(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    fn run_hand(
        mut s: ScramServer,
        gs2: &str,
        cb: &[u8],
        stored: Option<ScramCredentials>,
        password: &str,
    ) -> Result<Vec<u8>, SaslError> {
        let bare = "n=user,r=abcdefghijkl";
        s.client_first(format!("{gs2}{bare}").as_bytes())?;
        let sf = s.server_first(stored);
        let mut cbind = gs2.as_bytes().to_vec();
        cbind.extend_from_slice(cb);
        let cfinal = hand_client_final(s.hash, password, bare, &sf, &cbind);
        s.client_final(cfinal.as_bytes())
    }

    #[test]
    fn hand_client_outcomes() {
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            let new = |plus, offered| {
                ScramServer::new(
                    hash,
                    plus,
                    offered,
                    ChannelBinding::TlsExporter(EXPORTER.into()),
                )
            };
            let ok = run_hand(new(false, true), "n,,", &[], Some(creds(hash, "pw")), "pw");
            assert!(ok.unwrap().starts_with(b"v="));
            let wrong = run_hand(new(false, true), "n,,", &[], Some(creds(hash, "pw")), "px");
            assert_eq!(wrong, Err(SaslError::NotAuthorized));
            let unknown = run_hand(new(false, true), "n,,", &[], None, "pw");
            assert_eq!(unknown, Err(SaslError::NotAuthorized));
            let gs2 = "p=tls-exporter,,";
            let plus = run_hand(
                new(true, true),
                gs2,
                EXPORTER,
                Some(creds(hash, "pw")),
                "pw",
            );
            assert!(plus.unwrap().starts_with(b"v="));
            let bad_cb = run_hand(
                new(true, true),
                gs2,
                &[8; 32],
                Some(creds(hash, "pw")),
                "pw",
            );
            assert_eq!(bad_cb, Err(SaslError::NotAuthorized));
            // Credentials for the other hash must not be usable.
            let other = match hash {
                ScramHash::Sha1 => ScramHash::Sha256,
                ScramHash::Sha256 => ScramHash::Sha1,
            };
            let mixed = run_hand(
                new(false, false),
                "n,,",
                &[],
                Some(creds(other, "pw")),
                "pw",
            );
            assert_eq!(mixed, Err(SaslError::NotAuthorized));
        }
    }

    #[test]
    fn gs2_channel_binding_policy() {
        let cb = || ChannelBinding::TlsExporter(EXPORTER.into());
        let first = |plus, offered, cb, msg: &str| {
            ScramServer::new(ScramHash::Sha256, plus, offered, cb).client_first(msg.as_bytes())
        };
        let na = Err(SaslError::NotAuthorized);
        let mal = Err(SaslError::MalformedRequest);
        // Downgrade: client could bind but saw no -PLUS, yet we offered one.
        assert_eq!(first(false, true, cb(), "y,,n=user,r=abc"), na);
        assert!(first(false, false, ChannelBinding::None, "y,,n=user,r=abc").is_ok());
        assert_eq!(first(true, true, cb(), "n,,n=user,r=abc"), na);
        assert_eq!(first(true, true, cb(), "y,,n=user,r=abc"), na);
        assert_eq!(first(false, true, cb(), "p=tls-exporter,,n=user,r=abc"), na);
        assert_eq!(first(true, true, cb(), "p=tls-unique,,n=user,r=abc"), na);
        let none = ChannelBinding::None;
        assert_eq!(first(true, true, none, "p=tls-exporter,,n=user,r=abc"), na);
        assert_eq!(first(true, true, cb(), "p=tls_exp!,,n=user,r=abc"), mal);
        assert_eq!(first(true, true, cb(), "p=,,n=user,r=abc"), mal);
        assert_eq!(first(true, true, cb(), "x,,n=user,r=abc"), mal);
        assert!(first(true, true, cb(), "p=tls-exporter,,n=user,r=abc").is_ok());
    }

    #[test]
    fn client_first_parsing() {
        let parse = |msg: &[u8]| {
            ScramServer::new(ScramHash::Sha1, false, false, ChannelBinding::None).client_first(msg)
        };
        let cf = parse(b"n,a=juliet=2C=3Dx,n=us=3Der=2C,r=abc,x=ext").unwrap();
        assert_eq!(cf.username, "us=er,");
        assert_eq!(cf.authzid.as_deref(), Some("juliet,=x"));
        // SASLprep maps the soft hyphen to nothing.
        assert_eq!(
            parse("n,,n=us\u{AD}er,r=abc".as_bytes()).unwrap().username,
            "user"
        );
        let bad: &[&[u8]] = &[
            b"",
            b"n",
            b"n,",
            b"n,,",
            b"n,,n=",
            b"n,,n=,r=abc",
            b"n,,n=user",
            b"n,,n=user,r=",
            b"n,,n=user,r=a b",
            b"n,,r=abc,n=user",
            b"n,,m=x,n=user,r=abc",
            b"n,,n=user,r=abc,m=x",
            b"n,,n=user,r=abc,",
            b"n,,n=u=2Cx=41,r=abc",
            b"n,,n=u=2c,r=abc",
            b"n,,n=u=,r=abc",
            b"n,,n=\xc2\xad,r=abc",
            b"n,,n=\xff\xfe,r=abc",
            b"n,,n=us\x07er,r=abc",
            b"n,b=x,n=user,r=abc",
            b"n,a=,n=user,r=abc",
            b"n,a=x=,n=user,r=abc",
            b"\0\0\0",
        ];
        for m in bad {
            assert_eq!(parse(m), Err(SaslError::MalformedRequest), "{m:?}");
        }
        let mut long = b"n,,n=user,r=".to_vec();
        long.resize(5000, b'a');
        assert_eq!(parse(&long), Err(SaslError::MalformedRequest));
    }

    #[test]
    fn client_final_malformed() {
        let setup = || {
            let mut s = ScramServer::new(ScramHash::Sha1, false, false, ChannelBinding::None)
                .with_nonce("SRV".into());
            s.client_first(b"n,,n=user,r=CLI").unwrap();
            s.server_first(Some(creds(ScramHash::Sha1, "pw")));
            s
        };
        let p = B64.encode([0u8; 20]);
        let bad = [
            String::new(),
            "c=biws".into(),
            "c=biws,r=CLISRV".into(),
            format!("c=biws,p={p}"),
            format!("r=CLISRV,c=biws,p={p}"),
            format!("c=biws,r=CLI,p={p}"),
            format!("c=biws,r=CLISRVX,p={p}"),
            format!("c=biws,r=OTHERSRV,p={p}"),
            format!("c=b!ws,r=CLISRV,p={p}"),
            "c=biws,r=CLISRV,p=AAAA".into(),
            "c=biws,r=CLISRV,p=***".into(),
            format!("c=biws,r=CLISRV,m=x,p={p}"),
            format!("c=biws,r=CLISRV,,p={p}"),
            format!("c=biws,r=CLISRV,p={p},"),
        ];
        for m in &bad {
            assert_eq!(
                setup().client_final(m.as_bytes()),
                Err(SaslError::MalformedRequest),
                "{m}"
            );
        }
        assert_eq!(
            setup().client_final(b"\xff\xfe"),
            Err(SaslError::MalformedRequest)
        );
        // Well-formed but wrong c= (claims 'y') or wrong proof.
        let y = format!("c={},r=CLISRV,p={p}", B64.encode("y,,"));
        assert_eq!(
            setup().client_final(y.as_bytes()),
            Err(SaslError::NotAuthorized)
        );
        let zero = format!("c=biws,r=CLISRV,x=ext,p={p}");
        assert_eq!(
            setup().client_final(zero.as_bytes()),
            Err(SaslError::NotAuthorized)
        );
    }

    #[test]
    fn out_of_order_never_panics() {
        let new = || ScramServer::new(ScramHash::Sha256, false, false, ChannelBinding::None);
        let mut s = new();
        assert_eq!(
            s.client_final(b"c=biws,r=a,p=AAAA"),
            Err(SaslError::MalformedRequest)
        );
        assert_eq!(
            s.client_first(b"n,,n=user,r=abc"),
            Err(SaslError::MalformedRequest)
        );
        let mut s = new();
        assert!(s.server_first(None).is_empty());
        let mut s = new();
        s.client_first(b"n,,n=user,r=abc").unwrap();
        assert_eq!(
            s.client_first(b"n,,n=user,r=abc"),
            Err(SaslError::MalformedRequest)
        );
        assert!(s.server_first(None).is_empty());
        let mut s = new();
        assert!(s.client_first(b"garbage").is_err());
        assert!(s.server_first(None).is_empty());
    }

    #[test]
    fn unknown_user_answer_looks_real() {
        let sf = |user: &str| {
            let mut s = ScramServer::new(ScramHash::Sha256, false, false, ChannelBinding::None)
                .with_nonce("S".into())
                .with_decoy(b"k", 4096);
            s.client_first(format!("n,,n={user},r=C").as_bytes())
                .unwrap();
            String::from_utf8(s.server_first(None)).unwrap()
        };
        assert_eq!(sf("ghost"), sf("ghost"));
        assert_ne!(sf("ghost"), sf("spook"));
        let real = String::from_utf8({
            let mut s = ScramServer::new(ScramHash::Sha256, false, false, ChannelBinding::None)
                .with_nonce("S".into());
            s.client_first(b"n,,n=user,r=C").unwrap();
            s.server_first(Some(
                ScramCredentials::generate(ScramHash::Sha256, "pw", 4096).unwrap(),
            ))
        })
        .unwrap();
        // Same shape: salt length and iteration count.
        assert_eq!(real.len(), sf("ghost").len());
        // Process-default secret is stable too.
        let default = || {
            let mut s = ScramServer::new(ScramHash::Sha1, false, false, ChannelBinding::None);
            s.client_first(b"n,,n=ghost,r=C").unwrap();
            let m = String::from_utf8(s.server_first(None)).unwrap();
            m.split_once(",s=").unwrap().1.to_owned()
        };
        assert_eq!(default(), default());
        assert!(default().ends_with(&format!(",i={DEFAULT_ITERATIONS}")));
    }

    #[test]
    fn random_nonce_is_24_bytes() {
        let mut s = ScramServer::new(ScramHash::Sha1, false, false, ChannelBinding::None);
        s.client_first(b"n,,n=user,r=C").unwrap();
        let sf = String::from_utf8(s.server_first(None)).unwrap();
        let nonce = sf.split(',').next().unwrap().strip_prefix("r=C").unwrap();
        assert_eq!(B64.decode(nonce).unwrap().len(), 24);
    }

    #[test]
    fn credentials() {
        let c = ScramCredentials::generate(ScramHash::Sha256, "pencil", 4096).unwrap();
        assert_eq!(c.salt.len(), SALT_LEN);
        assert_eq!((c.stored_key.len(), c.server_key.len()), (32, 32));
        assert!(c.verify_password("pencil"));
        assert!(!c.verify_password("pencil "));
        assert!(!c.verify_password(""));
        assert!(!c.verify_password("pen\u{7}cil"));
        // SASLprep: non-ASCII space maps to ASCII space.
        let c = creds(ScramHash::Sha1, "a b");
        assert!(c.verify_password("a\u{A0}b"));
        assert_eq!(
            ScramCredentials::derive(ScramHash::Sha1, "pw", b"salt", 0),
            Err(SaslError::TemporaryAuthFailure)
        );
        assert!(!format!("{c:?}").contains("stored_key"));
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(ScramHash::Sha1.name(), "SCRAM-SHA-1");
        assert_eq!(ScramHash::Sha256.name(), "SCRAM-SHA-256");
        assert_eq!(
            ScramHash::from_mechanism("SCRAM-SHA-256-PLUS"),
            Some((ScramHash::Sha256, true))
        );
        assert_eq!(
            ScramHash::from_mechanism("SCRAM-SHA-1"),
            Some((ScramHash::Sha1, false))
        );
        assert_eq!(ScramHash::from_mechanism("PLAIN"), None);
    }

    /// Deterministic garbage (xorshift) through every step: results don't matter, panics do.
    #[test]
    fn fuzz_no_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"nyp=,ar=mcs2C3D\0\xff\xc2tls-exporterAB+/";
        let valid_first = b"p=tls-exporter,a=x,n=user,r=abc";
        let valid_final = b"c=cD10bHMtZXhwb3J0ZXIsYT14LA==,r=abcSRV,p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        for round in 0..3000 {
            let len = (next() % 48) as usize;
            let mut msg: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if round % 3 == 0 {
                msg = valid_first[..(next() as usize % valid_first.len())].to_vec();
            }
            let mut s = ScramServer::new(
                ScramHash::Sha1,
                round % 2 == 0,
                true,
                ChannelBinding::TlsExporter(EXPORTER.into()),
            )
            .with_nonce("SRV".into());
            let _ = s.client_first(&msg);
            let _ = s.client_final(&msg);
            let mut s = ScramServer::new(ScramHash::Sha1, true, true, ChannelBinding::None)
                .with_nonce("SRV".into());
            let _ = s.client_first(valid_first);
            let _ = s.server_first(None);
            if round % 2 == 0 {
                msg = valid_final[..(next() as usize % valid_final.len())].to_vec();
            }
            let _ = s.client_final(&msg);
        }
    }

    mod rsasl_client {
        use super::*;
        use rsasl::callback::{Context, Request, SessionCallback, SessionData};
        use rsasl::mechanisms::scram::{
            SCRAM_SHA1, SCRAM_SHA1_PLUS, SCRAM_SHA256, SCRAM_SHA256_PLUS,
        };
        use rsasl::prelude::{
            ChannelBindingCallback, Mechname, Registry, SASLClient, SASLConfig, SessionError,
        };
        use rsasl::property::{AuthId, AuthzId, Password};

        struct Creds {
            password: &'static str,
            can_bind: bool,
        }
        impl SessionCallback for Creds {
            fn callback(
                &self,
                _: &SessionData,
                _: &Context,
                request: &mut Request<'_>,
            ) -> Result<(), SessionError> {
                request
                    .satisfy::<AuthId>("juliet")?
                    .satisfy::<Password>(self.password.as_bytes())?
                    .satisfy::<AuthzId>("romeo@example.net")?;
                Ok(())
            }
            fn enable_channel_binding(&self) -> bool {
                self.can_bind
            }
        }

        struct Exporter(Vec<u8>);
        impl ChannelBindingCallback for Exporter {
            fn get_cb_data(&self, cbname: &str) -> Option<&[u8]> {
                (cbname == "tls-exporter").then_some(self.0.as_slice())
            }
        }

        /// Drives rsasl's client against our server. `offered` is what the client is told is
        /// on offer; the server side is configured independently so downgrades can be staged.
        fn exchange(
            hash: ScramHash,
            offered: &str,
            client: (&'static str, bool, &[u8]),
            server: (bool, bool, &[u8]),
        ) -> Result<(), SaslError> {
            let (password, can_bind, client_cb) = client;
            let (plus, offered_plus, server_cb) = server;
            let mechs: &'static [rsasl::prelude::Mechanism] = Box::leak(Box::new([
                SCRAM_SHA1,
                SCRAM_SHA1_PLUS,
                SCRAM_SHA256,
                SCRAM_SHA256_PLUS,
            ]));
            let config = SASLConfig::builder()
                .with_registry(Registry::with_mechanisms(mechs))
                .with_callback(Creds { password, can_bind })
                .unwrap();
            let mech = Mechname::parse(offered.as_bytes()).unwrap();
            let mut session = SASLClient::with_cb(config, Exporter(client_cb.to_vec()))
                .start_suggested(&[mech])
                .unwrap();
            assert_eq!(session.get_mechname().as_str(), offered);

            let mut s = ScramServer::new(
                hash,
                plus,
                offered_plus,
                ChannelBinding::TlsExporter(server_cb.to_vec()),
            );
            let mut out = Vec::new();
            session.step(None, &mut out).unwrap();
            let cf = s.client_first(&out)?;
            assert_eq!(cf.username, "juliet");
            assert_eq!(cf.authzid.as_deref(), Some("romeo@example.net"));
            let stored = ScramCredentials::generate(hash, "s3cr3t ü", 4096).unwrap();
            let sf = s.server_first(Some(stored));
            let mut out = Vec::new();
            session.step(Some(&sf), &mut out).unwrap();
            let v = s.client_final(&out)?;
            // rsasl verifies the server signature here: mutual authentication.
            let state = session.step(Some(&v), &mut Vec::new()).unwrap();
            assert!(state.is_finished());
            Ok(())
        }

        #[test]
        fn rsasl_round_trips() {
            for (hash, plain, plus) in [
                (ScramHash::Sha1, "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS"),
                (ScramHash::Sha256, "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"),
            ] {
                let ok = ("s3cr3t ü", false, &[][..]);
                assert_eq!(exchange(hash, plain, ok, (false, false, EXPORTER)), Ok(()));
                // 'n': the client cannot bind, so it is no downgrade even though we offered.
                assert_eq!(exchange(hash, plain, ok, (false, true, EXPORTER)), Ok(()));
                let wrong = ("s3cr3t u", false, &[][..]);
                assert_eq!(
                    exchange(hash, plain, wrong, (false, false, EXPORTER)),
                    Err(SaslError::NotAuthorized)
                );
                let bind = ("s3cr3t ü", true, EXPORTER);
                assert_eq!(exchange(hash, plus, bind, (true, true, EXPORTER)), Ok(()));
                let bind_other = ("s3cr3t ü", true, &[9u8; 32][..]);
                assert_eq!(
                    exchange(hash, plus, bind_other, (true, true, EXPORTER)),
                    Err(SaslError::NotAuthorized)
                );
                // Stripped -PLUS: a binding-capable client sees only the plain mechanism.
                assert_eq!(
                    exchange(hash, plain, bind, (false, true, EXPORTER)),
                    Err(SaslError::NotAuthorized)
                );
                assert_eq!(
                    exchange(hash, plain, bind, (false, false, EXPORTER)),
                    Ok(())
                );
            }
        }
    }
}
