//! What start and reload both build from a config: the rule set (with
//! every rule's receivers checked against the config) and the callback
//! path's settings.

use std::sync::Arc;

use crate::api::ReloadError;
use crate::config::Config;
use crate::ingest::IngestSettings;
use crate::rules::Rule;

/// Loads and compiles every rule, reporting all problems at once; what
/// is suspicious but allowed is logged as a warning.
pub fn load_rules(config: &Config) -> Result<Vec<Arc<Rule>>, Vec<ReloadError>> {
    let rules = crate::rules::load_dir(&config.rules.dir, &config.rules)
        .map_err(|errs| errs.into_iter().map(ReloadError::Rule).collect::<Vec<_>>())?;
    for w in rules.iter().flat_map(|r| r.warnings()) {
        tracing::warn!(rule_file = %w.path.display(), "{w}");
    }
    let unknown = unknown_notify_receivers(&rules, config);
    if !unknown.is_empty() {
        return Err(unknown);
    }
    Ok(rules.into_iter().map(Arc::new).collect())
}

/// A rule's `notify` list names receivers, which live in the config: a
/// misspelt one would page nobody, so it is a load error like any other
/// broken reference. (Receivers that fail to build are reported on their
/// own; then there is nothing to check the names against.)
fn unknown_notify_receivers(rules: &[Rule], config: &Config) -> Vec<ReloadError> {
    let Ok(receivers) = crate::notify::Receivers::from_config(config) else {
        return Vec::new();
    };
    let known: Vec<&str> = receivers.iter().map(|r| r.name()).collect();
    let mut problems = Vec::new();
    for rule in rules {
        for name in &rule.spec().notify {
            if receivers.get(name).is_none() {
                problems.push(ReloadError::UnknownReceiver {
                    path: rule.path().to_path_buf(),
                    name: name.clone(),
                    hint: crate::rules::names::did_you_mean(name, known.iter().copied()),
                    known: known.iter().map(|k| k.to_string()).collect(),
                });
            }
        }
    }
    problems
}

/// The callback path's settings from a config.
pub(crate) fn ingest_settings(config: &Config) -> IngestSettings {
    IngestSettings {
        callback_path: config.server.callback_path.clone(),
        max_body_bytes: config.server.max_body_bytes,
        max_clock_skew_secs: config.server.max_clock_skew.as_secs() as i64,
        apps: config.apps.clone(),
        callback_allow: config.server.callback_allow.clone(),
    }
}
