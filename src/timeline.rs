//! Engine time taken from event time, for the offline commands (`replay`
//! and `test`): now is the newest event time seen, and the engine ticks
//! every `rules.tick` of event time, counted from the first event. The
//! same events in the same order therefore give the same transitions.
//! Reading inputs and printing belong to the callers.

use std::sync::Arc;

use crate::engine::{Engine, Transition};
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
