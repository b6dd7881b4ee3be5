//! The sliding window of one (rule, key): the events that entered it,
//! ordered by (event time, arrival), at most `width` seconds old and at most
//! `max_events` long, plus the incremental aggregates every `w.*` query of
//! the rule language (rules/README.md) is answered from. Pure: no I/O and no clock — "now" is passed in
//! by the caller. It does not decide which events enter (that is the rule)
//! nor when to expire or evaluate (that is the engine).

mod fields;
mod order;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::event::Event;
use fields::{AggKind, Numeric, Tracked};

/// Count and newest position of one event name in the window.
#[derive(Debug, Clone)]
struct NameStat {
    name: Box<str>,
    count: u32,
    /// Absolute position (see [`Window::base`]) of the newest event with
    /// this name.
    last: u64,
}

/// Events of one key in one rule, with their aggregates.
///
/// Event names are counted eagerly (rules ask about them on every
/// evaluation and there are few of them); aggregates over any other field
/// are built on that field's first query and maintained from then on.
#[derive(Debug, Clone)]
pub struct Window {
    width: i64,
    max_events: usize,
    events: VecDeque<Arc<Event>>,
    /// Absolute position of `events[0]`: the number of events that ever
    /// left the front. Positions stored in `names` stay valid as the front
    /// moves, so expiry never has to rewrite them.
    base: u64,
    names: Vec<NameStat>,
    fields: Vec<Tracked>,
}

impl Window {
    /// An empty window `width_secs` wide holding at most `max_events`.
    /// It allocates nothing until the first event arrives.
    pub fn new(width_secs: i64, max_events: usize) -> Window {
        Window {
            width: width_secs,
            max_events,
            events: VecDeque::new(),
            base: 0,
            names: Vec::new(),
            fields: Vec::new(),
        }
    }

    pub fn width_secs(&self) -> i64 {
        self.width
    }

    pub fn max_events(&self) -> usize {
        self.max_events
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Adds an event in (event time, arrival) order: O(1) amortised when it
    /// is the newest, O(n) when it arrives out of order. Beyond
    /// `max_events` the oldest events are dropped.
    pub fn push(&mut self, e: Arc<Event>) {
        let t = e.event_time;
        let at = if self.events.back().is_none_or(|b| b.event_time <= t) {
            self.events.len()
        } else {
            self.events.partition_point(|x| x.event_time <= t)
        };
        let pos = self.base + at as u64;
        if at < self.events.len() {
            // Everything from `at` on moves one place towards the back.
            for s in &mut self.names {
                if s.last >= pos {
                    s.last += 1;
                }
            }
        }
        match self.names.iter_mut().find(|s| *s.name == *e.event) {
            Some(s) => {
                s.count += 1;
                s.last = s.last.max(pos);
            }
            None => {
                // Most windows see one to three names: grow one at a time
                // rather than by doubling, since a million keys multiply it.
                self.names.reserve_exact(1);
                self.names.push(NameStat {
                    name: e.event.as_str().into(),
                    count: 1,
                    last: pos,
                });
            }
        }
        for t in &mut self.fields {
            t.add(&e);
        }
        self.events.insert(at, e);
        while self.events.len() > self.max_events {
            self.pop_front();
        }
    }

    /// Drops events with `event_time <= now - width`; true if any left.
    pub fn expire(&mut self, now: i64) -> bool {
        let cutoff = now.saturating_sub(self.width);
        let mut dropped = false;
        while self.events.front().is_some_and(|e| e.event_time <= cutoff) {
            self.pop_front();
            dropped = true;
        }
        if dropped {
            self.release_spare_memory();
        }
        dropped
    }

    fn pop_front(&mut self) {
        let Some(e) = self.events.pop_front() else {
            return;
        };
        self.base += 1;
        if let Some(i) = self.names.iter().position(|s| *s.name == *e.event) {
            self.names[i].count -= 1;
            if self.names[i].count == 0 {
                self.names.swap_remove(i);
            }
        }
        for t in &mut self.fields {
            t.remove(&e);
        }
    }

    /// Idle keys are many; an emptied window gives back everything, and a
    /// shrunken one the bulk of its spare queue capacity.
    fn release_spare_memory(&mut self) {
        if self.events.is_empty() {
            self.events = VecDeque::new();
            self.names = Vec::new();
            self.fields = Vec::new();
        } else if self.events.capacity() > 64 && self.events.len() * 4 < self.events.capacity() {
            self.events.shrink_to(self.events.len() * 2);
        }
    }

    /// Number of events in the window.
    pub fn count(&self) -> usize {
        self.events.len()
    }

    /// Number of events whose `event` is one of `names`.
    pub fn count_of<S: AsRef<str>>(&self, names: &[S]) -> usize {
        self.names
            .iter()
            .filter(|s| names.iter().any(|n| n.as_ref() == &*s.name))
            .map(|s| s.count as usize)
            .sum()
    }

    /// `count_of(num) / count_of(den)`, 0.0 when the denominator is 0.
    pub fn ratio<S: AsRef<str>, T: AsRef<str>>(&self, num: &[S], den: &[T]) -> f64 {
        match self.count_of(den) {
            0 => 0.0,
            d => self.count_of(num) as f64 / d as f64,
        }
    }

    /// Length of the newest run of consecutive events whose `event` is one
    /// of `names`: everything after the newest event of any other name.
    pub fn streak<S: AsRef<str>>(&self, names: &[S]) -> usize {
        let end = self.base + self.events.len() as u64;
        let newest_other = self
            .names
            .iter()
            .filter(|s| !names.iter().any(|n| n.as_ref() == &*s.name))
            .map(|s| s.last)
            .max();
        match newest_other {
            Some(last) => (end - last - 1) as usize,
            None => self.events.len(),
        }
    }

    /// The aggregate of `kind` over `field`, built on first use.
    fn tracked(&mut self, field: &str, kind: AggKind) -> Option<&Tracked> {
        // An empty window answers without building anything, so idle keys
        // stay small.
        if self.events.is_empty() {
            return None;
        }
        let i = match self.fields.iter().position(|t| t.is(field, kind)) {
            Some(i) => i,
            None => {
                let t = Tracked::build(field, kind, self.events.iter().map(|e| &**e));
                self.fields.push(t);
                self.fields.len() - 1
            }
        };
        Some(&self.fields[i])
    }

    fn numeric(&mut self, field: &str) -> Option<&Numeric> {
        self.tracked(field, AggKind::Numeric)?.numeric()
    }

    /// Number of distinct values of `field` among the events that have it.
    pub fn distinct(&mut self, field: &str) -> usize {
        self.tracked(field, AggKind::Distinct)
            .map_or(0, Tracked::distinct)
    }

    /// Sum of the numeric `field` over the events that have it.
    pub fn sum(&mut self, field: &str) -> Option<f64> {
        self.numeric(field)?.sum()
    }

    pub fn avg(&mut self, field: &str) -> Option<f64> {
        self.numeric(field)?.avg()
    }

    pub fn min(&mut self, field: &str) -> Option<f64> {
        self.numeric(field)?.min()
    }

    pub fn max(&mut self, field: &str) -> Option<f64> {
        self.numeric(field)?.max()
    }

    /// Nearest-rank percentile `p` (clamped to 0..=100) of the numeric
    /// `field`: the smallest value with at least `p`% of values at or below.
    pub fn percentile(&mut self, field: &str, p: f64) -> Option<f64> {
        self.numeric(field)?.percentile(p)
    }

    /// The oldest event.
    pub fn first(&self) -> Option<&Arc<Event>> {
        self.events.front()
    }

    /// The newest event.
    pub fn last(&self) -> Option<&Arc<Event>> {
        self.events.back()
    }

    /// The events, oldest first.
    pub fn events(&self) -> impl DoubleEndedIterator<Item = &Arc<Event>> + ExactSizeIterator {
        self.events.iter()
    }
}

#[cfg(test)]
mod tests;
