//! Webhook signatures as the Standard Webhooks specification (standardwebhooks.com) defines
//! them, for the workflows (which sign) and any Rust receiver (which verifies): the secret is
//! `whsec_` + base64 of its key bytes; a message is signed with HMAC-SHA256 over
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, sent as `webhook-signature: v1,<base64>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How a secret is shown (the spec's symmetric-key prefix).
pub const SECRET_PREFIX: &str = "whsec_";
/// Key bytes of the secrets Talis makes.
pub const SECRET_BYTES: usize = 32;
/// Key lengths the spec allows (24 to 64 bytes).
pub const SECRET_BYTES_RANGE: std::ops::RangeInclusive<usize> = 24..=64;
/// How far a receiver should accept `webhook-timestamp` from its clock (the spec's libraries:
/// 5 minutes), against replays.
pub const TOLERANCE_SECS: i64 = 5 * 60;
/// The signature scheme's version tag (symmetric).
const VERSION: &str = "v1";

/// A webhook's signing key. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// A secret from key bytes (e.g. 32 random bytes).
    pub fn from_bytes(key: [u8; SECRET_BYTES]) -> Self {
        Secret(key.to_vec())
    }

    /// Reads `whsec_<base64>` (the prefix is optional, as in the spec's libraries).
    pub fn parse(s: &str) -> Result<Self, String> {
        let key = B64
            .decode(s.strip_prefix(SECRET_PREFIX).unwrap_or(s))
            .map_err(|e| format!("secret is not base64: {e}"))?;
        if !SECRET_BYTES_RANGE.contains(&key.len()) {
            return Err(format!(
                "secret has {} key bytes, expected {} to {}",
                key.len(),
                SECRET_BYTES_RANGE.start(),
                SECRET_BYTES_RANGE.end()
            ));
        }
        Ok(Secret(key))
    }

    /// `whsec_<base64>`: the form shown to the owner once, and stored.
    pub fn encode(&self) -> String {
        format!("{SECRET_PREFIX}{}", B64.encode(&self.0))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// The `webhook-signature` header value: `v1,<base64 HMAC-SHA256>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("{VERSION},{}", B64.encode(self.mac(id, timestamp, body)))
    }

    /// Whether any `v1` signature of the space-separated `header` signs this message (compared
    /// in constant time), and the timestamp is within `tolerance_secs` of `now_secs`.
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        body: &[u8],
        header: &str,
        now_secs: i64,
        tolerance_secs: i64,
    ) -> bool {
        let Ok(ts) = timestamp.parse::<i64>() else {
            return false;
        };
        if (now_secs - ts).abs() > tolerance_secs {
            return false;
        }
        let expected = self.mac(id, ts, body);
        header
            .split(' ')
            .filter_map(|s| s.split_once(','))
            .filter(|(v, _)| *v == VERSION)
            .filter_map(|(_, sig)| B64.decode(sig).ok())
            .fold(false, |found, sig| {
                found | bool::from(sig.as_slice().ct_eq(&expected))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the Standard Webhooks reference libraries.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1649367553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn signs_the_reference_vector() {
        let s = Secret::parse(SECRET).unwrap();
        assert_eq!(s.sign(ID, TS, BODY), SIGNATURE);
        assert_eq!(s.encode(), SECRET);
    }

    #[test]
    fn verifies_among_several_signatures_and_refuses_the_rest() {
        let s = Secret::parse(SECRET).unwrap();
        let ts = TS.to_string();
        let other = "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=";
        assert!(s.verify(ID, &ts, BODY, SIGNATURE, TS, TOLERANCE_SECS));
        assert!(s.verify(
            ID,
            &ts,
            BODY,
            &format!("{other} {SIGNATURE} v1a,xyz"),
            TS,
            TOLERANCE_SECS
        ));
        assert!(!s.verify(ID, &ts, BODY, other, TS, TOLERANCE_SECS));
        assert!(!s.verify(ID, &ts, b"{}", SIGNATURE, TS, TOLERANCE_SECS));
        assert!(!s.verify("msg_other", &ts, BODY, SIGNATURE, TS, TOLERANCE_SECS));
        // Too old or too far ahead: a replay.
        assert!(!s.verify(
            ID,
            &ts,
            BODY,
            SIGNATURE,
            TS + TOLERANCE_SECS + 1,
            TOLERANCE_SECS
        ));
        assert!(!s.verify(
            ID,
            &ts,
            BODY,
            SIGNATURE,
            TS - TOLERANCE_SECS - 1,
            TOLERANCE_SECS
        ));
        assert!(!s.verify(ID, "x", BODY, SIGNATURE, TS, TOLERANCE_SECS));
        // The version tag counts.
        let unversioned = SIGNATURE.replace("v1,", "v2,");
        assert!(!s.verify(ID, &ts, BODY, &unversioned, TS, TOLERANCE_SECS));
    }

    #[test]
    fn secrets_are_whsec_base64_of_24_to_64_bytes_and_never_debug_printed() {
        let s = Secret::from_bytes([7; SECRET_BYTES]);
        let shown = s.encode();
        assert!(shown.starts_with(SECRET_PREFIX));
        assert_eq!(Secret::parse(&shown).unwrap(), s);
        assert!(!format!("{s:?}").contains(&shown[6..]));
        assert!(Secret::parse("whsec_AAAA").is_err());
        assert!(Secret::parse("whsec_!!").is_err());
    }
}
