//! `Livepeer-Signature: t=<ms>,v1=<hex HMAC-SHA256(raw body, shared secret)>`.
//!
//! The timestamp is not part of the signed bytes (Studio's scheme); it equals the body's `timestamp`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header value for `body` sent at `timestamp_ms`.
pub fn header_value(secret: &str, body: &[u8], timestamp_ms: i64) -> String {
    format!("t={timestamp_ms},v1={}", sign(secret, body))
}

/// Hex HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc4231_test_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            header_value("Jefe", b"what do ya want for nothing?", 7),
            "t=7,v1=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
