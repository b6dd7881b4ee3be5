//! Alerts: the SPEC §6 alert object and the per-(rule, key) state machine
//! (pending → firing → resolved, with `for` and `repeat`). Pure: time is
//! passed in and the machine returns the transitions to notify; it never
//! sends anything itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Lifecycle of one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Pending,
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Pending => "pending",
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// The alert object of SPEC §6 (webhook `alerts[]`, replay output, API).
/// Times are Unix seconds internally and RFC 3339 on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub rule: String,
    pub status: AlertStatus,
    pub severity: String,
    pub summary: String,
    pub labels: BTreeMap<String, String>,
    /// A number when `check` gave one, else null.
    pub value: serde_json::Value,
    pub fingerprint: String,
    #[serde(with = "rfc3339")]
    pub starts_at: i64,
    #[serde(with = "rfc3339_opt")]
    pub ends_at: Option<i64>,
}

/// Stable identity of an alert: SHA-256 over the rule name and the key
/// labels, hex, first 16 bytes. Stable across restarts and versions.
pub fn fingerprint(rule: &str, key: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    h.update(rule.as_bytes());
    for (k, v) in key {
        h.update([0u8]);
        h.update(k.as_bytes());
        h.update([1u8]);
        h.update(v.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// Formats Unix seconds as RFC 3339 UTC (`2026-11-25T20:00:00Z`).
pub fn format_rfc3339(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| secs.to_string()),
        Err(_) => secs.to_string(),
    }
}

/// Parses RFC 3339 back into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_rfc3339(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom("bad RFC 3339 time"))
    }
}

mod rfc3339_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&super::format_rfc3339(*v)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => super::parse_rfc3339(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("bad RFC 3339 time")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_object_shape() {
        let mut labels = BTreeMap::new();
        labels.insert("rule".to_string(), "r".to_string());
        let a = Alert {
            rule: "r".into(),
            status: AlertStatus::Firing,
            severity: "warning".into(),
            summary: "s".into(),
            labels: labels.clone(),
            value: serde_json::json!(3),
            fingerprint: fingerprint("r", &labels),
            starts_at: 1_764_100_800,
            ends_at: None,
        };
        let v = serde_json::to_value(&a).expect("serialize");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["starts_at"], "2025-11-25T20:00:00Z");
        assert_eq!(v["ends_at"], serde_json::Value::Null);
        let back: Alert = serde_json::from_value(v).expect("deserialize");
        assert_eq!(back, a);
        assert_eq!(a.fingerprint.len(), 32);
    }
}
