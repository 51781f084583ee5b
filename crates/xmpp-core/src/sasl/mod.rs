//! Sans-IO SASL server core (RFC 6120 §6): SCRAM-SHA-1/-256 with optional `tls-exporter`
//! channel binding, and PLAIN.
//!
//! Nothing here touches sockets or the credential store. The c2s state machine feeds in the
//! decoded (base64-stripped) payloads of `<auth/>`/`<response/>`, performs the credential lookup
//! itself (it may be asynchronous), and maps a [`SaslError`] to a `<failure/>` via
//! [`SaslError::condition`]. Keeping lookup outside lets this code stay synchronous and fully
//! testable against RFC vectors.

mod plain;
mod scram;

pub use plain::{Plain, parse_plain};
pub use scram::{
    ChannelBinding, ClientFirst, DEFAULT_ITERATIONS, ScramCredentials, ScramHash, ScramServer,
};

/// Upper bound on any single client SASL message. Legitimate messages are a few hundred bytes;
/// the bound keeps a hostile client from making us parse or hash megabytes per attempt.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// The RFC 6120 §6.5 failure conditions, so the stream layer can emit the right
/// `<failure><condition/></failure>` without knowing mechanism internals.
///
/// Deliberately coarse: every credential problem (wrong password, unknown user, channel-binding
/// mismatch) collapses into [`SaslError::NotAuthorized`] so a client cannot tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslError {
    Aborted,
    AccountDisabled,
    CredentialsExpired,
    EncryptionRequired,
    IncorrectEncoding,
    InvalidAuthzid,
    InvalidMechanism,
    MalformedRequest,
    MechanismTooWeak,
    NotAuthorized,
    TemporaryAuthFailure,
}

impl SaslError {
    /// The element name of the defined condition, as it appears inside `<failure/>`.
    pub fn condition(&self) -> &'static str {
        match self {
            Self::Aborted => "aborted",
            Self::AccountDisabled => "account-disabled",
            Self::CredentialsExpired => "credentials-expired",
            Self::EncryptionRequired => "encryption-required",
            Self::IncorrectEncoding => "incorrect-encoding",
            Self::InvalidAuthzid => "invalid-authzid",
            Self::InvalidMechanism => "invalid-mechanism",
            Self::MalformedRequest => "malformed-request",
            Self::MechanismTooWeak => "mechanism-too-weak",
            Self::NotAuthorized => "not-authorized",
            Self::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

impl std::fmt::Display for SaslError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SASL failure: {}", self.condition())
    }
}

impl std::error::Error for SaslError {}

/// Shared front door for client input: enforces the size bound and UTF-8 before any parsing,
/// so each mechanism parser only ever sees bounded, valid text.
fn utf8(msg: &[u8]) -> Result<&str, SaslError> {
    if msg.is_empty() || msg.len() > MAX_MESSAGE_LEN {
        return Err(SaslError::MalformedRequest);
    }
    std::str::from_utf8(msg).map_err(|_| SaslError::MalformedRequest)
}

/// SASLprep (RFC 4013) for stored strings, so that visually identical Unicode input maps to the
/// same username/password on every client.
fn saslprep(s: &str) -> Result<String, SaslError> {
    stringprep::saslprep(s)
        .map(|c| c.into_owned())
        .map_err(|_| SaslError::MalformedRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_rfc6120_names() {
        assert_eq!(SaslError::NotAuthorized.condition(), "not-authorized");
        assert_eq!(SaslError::MalformedRequest.condition(), "malformed-request");
        assert_eq!(
            SaslError::TemporaryAuthFailure.condition(),
            "temporary-auth-failure"
        );
        assert_eq!(
            SaslError::NotAuthorized.to_string(),
            "SASL failure: not-authorized"
        );
    }

    #[test]
    fn utf8_bounds() {
        assert_eq!(utf8(b""), Err(SaslError::MalformedRequest));
        assert_eq!(utf8(&[0xff, 0xfe]), Err(SaslError::MalformedRequest));
        assert_eq!(
            utf8(&vec![b'a'; MAX_MESSAGE_LEN + 1]),
            Err(SaslError::MalformedRequest)
        );
        assert_eq!(utf8(b"ok"), Ok("ok"));
    }
}
