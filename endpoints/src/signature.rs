//! Opt-in Standard Webhooks signing for webhook endpoints (azure-messaging.md §7). Dataverse itself signs
//! nothing; a weft endpoint configured with a `whsec_…` secret adds `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` (`v1,<base64 HMAC-SHA256>`) so receivers can use any Standard Webhooks library.
//!
//! Owns the secret type and the signing algorithm only. The HMAC key is the base64 **decoding** of the part
//! after `whsec_` (the opposite of SAS keys).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A Standard Webhooks signing secret. Write-only: `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    key: Vec<u8>,
    text: String,
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

impl SigningSecret {
    /// Parses `whsec_<base64>`; the decoded key must be 24–64 bytes as the spec requires.
    /// Errors never repeat the secret.
    pub fn parse(text: &str) -> Result<SigningSecret, String> {
        let b64 = text.trim().strip_prefix("whsec_").ok_or(
            "webhook signing secret must start with 'whsec_' followed by base64 (Standard Webhooks)",
        )?;
        let key = B64.decode(b64).map_err(|e| {
            format!("webhook signing secret: the part after 'whsec_' is not base64 ({e})")
        })?;
        if !(24..=64).contains(&key.len()) {
            return Err(format!(
                "webhook signing secret decodes to {} bytes; Standard Webhooks requires 24 to 64",
                key.len()
            ));
        }
        Ok(SigningSecret {
            key,
            text: text.trim().to_string(),
        })
    }

    /// The secret as written, for redaction of outgoing error text only.
    pub(crate) fn as_text(&self) -> &str {
        &self.text
    }

    /// The `webhook-signature` entry for `{id}.{timestamp}.{body}`: `v1,<base64(HMAC-SHA256)>`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        // new_from_slice accepts any key length for HMAC; the expect documents an impossible branch.
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two official Standard Webhooks vectors (Go and Rust library tests) verify.
    #[test]
    fn official_vectors() {
        let s = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            s.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let s = SigningSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            s.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    /// Bad secrets are refused with a reason that does not repeat them; Debug redacts.
    #[test]
    fn bad_secrets_and_redaction() {
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!notbase64",
            "whsec_c2hvcnQ=",
        ] {
            let e = SigningSecret::parse(bad).unwrap_err();
            assert!(!e.contains(bad), "{e}");
        }
        let s = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert!(!format!("{s:?}").contains("MfKQ"));
    }
}
