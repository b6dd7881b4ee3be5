//! The engine's side of a hot reload: swapping in a new rule set while
//! unchanged rules keep their windows and alerts.

use std::collections::HashMap;
use std::sync::Arc;

use super::slot::{KeyState, RuleSlot};
use super::{with_evidence, Engine};
use crate::alert::{AlertStatus, ResolveReason, Transition};
use crate::builtin::{RULE_KEYS_LIMIT, RULE_SUSPENDED};
use crate::event::Event;
use crate::rules::Rule;
use crate::window::Window;

impl Engine {
    /// Swaps in a new rule set. Rules whose source did not change keep
    /// their windows, alert states and statistics. New and edited rules
    /// get windows rebuilt from `history` (recent events, oldest first);
    /// an edited rule keeps its keys' alert states and `w.state`. Alerts of
    /// removed rules are resolved.
    pub fn reload(
        &mut self,
        rules: Vec<Arc<Rule>>,
        history: &[Event],
        now: i64,
    ) -> Vec<Transition> {
        let mut old: HashMap<String, RuleSlot> = self
            .slots
            .drain(..)
            .map(|s| (s.rule.name().to_string(), s))
            .collect();
        let mut fresh = Vec::new();
        for rule in rules {
            match old.remove(rule.name()) {
                Some(slot) if slot.rule.source_digest() == rule.source_digest() => {
                    self.slots.push(slot);
                }
                previous => {
                    let edited = previous.is_some();
                    let mut slot = RuleSlot::new(rule, &self.settings);
                    if let Some(p) = previous {
                        // Keys keep their alert state across an edit;
                        // windows are refilled below.
                        let width = slot.rule.spec().window_secs;
                        let (from, to) = (&p.rule.spec().group_by, &slot.rule.spec().group_by);
                        for (key, ks) in p.keys {
                            if ks.is_active() || ks.has_state() {
                                slot.keys.insert(
                                    // Under an edited `group_by` the key
                                    // keeps the fields it was made of.
                                    key.regroup(from, to),
                                    Box::new(KeyState {
                                        window: Window::new(
                                            width,
                                            self.settings.max_events_per_key,
                                        ),
                                        ..*ks
                                    }),
                                );
                            }
                        }
                        slot.stats = p.stats;
                        slot.refused_at_tick = slot.stats.keys_refused;
                    }
                    fresh.push((self.slots.len(), edited));
                    self.slots.push(slot);
                }
            }
        }
        let mut out = Vec::new();
        for (_, mut slot) in old {
            for (key, ks) in slot.keys.iter_mut() {
                let Some(tracker) = ks.tracker.as_mut() else {
                    continue;
                };
                let labels = slot.rule.key_view(key).labels();
                if let Some(mut alert) = tracker.observe(&slot.policy, &labels, None, now) {
                    alert.reason = Some(ResolveReason::RuleRemoved);
                    let alert = with_evidence(alert, &ks.window, slot.policy.evidence_events);
                    out.push(Transition::of(&slot.rule, alert, now));
                }
            }
        }
        for &(i, edited) in &fresh {
            let slot = &mut self.slots[i];
            let limits = self.settings.key_limits(slot);
            for e in history {
                let event = Arc::new(e.clone());
                RuleSlot::admit(
                    &slot.rule,
                    &mut slot.stats,
                    &mut slot.keys,
                    &mut self.key,
                    &event,
                    now,
                    limits,
                );
            }
            let from = out.len();
            slot.evaluate_keys(now, false, &mut out);
            if edited {
                // What the edit itself resolved.
                for t in &mut out[from..] {
                    if t.alert.status == AlertStatus::Resolved {
                        t.alert.reason = Some(ResolveReason::RuleChanged);
                    }
                }
            }
        }
        // An edited rule runs again; a removed one raises nothing.
        let slots = &self.slots;
        let suspended = |name: &str| {
            slots
                .iter()
                .any(|s| s.rule.name() == name && s.suspended.is_some())
        };
        let present = |name: &str| slots.iter().any(|s| s.rule.name() == name);
        out.extend(self.builtin.resolve_unless(RULE_SUSPENDED, suspended, now));
        out.extend(self.builtin.resolve_unless(RULE_KEYS_LIMIT, present, now));
        out
    }
}
