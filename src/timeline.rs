//! Engine time taken from event time, for the offline commands (`replay`
//! and `test`): now is the newest event time seen, and the engine ticks
//! every `rules.tick` of event time, counted from the first event. The
//! same events in the same order therefore give the same transitions.
//! Reading inputs and printing belong to the callers.

use std::sync::Arc;

use crate::alert::Transition;
use crate::engine::Engine;
use crate::event::Event;

/// Which engine call produced a batch of transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Tick,
    Event,
}

/// An engine driven in event time.
pub struct Timeline {
    engine: Engine,
    tick: i64,
    /// Newest event time seen; `None` before the first event.
    now: Option<i64>,
    next_tick: i64,
}

impl Timeline {
    /// `tick_secs` below 1 is taken as 1, so time always moves on.
    pub fn new(engine: Engine, tick_secs: i64) -> Timeline {
        Timeline {
            engine,
            tick: tick_secs.max(1),
            now: None,
            next_tick: i64::MAX,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Feeds one event: first the ticks due up to its time, then the
    /// event itself at engine time `max(now, event_time)`. `emit` gets
    /// each engine call's transitions (possibly none) with the engine.
    pub fn feed(
        &mut self,
        event: &Arc<Event>,
        mut emit: impl FnMut(Cause, Vec<Transition>, &Engine),
    ) {
        let t = event.event_time;
        let current = match self.now {
            None => {
                self.next_tick = t + self.tick;
                t
            }
            Some(n) => n,
        };
        // Ticks due before this event happen first, in event time.
        self.tick_through(t, &mut emit);
        let n = current.max(t);
        self.now = Some(n);
        let transitions = self.engine.on_shared_event(event, n, true);
        emit(Cause::Event, transitions, &self.engine);
    }

    /// Runs the ticks due up to and including `t` with no event at `t`
    /// (a rule test's evaluation time). Before the first event there is
    /// nothing to tick.
    pub fn tick_through(&mut self, t: i64, mut emit: impl FnMut(Cause, Vec<Transition>, &Engine)) {
        while self.next_tick <= t {
            let transitions = self.engine.on_tick(self.next_tick);
            emit(Cause::Tick, transitions, &self.engine);
            self.next_tick += self.tick;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertStatus;
    use crate::config::RulesConfig;
    use crate::engine::EngineSettings;
    use crate::rules::load_source;

    fn timeline() -> Timeline {
        let source = "const RULE = #{ events: [\"start_call\"], window: \"1m\", for: \"30s\" };\n\
                      fn check(w) { w.count() > 0 }";
        let rule = load_source("r", "r.rhai".as_ref(), source, &RulesConfig::default())
            .unwrap_or_else(|e| panic!("{e:?}"));
        let settings = EngineSettings {
            repeat_secs: 3600,
            max_clock_skew_secs: 60,
            max_events_per_key: 100,
            ..EngineSettings::default()
        };
        Timeline::new(Engine::new(vec![Arc::new(rule)], settings), 10)
    }

    fn start_call(t: i64) -> Arc<Event> {
        Arc::new(Event {
            event: "start_call".into(),
            event_time: t,
            ..Event::default()
        })
    }

    #[test]
    fn ticks_count_from_the_first_event_and_run_before_later_ones() {
        let mut tl = timeline();
        let mut calls = Vec::new();
        // Nothing to tick before any event.
        tl.tick_through(1_000, |c, _, _| calls.push((c, 0)));
        assert!(calls.is_empty());
        tl.feed(&start_call(1_005), |c, t, _| calls.push((c, t.len())));
        // Pending at once (a pending alert is not a transition to notify).
        assert_eq!(calls, [(Cause::Event, 0)]);
        assert_eq!(tl.engine().active_alerts()[0].status, AlertStatus::Pending);
        // Ticks at 1015, 1025 and 1035 come before an event at 1036; the
        // one at 1035 is the first 30 s after pending began.
        calls.clear();
        tl.feed(&start_call(1_036), |c, t, _| calls.push((c, t.len())));
        assert_eq!(
            calls,
            [
                (Cause::Tick, 0),
                (Cause::Tick, 0),
                (Cause::Tick, 1),
                (Cause::Event, 0)
            ]
        );
        let firing = tl.engine().active_alerts();
        assert_eq!(firing[0].status, AlertStatus::Firing);
        // With no event, ticks still run up to a given time: the window
        // empties at 1096 and the tick at 1105 resolves the alert.
        tl.tick_through(1_100, |_, _, _| {});
        assert_eq!(tl.engine().active_alerts().len(), 1);
        tl.tick_through(1_105, |_, _, _| {});
        assert!(tl.engine().active_alerts().is_empty());
    }
}
