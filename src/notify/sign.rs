//! The request signatures of the DingTalk and Feishu robots, exactly as
//! their documentation specifies. Both are HMAC-SHA256 over
//! `timestamp + "\n" + secret`, but they use key and message the other way
//! round, so each has its own function. Time is passed in.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

fn hmac_sha256_base64(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// DingTalk: `sign = base64(HmacSHA256(key = secret, msg = timestamp + "\n"
/// + secret))` with `timestamp` in milliseconds; the caller URL-encodes it
/// into the query as `&timestamp=…&sign=…`.
pub(crate) fn dingtalk(secret: &str, timestamp_ms: i64) -> String {
    let message = format!("{timestamp_ms}\n{secret}");
    hmac_sha256_base64(secret.as_bytes(), message.as_bytes())
}

/// Feishu: `sign = base64(HmacSHA256(key = timestamp + "\n" + secret,
/// msg = empty))` with `timestamp` in seconds, both sent in the JSON body.
pub(crate) fn feishu(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    hmac_sha256_base64(key.as_bytes(), b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_deterministic_and_differ() {
        let d = dingtalk("SECabc", 1_700_000_000_000);
        assert_eq!(d, dingtalk("SECabc", 1_700_000_000_000));
        assert_ne!(d, dingtalk("SECabc", 1_700_000_000_001));
        assert_eq!(d.len(), 44);
        let f = feishu("abc", 1_700_000_000);
        assert_ne!(f, dingtalk("abc", 1_700_000_000));
        assert_eq!(f.len(), 44);
    }
}
