//! The cluster-mode hooks (docs/cluster.md): the engine's transitions go
//! to the cluster outbox instead of the grouper, and the leader routes
//! them back in here, leaving out the receivers already reached.

use std::collections::HashMap;
use std::time::SystemTime;

use super::{Dispatcher, Tracked};
use crate::alert::Transition;

impl Dispatcher {
    /// Cluster mode: sends the engine's transitions to `publish` from now
    /// on. Call before [`Dispatcher::resume`].
    pub fn set_cluster(&self, publish: tokio::sync::mpsc::UnboundedSender<Vec<Tracked>>) {
        let _ = self.cluster.set(publish);
    }

    /// Cluster mode, on the leader: routes one transition read from the
    /// cluster outbox, leaving out the receivers it already `reached`
    /// (docs/cluster.md). Saved as pending first, like the engine's own.
    /// Returns the receivers it is now owed to (none: settled).
    pub fn submit_from_cluster(&self, t: Transition, reached: Vec<String>) -> Vec<String> {
        let owed = {
            let inputs = self.routing_inputs(SystemTime::now());
            let plan = inputs.quiet().plan(&t.alert, t.notify.as_deref());
            let owed = plan
                .into_iter()
                .filter(|(r, why)| why.is_none() && !reached.contains(r));
            owed.map(|(r, _)| r).collect()
        };
        let body = serde_json::to_string(&t).unwrap_or_default();
        let id = match self.store().apply_kv_pending("cluster", &[], &[body]) {
            Ok(ids) => ids.first().copied(),
            Err(e) => {
                tracing::error!(error = %e, "cannot save a transition from the cluster as pending");
                None
            }
        };
        let reached = id
            .map(|id| HashMap::from([(id, reached)]))
            .unwrap_or_default();
        self.route(vec![((id, t), None)], &reached, SystemTime::now());
        owed
    }
}
