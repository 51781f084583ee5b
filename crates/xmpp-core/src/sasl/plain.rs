//! PLAIN (RFC 4616). Only ever offered over TLS; verification goes through
//! [`ScramCredentials::verify_password`](super::ScramCredentials::verify_password) so the store
//! never needs anything but SCRAM keys.

use super::{SaslError, saslprep, utf8};

/// A parsed PLAIN message.
///
/// `authcid` is already SASLprep'ed so it can be used as a store key exactly like the username
/// from SCRAM; `password` is left raw because `verify_password` applies SASLprep itself, so a
/// password that SASLprep rejects ends as an ordinary `NotAuthorized` there. `authzid` is left
/// raw because in XMPP it is a JID, which has its own (PRECIS) rules applied by the caller.
#[derive(Clone, PartialEq, Eq)]
pub struct Plain {
    pub authzid: Option<String>,
    pub authcid: String,
    pub password: String,
}

/// Redacts the password so a stray `{:?}` in a log line cannot leak it.
impl std::fmt::Debug for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plain")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parses `[authzid] NUL authcid NUL passwd`.
///
/// Every structural problem is `MalformedRequest`: the password has not been looked at yet, so
/// there is nothing to hide behind `NotAuthorized`.
pub fn parse_plain(msg: &[u8]) -> Result<Plain, SaslError> {
    let text = utf8(msg)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::MalformedRequest);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(SaslError::MalformedRequest);
    }
    let authcid = saslprep(authcid)?;
    if authcid.is_empty() {
        return Err(SaslError::MalformedRequest);
    }
    Ok(Plain {
        authzid: (!authzid.is_empty()).then(|| authzid.to_owned()),
        authcid,
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_without_authzid() {
        let p = parse_plain(b"\0juliet\0r0m30").unwrap();
        assert_eq!(p.authzid, None);
        assert_eq!(p.authcid, "juliet");
        assert_eq!(p.password, "r0m30");
        assert!(!format!("{p:?}").contains("r0m30"));
    }

    #[test]
    fn plain_with_authzid_and_saslprep() {
        // U+00AD (soft hyphen) is mapped to nothing by SASLprep.
        let p = parse_plain("juliet@example.com\0jul\u{AD}iet\0pass word".as_bytes()).unwrap();
        assert_eq!(p.authzid.as_deref(), Some("juliet@example.com"));
        assert_eq!(p.authcid, "juliet");
        assert_eq!(p.password, "pass word");
    }

    #[test]
    fn plain_malformed() {
        let bad: &[&[u8]] = &[
            b"",
            b"\0",
            b"\0\0",
            b"\0user\0",
            b"\0\0pass",
            b"user\0pass",
            b"a\0b\0c\0d",
            b"\0\xff\xfe\0pass",
            b"\0\xc2\0pass",
            b"\0\xc2\xad\0pass",
            b"\0us\x07er\0pass",
            b"garbage",
        ];
        for m in bad {
            assert_eq!(parse_plain(m), Err(SaslError::MalformedRequest), "{m:?}");
        }
        let mut long = b"\0user\0".to_vec();
        long.resize(5000, b'x');
        assert_eq!(parse_plain(&long), Err(SaslError::MalformedRequest));
    }

    #[test]
    fn plain_from_independent_client() {
        use rsasl::callback::{Context, Request, SessionCallback, SessionData};
        use rsasl::prelude::{Mechname, SASLClient, SASLConfig, SessionError};
        use rsasl::property::{AuthId, AuthzId, Password};

        struct Creds;
        impl SessionCallback for Creds {
            fn callback(
                &self,
                _: &SessionData,
                _: &Context,
                request: &mut Request<'_>,
            ) -> Result<(), SessionError> {
                request
                    .satisfy::<AuthId>("romeo")?
                    .satisfy::<Password>(b"s3cr3t")?
                    .satisfy::<AuthzId>("juliet@example.com")?;
                Ok(())
            }
        }
        let config = SASLConfig::builder()
            .with_defaults()
            .with_callback(Creds)
            .unwrap();
        let mech = Mechname::parse(b"PLAIN").unwrap();
        let mut session = SASLClient::new(config).start_suggested(&[mech]).unwrap();
        let mut out = Vec::new();
        session.step(None, &mut out).unwrap();
        let p = parse_plain(&out).unwrap();
        assert_eq!(p.authzid.as_deref(), Some("juliet@example.com"));
        assert_eq!(p.authcid, "romeo");
        assert_eq!(p.password, "s3cr3t");
    }
}
