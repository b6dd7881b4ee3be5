//! The layering of a config: built-in defaults, then the TOML file, then
//! `CALLWATCH_<SECTION>__<KEY>` environment variables (parsed as TOML
//! values, like figment's `Env` provider), and figment's errors rendered
//! as `key K: message`.

use serde::{Deserialize, Deserializer};

/// The top-level sections, which environment variables may address.
const SECTIONS: &[&str] = &[
    "server",
    "apps",
    "rules",
    "state",
    "alerting",
    "smtp",
    "receivers",
    "routes",
    "inhibit_rules",
    "time_intervals",
    "log",
    "cluster",
    "console",
];

/// The `CALLWATCH_*` variables of `env` that name a config section, as
/// a nested dictionary to merge over the file.
pub(super) fn env_layer(env: impl IntoIterator<Item = (String, String)>) -> figment::value::Dict {
    let mut map = figment::value::Dict::new();
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("CALLWATCH_") else {
            continue;
        };
        // Config variables name a section (`CALLWATCH_SMTP__PASSWORD`,
        // or a whole section such as `CALLWATCH_APPS`). Other
        // `CALLWATCH_*` variables (test switches, wrapper scripts) are
        // not config and must not be rejected as unknown keys.
        let section = rest.split("__").next().unwrap_or("").to_ascii_lowercase();
        if !SECTIONS.contains(&section.as_str()) {
            continue;
        }
        let value = v
            .parse::<figment::value::Value>()
            .unwrap_or_else(|_| figment::value::Value::from(v.clone()));
        insert_path(&mut map, &rest.to_ascii_lowercase(), value);
    }
    map
}

fn insert_path(map: &mut figment::value::Dict, path: &str, value: figment::value::Value) {
    match path.split_once("__") {
        None => {
            map.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = map
                .entry(head.to_string())
                .or_insert_with(|| figment::value::Dict::new().into());
            if let figment::value::Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// figment's errors carry the key path; render it as `key: message`.
pub(super) fn figment_message(e: &figment::Error) -> String {
    e.clone()
        .into_iter()
        .map(|err| {
            let key = err.path.join(".");
            let source = err
                .metadata
                .as_ref()
                .and_then(|m| m.source.as_ref())
                .map(|s| format!(" (from {s})"))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{source}", err.kind)
            } else {
                format!("key {key}: {}{source}", err.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Accepts a string, or a number/bool and keeps its text. figment parses
/// environment values as TOML, so `CALLWATCH_SMTP__PASSWORD=12345` arrives
/// as an integer; a secret must still be the string the operator typed.
pub(super) fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    Ok(match Lenient::deserialize(d)? {
        Lenient::S(s) => s,
        Lenient::I(i) => i.to_string(),
        Lenient::U(u) => u.to_string(),
        Lenient::F(f) => f.to_string(),
        Lenient::B(b) => b.to_string(),
    })
}
