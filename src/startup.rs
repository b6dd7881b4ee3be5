//! How the daemon presents itself when it starts: log setup (colour only
//! on a terminal), the startup summary an operator reads first in the
//! journal (config file, listen address, rules, receivers), the warning
//! when `/callback` is open to unsigned callbacks, and the error type that
//! marks a start that failed on bad config or rules (exit 1, which the
//! systemd unit does not restart) rather than at run time (exit 2).

use std::io::IsTerminal;

use crate::config::ConfigSource;
use crate::config::{Config, LogConfig, LogFormat};

/// The daemon could not start because of what it was given (config,
/// rules, receivers): restarting would fail the same way.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// Logs to stderr (stdout belongs to the `log` receiver and replay's
/// output), in the configured format. Colour codes only when stderr is a
/// terminal: in the journal or a file they are noise.
pub fn init_logging(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Which file a config came from, as the startup line says it.
pub fn config_origin(source: &ConfigSource) -> String {
    match source {
        ConfigSource::Fixed => "in-process config".into(),
        ConfigSource::Load(path) => match Config::file_for(path.as_deref()) {
            Ok(Some(file)) => file.display().to_string(),
            Ok(None) => "built-in defaults".into(),
            // Loading already succeeded, so the file existed a moment ago.
            Err(e) => e.to_string(),
        },
    }
}

/// Why `/callback` accepts unsigned callbacks, if it does: no `[[apps]]`
/// (any SDKAppID), or apps without a token.
pub fn unsigned_warning(config: &Config) -> Option<String> {
    if config.apps.is_empty() {
        return Some(
            "no [[apps]] configured: /callback accepts callbacks for any sdkappid, unsigned; \
             set [[apps]] with a token before exposing it (docs/trtc-setup.md)"
                .into(),
        );
    }
    let open: Vec<String> = config
        .apps
        .iter()
        .filter(|a| a.token.is_empty())
        .map(|a| a.sdkappid.to_string())
        .collect();
    (!open.is_empty()).then(|| {
        format!(
            "[[apps]] without a token accept unsigned callbacks: sdkappid {}",
            open.join(", ")
        )
    })
}

/// The startup summary: config origin, configured listen address, rule
/// count and receivers; then the unsigned-callback warning if it applies.
pub fn log_start(config: &Config, source: &ConfigSource, rules: usize) {
    let receivers: Vec<String> = config
        .receivers
        .iter()
        .map(|r| format!("{}({})", r.name, r.kind.type_name()))
        .collect();
    let allow: Vec<String> = config
        .server
        .callback_allow
        .iter()
        .map(|n| n.to_string())
        .collect();
    tracing::info!(
        config = %config_origin(source),
        listen = %config.server.listen,
        rules,
        receivers = %receivers.join(", "),
        callback_allow = %if allow.is_empty() { "any".to_string() } else { allow.join(", ") },
        "callwatch starting"
    );
    if let Some(w) = unsigned_warning(config) {
        tracing::warn!("{w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AppConfig;

    #[test]
    fn warns_without_apps_and_names_apps_without_token() {
        let mut c = Config::default();
        assert!(unsigned_warning(&c).is_some_and(|w| w.contains("any sdkappid")));
        c.apps = vec![
            AppConfig {
                sdkappid: 1400000001,
                token: "t".into(),
            },
            AppConfig {
                sdkappid: 1400000002,
                token: String::new(),
            },
        ];
        let w = unsigned_warning(&c).expect("one app is open");
        assert!(w.contains("1400000002") && !w.contains("1400000001"), "{w}");
        c.apps.pop();
        assert_eq!(unsigned_warning(&c), None);
    }
}
