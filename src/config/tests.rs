//! Loading and checking configs from real TOML files and environments.

use super::*;
use std::path::Path;
use std::time::Duration;

pub(crate) fn load_str(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, toml).expect("write");
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::load_from(Some(&path), env)
}

#[test]
fn defaults_have_log_receiver() {
    let c = load_str("", &[]).expect("defaults load");
    assert_eq!(c.server.listen, "127.0.0.1:8080");
    assert_eq!(c.receivers.len(), 1);
    assert_eq!(c.receivers[0].name, "log");
    assert_eq!(c.alerting.default_receivers, vec!["log"]);
    assert_eq!(c.state.fsync, FsyncPolicy::Batch);
}

#[test]
fn unknown_key_is_named() {
    let err = load_str("[server]\nlisten_port = 3\n", &[]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("listen_port"), "{msg}");
    let err = load_str("[nope]\n", &[]).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn durations_are_strings() {
    let c = load_str("[server]\nmax_clock_skew = \"90s\"\n", &[]).expect("load");
    assert_eq!(c.server.max_clock_skew, Duration::from_secs(90));
    let err = load_str("[server]\nmax_clock_skew = \"soon\"\n", &[]).unwrap_err();
    assert!(err.to_string().contains("max_clock_skew"), "{err}");
}

#[test]
fn env_overrides_and_numeric_secrets_stay_strings() {
    let c = load_str(
        "[smtp]\npassword = \"file\"\n",
        &[
            ("CALLWATCH_SMTP__PASSWORD", "12345"),
            ("CALLWATCH_SERVER__LISTEN", "127.0.0.1:9999"),
            ("CALLWATCH_RULES__TICK", "5s"),
            // Not config: no such section, so it is left alone.
            ("CALLWATCH_REQUIRE_SMTP", "1"),
        ],
    )
    .expect("load");
    assert_eq!(c.smtp.password, "12345");
    assert_eq!(c.server.listen, "127.0.0.1:9999");
    assert_eq!(c.rules.tick, Duration::from_secs(5));
    assert!(!format!("{:?}", c.smtp).contains("12345"));
}

#[test]
fn receivers_and_routes_are_checked() {
    let c = load_str(
        r#"
[[receivers]]
name = "ops"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[alerting]
default_receivers = ["ops"]
"#,
        &[],
    )
    .expect("load");
    assert!(matches!(c.receivers[0].kind, ReceiverKind::Webhook { .. }));
    let err = load_str(
        "[[routes]]\nmatch = { severity = \"critical\" }\nreceivers = [\"ghost\"]\n",
        &[],
    )
    .unwrap_err();
    assert!(err.to_string().contains("routes[0].receivers"), "{err}");
    let err = load_str("[[receivers]]\nname = \"x\"\ntype = \"pager\"\n", &[]).unwrap_err();
    assert!(err.to_string().contains("pager"), "{err}");
}

#[test]
fn unknown_key_inside_a_section_from_env_is_named() {
    let err = load_str("", &[("CALLWATCH_SERVER__LISTN", "x")]).unwrap_err();
    assert!(err.to_string().contains("listn"), "{err}");
}

#[test]
fn callback_allow_parses_and_bad_cidr_names_the_key() {
    let c = load_str(
        "[server]\ncallback_allow = [\"10.0.0.0/8\", \"127.0.0.1\"]\n",
        &[],
    )
    .expect("load");
    assert_eq!(c.server.callback_allow.len(), 2);
    assert!(c.server.callback_allow[1].contains("127.0.0.1".parse().expect("ip")));
    let err = load_str("[server]\ncallback_allow = [\"10.0.0.0/40\"]\n", &[]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("server.callback_allow"), "{msg}");
    assert!(msg.contains("10.0.0.0/40"), "{msg}");
}

#[test]
fn timezone_and_external_url_are_checked() {
    let c = load_str(
        "[alerting]\ntimezone = \"Asia/Shanghai\"\nevidence_events = 3\n\
         [server]\nexternal_url = \"https://cw.example.com/\"\n",
        &[],
    )
    .expect("load");
    assert_eq!(c.alerting.evidence_events, 3);
    assert!(c.timezone().is_ok());
    let err = load_str("[alerting]\ntimezone = \"Mars/Olympus\"\n", &[]).unwrap_err();
    assert!(err.to_string().contains("alerting.timezone"), "{err}");
    let err = load_str("[server]\nexternal_url = \"cw.example.com\"\n", &[]).unwrap_err();
    assert!(err.to_string().contains("server.external_url"), "{err}");
}

#[test]
fn missing_file_is_an_error() {
    let err = Config::load(Some(Path::new("/nonexistent/callwatch.toml"))).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/callwatch.toml"));
}

#[test]
fn shipped_config_matches_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
    let c = Config::load_from(Some(&path), std::iter::empty()).expect("shipped config loads");
    let d = Config::load_from(None, std::iter::empty()).expect("defaults");
    assert_eq!(c, d);
}
