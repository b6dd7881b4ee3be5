//! Hot reload as the admin API sees it: the [`Reload`] trait the daemon's
//! reloader implements (so the API imports nothing from the daemon) and
//! [`ReloadError`], why a reload was refused, kept typed so a rule's
//! `path:line:col` reaches the HTTP body and the log as data.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, LIVE_KEYS};
use crate::rules::RuleError;

/// Run one reload, and have its report as JSON or every error.
pub trait Reload: Send + Sync {
    fn reload_json(&self) -> ReloadFuture<'_>;
}

/// What [`Reload::reload_json`] returns.
pub type ReloadFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<serde_json::Value, Vec<ReloadError>>> + Send + 'a>,
>;

/// One reason a reload (or a start) was refused. Its text is what the
/// operator reads: the file or key at fault first.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A rule file that does not load, at the position of the fault.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A rule's `notify` names a receiver the config does not define.
    #[error("{}: RULE.notify: unknown receiver {name:?}{hint} (receivers: {})", path.display(), known.join(", "))]
    UnknownReceiver {
        path: PathBuf,
        name: String,
        /// ` (did you mean "x"?)`, or empty.
        hint: String,
        known: Vec<String>,
    },
    /// The config file does not load or validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key changed that the running daemon cannot apply.
    #[error("restart required: {key} (a reload applies only {})", LIVE_KEYS.join(", "))]
    RestartRequired { key: String },
    /// A receiver cannot be built from the new config.
    #[error("{0}")]
    Receivers(String),
    /// The daemon could not carry the reload out (the journal unreadable,
    /// the engine stopped).
    #[error("{0}")]
    Daemon(String),
}

/// Where a [`ReloadError`] points, each part only where it applies:
/// `path`, `line` and `col` of a rule's fault; `path` and `receiver` of
/// an unknown receiver; the config `key`.
#[derive(Debug, Default, PartialEq)]
pub struct Position<'a> {
    pub path: Option<&'a Path>,
    pub line: Option<usize>,
    pub col: Option<usize>,
    pub receiver: Option<&'a str>,
    pub key: Option<&'a str>,
}

impl ReloadError {
    /// Where the error points, as data (the API's details, the log's
    /// fields).
    pub fn position(&self) -> Position<'_> {
        match self {
            ReloadError::Rule(e) => Position {
                path: Some(&e.path),
                line: Some(e.line),
                col: Some(e.col),
                ..Position::default()
            },
            ReloadError::UnknownReceiver { path, name, .. } => Position {
                path: Some(path),
                receiver: Some(name),
                ..Position::default()
            },
            ReloadError::Config(ConfigError::Invalid { key, .. })
            | ReloadError::RestartRequired { key } => Position {
                key: Some(key),
                ..Position::default()
            },
            _ => Position::default(),
        }
    }

    /// Logs the error at error level, saying `what` happened because of
    /// it: the text, its kind and where it points as fields (`path`,
    /// `line`, `col`, `receiver`, `key`; absent ones left out), so a log
    /// search or a tool can find the file and the position.
    pub fn log(&self, what: &str) {
        let p = self.position();
        tracing::error!(
            error = %self,
            kind = self.kind(),
            path = p.path.map(|p| p.display().to_string()),
            line = p.line,
            col = p.col,
            receiver = p.receiver,
            key = p.key,
            "{what}"
        );
    }

    /// The error as data for the API: its kind, the text, and where it
    /// points ([`ReloadError::position`]).
    pub fn detail_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"kind": self.kind(), "message": self.to_string()});
        let p = self.position();
        if let Some(path) = p.path {
            v["path"] = path.display().to_string().into();
        }
        if let Some(line) = p.line {
            v["line"] = line.into();
        }
        if let Some(col) = p.col {
            v["col"] = col.into();
        }
        if let Some(receiver) = p.receiver {
            v["receiver"] = receiver.into();
        }
        if let Some(key) = p.key {
            v["key"] = key.into();
        }
        v
    }

    fn kind(&self) -> &'static str {
        match self {
            ReloadError::Rule(_) => "rule",
            ReloadError::UnknownReceiver { .. } => "unknown_receiver",
            ReloadError::Config(_) => "config",
            ReloadError::RestartRequired { .. } => "restart_required",
            ReloadError::Receivers(_) => "receivers",
            ReloadError::Daemon(_) => "daemon",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_error_keeps_its_position_as_data_and_its_text() {
        let e = ReloadError::Rule(RuleError {
            path: "rules/a.rhai".into(),
            line: 3,
            col: 7,
            message: "unknown variable x".into(),
        });
        assert_eq!(e.to_string(), "rules/a.rhai:3:7: unknown variable x");
        let d = e.detail_json();
        assert_eq!(d["kind"], "rule");
        assert_eq!(d["path"], "rules/a.rhai");
        assert_eq!((d["line"].as_u64(), d["col"].as_u64()), (Some(3), Some(7)));
        assert_eq!(
            e.position(),
            Position {
                path: Some(Path::new("rules/a.rhai")),
                line: Some(3),
                col: Some(7),
                ..Position::default()
            }
        );
    }

    #[test]
    fn restart_required_names_the_key_and_the_live_keys() {
        let e = ReloadError::RestartRequired {
            key: "rules.tick".into(),
        };
        assert!(
            e.to_string().starts_with(
                "restart required: rules.tick (a reload applies only server.admin_token, "
            ),
            "{e}"
        );
        assert_eq!(e.detail_json()["key"], "rules.tick");
    }
}
