//! The dispatcher: the step between the engine's alert transitions and the
//! outbox. For each transition it picks the receivers (rule `notify`,
//! routes, default), drops silenced alerts, and feeds the grouper; groups
//! that are due become notifications persisted in the outbox.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use super::group::{GroupSettings, Grouper};
use super::outbox::Outbox;
use super::silence;
use super::{receivers_for, Receivers};
use crate::config::Config;
use crate::engine::Transition;
use crate::metrics::{Metrics, ReceiverLabels};
use crate::store::Store;

pub struct Dispatcher {
    /// Routes and default receivers; swapped on reload.
    config: std::sync::RwLock<Arc<Config>>,
    store: Arc<Mutex<Store>>,
    grouper: Mutex<Grouper>,
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    wake: Notify,
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Dispatcher {
    pub fn new(
        config: &Config,
        receivers: &Receivers,
        store: Arc<Mutex<Store>>,
        outbox: Arc<Outbox>,
        metrics: Arc<Metrics>,
    ) -> Dispatcher {
        let mut grouper = Grouper::new(GroupSettings::from(&config.alerting));
        for r in receivers.iter() {
            if let Some(every) = r.resend_interval() {
                grouper.resend_every(r.name(), every);
            }
        }
        Dispatcher {
            config: std::sync::RwLock::new(Arc::new(config.clone())),
            store,
            grouper: Mutex::new(grouper),
            outbox,
            metrics,
            wake: Notify::new(),
        }
    }

    /// Uses `config`'s routes and default receivers from now on.
    pub fn set_config(&self, config: &Config) {
        let new = Arc::new(config.clone());
        match self.config.write() {
            Ok(mut c) => *c = new,
            Err(p) => *p.into_inner() = new,
        }
    }

    fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn grouper(&self) -> std::sync::MutexGuard<'_, Grouper> {
        self.grouper.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Routes alert transitions into the grouper (silenced ones are only
    /// counted).
    pub fn submit(&self, transitions: Vec<Transition>) {
        if transitions.is_empty() {
            return;
        }
        let now = SystemTime::now();
        let silences = match self
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .silences()
        {
            Ok(s) => s,
            Err(e) => {
                // Better a notification too many than a lost one.
                tracing::error!(error = %e, "cannot read silences; notifying anyway");
                Vec::new()
            }
        };
        let config = self.config();
        let mut grouper = self.grouper();
        for t in transitions {
            let receivers = receivers_for(
                &t.alert,
                t.notify.as_deref(),
                &config.routes,
                &config.alerting.default_receivers,
            );
            let silenced_by = silences
                .iter()
                .find(|s| silence::silences(s, &t.alert.labels, unix(now)));
            if let Some(s) = silenced_by {
                tracing::info!(rule = %t.alert.rule, fingerprint = %t.alert.fingerprint, silence = %s.id, "alert silenced");
                for r in &receivers {
                    self.metrics
                        .notifications
                        .get_or_create(&ReceiverLabels {
                            receiver: r.clone(),
                            outcome: "silenced".into(),
                        })
                        .inc();
                }
                continue;
            }
            for r in &receivers {
                grouper.submit(r, t.alert.clone(), now);
            }
        }
        drop(grouper);
        // Groups already due (group_wait = 0, or an interval that has
        // passed) go to the durable outbox right here, on the caller's
        // thread, rather than after the dispatcher task wakes: the alert
        // state was just saved as firing, and the shorter the time until
        // its notification is saved too, the smaller the window in which a
        // crash could lose it.
        self.flush(now);
        self.wake.notify_one();
    }

    fn flush(&self, now: SystemTime) {
        let due = self.grouper().due(now);
        for n in due {
            if let Err(e) = self.outbox.enqueue(&n) {
                tracing::error!(receiver = %n.receiver, error = %e, "notification could not be queued");
            }
        }
    }

    /// Moves due groups into the outbox until `shutdown`; then queues every
    /// waiting group at once so nothing decided is lost.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let now = SystemTime::now();
            self.flush(now);
            let wait = self
                .grouper()
                .next_due()
                .and_then(|t| t.duration_since(now).ok())
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.drain();
    }

    /// Queues every waiting group now, ignoring group_wait (at shutdown).
    pub fn drain(&self) {
        self.flush(SystemTime::now() + Duration::from_secs(100 * 365 * 24 * 3600));
    }
}
