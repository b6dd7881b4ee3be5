//! Hot reload of config and rules (SIGHUP, `POST /api/v1/reload`, a change
//! in `rules.dir`): everything is loaded and checked before anything is
//! swapped, so a reload with any error keeps the running set. It owns the
//! reload decision and report, not the engine-side swap (`Engine::reload`).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::app::{ingest_settings, load_rules, EngineCmd};
use crate::config::Config;
use crate::event::Event;
use crate::ingest::{self, Ingest};
use crate::journal;
use crate::notify::dispatch::Dispatcher;
use crate::notify::Receivers;
use crate::rules::Rule;

/// Where the running config came from, for reloads.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// Built in code (tests): a reload re-reads rules only.
    Fixed,
    /// `Config::load` with this `-c` argument (None: default lookup).
    Load(Option<PathBuf>),
}

/// Hot reload of config and rules. A reload with any error changes
/// nothing and reports every error.
pub struct Reloader {
    source: ConfigSource,
    /// Also serialises reloads.
    current: tokio::sync::Mutex<Config>,
    ctl: mpsc::Sender<EngineCmd>,
    ingest: Arc<Ingest>,
    dispatcher: Arc<Dispatcher>,
}

/// What a successful reload did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadReport {
    pub rules: Vec<String>,
    /// Rules added or edited (their windows were rebuilt).
    pub changed: Vec<String>,
    /// Rules removed (their alerts resolved).
    pub removed: Vec<String>,
    /// Settings that only take effect after a restart.
    pub warnings: Vec<String>,
}

fn digests(rules: &[Arc<Rule>]) -> Vec<(String, String)> {
    rules
        .iter()
        .map(|r| (r.name().to_string(), r.source_digest().to_string()))
        .collect()
}

impl Reloader {
    pub(crate) fn new(
        source: ConfigSource,
        config: &Config,
        ctl: mpsc::Sender<EngineCmd>,
        ingest: Arc<Ingest>,
        dispatcher: Arc<Dispatcher>,
    ) -> Reloader {
        Reloader {
            source,
            current: tokio::sync::Mutex::new(config.clone()),
            ctl,
            ingest,
            dispatcher,
        }
    }

    /// Re-reads config and rules and swaps them in; on any error the old
    /// set stays active and every error is returned.
    pub async fn reload(&self) -> Result<ReloadReport, Vec<String>> {
        let mut current = self.current.lock().await;
        let result = self.try_reload(&current).await;
        match &result {
            Ok((config, report)) => {
                tracing::info!(rules = report.rules.len(), changed = ?report.changed, removed = ?report.removed, "reloaded");
                for w in &report.warnings {
                    tracing::warn!("{w}");
                }
                *current = config.clone();
            }
            Err(errors) => {
                for e in errors {
                    tracing::error!(error = %e, "reload rejected; previous config and rules stay active");
                }
            }
        }
        result.map(|(_, r)| r)
    }

    async fn try_reload(&self, old: &Config) -> Result<(Config, ReloadReport), Vec<String>> {
        let config = match &self.source {
            ConfigSource::Fixed => old.clone(),
            ConfigSource::Load(path) => {
                Config::load(path.as_deref()).map_err(|e| vec![e.to_string()])?
            }
        };
        let rules = load_rules(&config)?;
        Receivers::from_config(&config).map_err(|e| vec![e.to_string()])?;
        let mut warnings = Vec::new();
        let restart_only = [
            ("server.listen", old.server.listen != config.server.listen),
            (
                "server.callback_path",
                old.server.callback_path != config.server.callback_path,
            ),
            (
                "state",
                serde_json::to_value(&old.state).ok() != serde_json::to_value(&config.state).ok(),
            ),
            (
                "receivers",
                serde_json::to_value(&old.receivers).ok()
                    != serde_json::to_value(&config.receivers).ok(),
            ),
            (
                "smtp",
                serde_json::to_value(&old.smtp).ok() != serde_json::to_value(&config.smtp).ok(),
            ),
            (
                "alerting grouping",
                old.alerting.group_by != config.alerting.group_by
                    || old.alerting.group_wait != config.alerting.group_wait
                    || old.alerting.group_interval != config.alerting.group_interval,
            ),
            (
                "log",
                serde_json::to_value(&old.log).ok() != serde_json::to_value(&config.log).ok(),
            ),
        ];
        for (what, changed) in restart_only {
            if changed {
                warnings.push(format!("{what} changed: takes effect after a restart"));
            }
        }
        let state_dir = old.state.dir.clone();
        let max_window = rules
            .iter()
            .map(|r| r.spec().window_secs)
            .max()
            .unwrap_or(0);
        let history = tokio::task::spawn_blocking(move || recent_events(&state_dir, max_window))
            .await
            .map_err(|e| vec![format!("reading the journal: {e}")])?
            .map_err(|e| vec![format!("reading the journal: {e}")])?;
        let new_digests = digests(&rules);
        let (reply, done) = oneshot::channel();
        self.ctl
            .send(EngineCmd::Reload {
                rules,
                history,
                reply,
            })
            .await
            .map_err(|_| vec!["the engine has stopped".to_string()])?;
        // The rules being replaced come from the engine: the files on disk
        // already hold the new versions.
        let old_rules = done
            .await
            .map_err(|_| vec!["the engine stopped during reload".to_string()])?;
        self.ingest.set_settings(ingest_settings(&config));
        self.dispatcher.set_config(&config);
        let report = ReloadReport {
            rules: new_digests.iter().map(|(n, _)| n.clone()).collect(),
            changed: new_digests
                .iter()
                .filter(|d| !old_rules.contains(d))
                .map(|(n, _)| n.clone())
                .collect(),
            removed: old_rules
                .iter()
                .filter(|(n, _)| !new_digests.iter().any(|(m, _)| m == n))
                .map(|(n, _)| n.clone())
                .collect(),
            warnings,
        };
        Ok((config, report))
    }
}

/// Events from journal records newer than the widest window (oldest
/// first), for rebuilding windows.
fn recent_events(state_dir: &std::path::Path, max_window_secs: i64) -> std::io::Result<Vec<Event>> {
    let horizon = ingest::now_ms() - (max_window_secs + 60) * 1000;
    let mut out = Vec::new();
    journal::for_each_line(state_dir, |_, _, line| {
        // Unreadable lines were skipped (and logged) at recovery already.
        if let Ok(l) = crate::ingest::line::decode_line(line) {
            if l.received_at.unwrap_or(0) >= horizon {
                out.extend(l.decoded.events);
            }
        }
    })?;
    Ok(out)
}

/// Polls `dir` every two seconds and reloads when a rule file is added,
/// removed or modified. Polling (rather than inotify) works on every
/// filesystem, including bind mounts and NFS, at negligible cost.
pub(crate) async fn watch_rules(dir: PathBuf, reloader: Arc<Reloader>) {
    let fingerprint =
        |dir: &std::path::Path| -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
            let mut v: Vec<_> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "rhai"))
                .filter_map(|e| {
                    let m = e.metadata().ok()?;
                    Some((e.path(), m.len(), m.modified().ok()))
                })
                .collect();
            v.sort();
            v
        };
    let mut last = fingerprint(&dir);
    let mut every = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        every.tick().await;
        let now = fingerprint(&dir);
        if now != last {
            last = now;
            tracing::info!(dir = %dir.display(), "rule files changed: reloading");
            let _ = reloader.reload().await;
        }
    }
}
