//! Hot reload of config and rules (SIGHUP, `POST /api/v1/reload`, a change
//! in `rules.dir`): everything is loaded and checked before anything is
//! swapped, so a reload with any error keeps the running set. It owns the
//! reload decision and report, not the engine-side swap (`Engine::reload`).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::build::{ingest_settings, load_rules};
use super::engine_loop::EngineCmd;
use super::recovery::recent_events;
use crate::api::ReloadError;
use crate::config::{Config, LIVE_KEYS};
use crate::ingest::Ingest;
use crate::notify::dispatch::Dispatcher;
use crate::notify::Receivers;
use crate::rules::Rule;

pub use crate::config::ConfigSource;

/// Hot reload of config and rules. A reload with any error changes
/// nothing and reports every error.
pub struct Reloader {
    source: ConfigSource,
    /// Also serialises reloads.
    current: tokio::sync::Mutex<Config>,
    ctl: mpsc::Sender<EngineCmd>,
    ingest: Arc<Ingest>,
    dispatcher: Arc<Dispatcher>,
    /// `server.admin_token` as the admin API checks it.
    admin_token: Arc<RwLock<String>>,
}

/// What a successful reload did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadReport {
    pub rules: Vec<String>,
    /// Rules added or edited (their windows were rebuilt).
    pub changed: Vec<String>,
    /// Rules removed (their alerts resolved).
    pub removed: Vec<String>,
    /// The config keys a reload applies; changing any other is refused
    /// with "restart required: KEY".
    pub live_keys: Vec<String>,
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
            admin_token: Arc::new(RwLock::new(config.server.admin_token.clone())),
        }
    }

    /// `server.admin_token` as in force now; a reload changes it.
    pub fn admin_token(&self) -> Arc<RwLock<String>> {
        self.admin_token.clone()
    }

    /// `server.shutdown_timeout` in force (`None` while a reload holds
    /// the config).
    pub fn shutdown_timeout(&self) -> Option<Duration> {
        self.current
            .try_lock()
            .ok()
            .map(|c| c.server.shutdown_timeout)
    }

    /// Re-reads config and rules and swaps them in; on any error the old
    /// set stays active and every error is returned.
    pub async fn reload(&self) -> Result<ReloadReport, Vec<ReloadError>> {
        let mut current = self.current.lock().await;
        let result = self.try_reload(&current).await;
        match &result {
            Ok((config, report)) => {
                tracing::info!(rules = report.rules.len(), changed = ?report.changed, removed = ?report.removed, "reloaded");
                *current = config.clone();
            }
            Err(errors) => {
                for e in errors {
                    e.log("reload rejected; previous config and rules stay active");
                }
            }
        }
        result.map(|(_, r)| r)
    }

    async fn try_reload(&self, old: &Config) -> Result<(Config, ReloadReport), Vec<ReloadError>> {
        let config = match &self.source {
            ConfigSource::Fixed => old.clone(),
            ConfigSource::Load(path) => {
                Config::load(path.as_deref()).map_err(|e| vec![ReloadError::Config(e)])?
            }
        };
        // A key the running daemon cannot apply is refused rather than
        // reported applied while the old value stays in force.
        let mut errors: Vec<ReloadError> = old
            .restart_only_changes(&config)
            .into_iter()
            .map(|key| ReloadError::RestartRequired { key })
            .collect();
        let rules = match load_rules(&config) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.extend(e);
                None
            }
        };
        if let Err(e) = Receivers::from_config(&config) {
            errors.push(ReloadError::Receivers(e.to_string()));
        }
        let Some(rules) = rules.filter(|_| errors.is_empty()) else {
            return Err(errors);
        };
        let state_dir = old.state.dir.clone();
        let max_window = rules
            .iter()
            .map(|r| r.spec().window_secs)
            .max()
            .unwrap_or(0);
        // Cluster mode: the stream is the journal.
        let cluster = old.cluster.clone();
        let history = tokio::task::spawn_blocking(move || match &cluster {
            Some(c) => crate::cluster::export::recent_events(c, max_window),
            None => recent_events(&state_dir, max_window),
        })
        .await
        .map_err(|e| vec![ReloadError::Daemon(format!("reading the journal: {e}"))])?
        .map_err(|e| vec![ReloadError::Daemon(format!("reading the journal: {e}"))])?;
        let new_digests = digests(&rules);
        let (reply, done) = oneshot::channel();
        self.ctl
            .send(EngineCmd::Reload {
                rules,
                history,
                reply,
            })
            .await
            .map_err(|_| vec![ReloadError::Daemon("the engine has stopped".into())])?;
        // The rules being replaced come from the engine: the files on disk
        // already hold the new versions.
        let old_rules = done.await.map_err(|_| {
            vec![ReloadError::Daemon(
                "the engine stopped during reload".into(),
            )]
        })?;
        self.ingest.set_settings(ingest_settings(&config));
        self.dispatcher.set_config(&config);
        match self.admin_token.write() {
            Ok(mut t) => t.clone_from(&config.server.admin_token),
            Err(p) => p.into_inner().clone_from(&config.server.admin_token),
        }
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
            live_keys: LIVE_KEYS.iter().map(|k| k.to_string()).collect(),
        };
        Ok((config, report))
    }
}

impl crate::api::Reload for Reloader {
    fn reload_json(&self) -> crate::api::ReloadFuture<'_> {
        Box::pin(async move {
            let report = self.reload().await?;
            Ok(serde_json::to_value(report).unwrap_or_default())
        })
    }
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
