//! What of the engine outlives a restart: each key's alert state and
//! `w.state` as a [`KeyRecord`], what changed since the last save, and
//! restoring them (windows come back from the journal, not from here).

use super::slot::KeyState;
use super::Engine;
use crate::alert::Tracker;
use crate::rules::Key;

/// The durable part of one key: its alert state and `w.state`, what a
/// restart must restore (windows come back from the journal).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyRecord {
    pub rule: String,
    pub key: Vec<(String, String)>,
    pub tracker: Tracker,
    pub state: serde_json::Map<String, serde_json::Value>,
}

impl KeyRecord {
    /// The store key: rule and key values, unambiguous.
    pub fn id(&self) -> String {
        serde_json::json!([self.rule, self.key]).to_string()
    }
}

/// A change to persist: the record, or its id when the key went idle.
#[derive(Debug, Clone, PartialEq)]
pub enum Persist {
    Put(Box<KeyRecord>),
    Delete(String),
}

impl Engine {
    /// Restores a key's alert state and `w.state` (on start, before the
    /// windows are rebuilt). Records of rules that no longer exist are
    /// ignored.
    pub fn restore(&mut self, record: KeyRecord) {
        let Some(slot) = self.slots.iter_mut().find(|s| s.rule.name() == record.rule) else {
            return;
        };
        let key = Key::from_pairs(&slot.rule.spec().group_by, &record.key);
        let width = slot.rule.spec().window_secs;
        let max_events = self.settings.max_events_per_key;
        let tracker = Some(Box::new(record.tracker)).filter(|t| t.is_active());
        let mut ks = KeyState {
            tracker,
            ..KeyState::new(width, max_events)
        };
        ks.set_state(crate::rules::map_from_json(&record.state));
        slot.keys.insert(key, Box::new(ks));
    }

    /// What changed since the last call, to be written to the store.
    pub fn take_dirty(&mut self) -> Vec<Persist> {
        let mut out = Vec::new();
        for slot in &mut self.slots {
            let name = slot.rule.name().to_string();
            for key in slot.dirty.drain() {
                let mut record = KeyRecord {
                    rule: name.clone(),
                    key: slot.rule.key_view(&key).to_pairs(),
                    tracker: Tracker::default(),
                    state: Default::default(),
                };
                match slot.keys.get(&key) {
                    Some(ks) if ks.is_active() || ks.has_state() => {
                        record.tracker = ks.tracker.as_deref().cloned().unwrap_or_default();
                        record.state = ks
                            .state
                            .as_deref()
                            .map(crate::rules::map_to_json)
                            .unwrap_or_default();
                        out.push(Persist::Put(Box::new(record)));
                    }
                    // Idle or forgotten: nothing to restore.
                    _ => out.push(Persist::Delete(record.id())),
                }
            }
        }
        out
    }
}
