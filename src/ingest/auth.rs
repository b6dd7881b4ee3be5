//! Callback authentication (the app and sign checks of docs/callbacks.md): is the SDKAppID one we
//! serve, and does `Sign` equal lowercase hex SHA-256(token + RequestTime)
//! within the allowed clock skew. Pure: the current time is passed in.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::decode::{query_text as text, Query};
use crate::config::AppConfig;

/// Why a callback was refused before its body was looked at.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    App(String),
    #[error("{0}")]
    Sign(String),
}

/// Lowercase hex SHA-256 of `token + requesttime`, as Tencent computes it.
pub fn sign(token: &str, request_time: &str) -> String {
    let mut h = Sha256::new();
    h.update(token.as_bytes());
    h.update(request_time.as_bytes());
    hex::encode(h.finalize())
}

/// The app and sign checks of docs/callbacks.md. Returns the app's SDKAppID.
pub fn authenticate(
    apps: &[AppConfig],
    query: &Query,
    now_secs: i64,
    max_skew_secs: i64,
) -> Result<u64, AuthError> {
    let id = super::decode::sdkappid(query).map_err(AuthError::App)?;
    if apps.is_empty() {
        return Ok(id);
    }
    let app = apps
        .iter()
        .find(|a| a.sdkappid == id)
        .ok_or_else(|| AuthError::App(format!("sdkappid {id} is not configured")))?;
    if app.token.is_empty() {
        return Ok(id);
    }
    let given =
        text(query, &["sign", "Sign"]).ok_or_else(|| AuthError::Sign("missing sign".into()))?;
    let time = text(query, &["requesttime", "RequestTime"])
        .ok_or_else(|| AuthError::Sign("missing requesttime".into()))?;
    let t: i64 = time
        .trim()
        .parse()
        .map_err(|_| AuthError::Sign(format!("requesttime {time:?} is not a Unix time")))?;
    if (now_secs - t).abs() > max_skew_secs {
        return Err(AuthError::Sign(format!(
            "requesttime {t} is {}s away from now (max {max_skew_secs}s)",
            now_secs - t
        )));
    }
    let want = sign(&app.token, &time);
    // Constant time, so response timing does not leak how much of a forged
    // sign matched.
    let ok: bool = want
        .as_bytes()
        .ct_eq(given.trim().to_ascii_lowercase().as_bytes())
        .into();
    if ok {
        Ok(id)
    } else {
        Err(AuthError::Sign("sign does not match".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn q(pairs: &[(&str, &str)]) -> Query {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect()
    }

    fn apps() -> Vec<AppConfig> {
        vec![
            AppConfig {
                sdkappid: 1,
                token: String::new(),
            },
            AppConfig {
                sdkappid: 2,
                token: "tok".into(),
            },
        ]
    }

    #[test]
    fn known_vector() {
        // echo -n "tok1700000000" | sha256sum
        assert_eq!(
            sign("tok", "1700000000"),
            "1f4112aa726e20f097d526ff82863c835ad47a6a34dc4ca14240702535c75dbc"
        );
    }

    #[test]
    fn app_checks() {
        assert_eq!(authenticate(&[], &q(&[("sdkappid", "7")]), 0, 60), Ok(7));
        assert!(
            matches!(authenticate(&apps(), &q(&[]), 0, 60), Err(AuthError::App(m)) if m.contains("missing"))
        );
        assert!(
            matches!(authenticate(&apps(), &q(&[("sdkappid", "9")]), 0, 60), Err(AuthError::App(m)) if m.contains("9"))
        );
        assert_eq!(
            authenticate(&apps(), &q(&[("SdkAppid", "1")]), 0, 60),
            Ok(1)
        );
    }

    #[test]
    fn sign_checks() {
        let good = sign("tok", "1000");
        let ok = q(&[("sdkappid", "2"), ("sign", &good), ("requesttime", "1000")]);
        assert_eq!(authenticate(&apps(), &ok, 1030, 60), Ok(2));
        let stale = authenticate(&apps(), &ok, 1100, 60).unwrap_err();
        assert!(stale.to_string().contains("requesttime"), "{stale}");
        let bad = q(&[("sdkappid", "2"), ("Sign", "00"), ("RequestTime", "1000")]);
        assert!(authenticate(&apps(), &bad, 1000, 60)
            .unwrap_err()
            .to_string()
            .contains("sign"));
        let missing = q(&[("sdkappid", "2"), ("requesttime", "1000")]);
        assert!(authenticate(&apps(), &missing, 1000, 60)
            .unwrap_err()
            .to_string()
            .contains("missing sign"));
    }
}
