//! `callwatch simulate`: realistic TUICallKit callback traffic, written as
//! recorded callbacks (the journal's JSON Lines) or posted to a running
//! callwatch. Deterministic: the same options give the same bytes.
//!
//! # Layout
//! - [`anomaly`]: the problems that can be injected and their spelling.
//! - [`cli`]: the `callwatch simulate` options and command.
//! - `model`: who calls whom and how each call goes (the plan of a call).
//! - `encode`: plans as callbacks of either family.
//! - `rng`: the seeded random numbers.
//! - [`post`]: sending a trace to a live daemon, paced in real time.
//!
//! This file merges the calls' callbacks into one stream in arrival order
//! (calls overlap: one call's end arrives after many later calls began)
//! and adds Tencent's duplicate deliveries.

pub mod anomaly;
pub mod cli;
mod encode;
mod model;
pub mod post;
mod rng;

use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;
use std::sync::Arc;

pub use anomaly::{Anomaly, AnomalyKind, PLATFORMS};
use encode::{Callback, Clock, Encoder};
use model::Model;
use rng::Rng;

/// Which callback family the simulated app receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// Legacy call-event and call-status callbacks (`command=...`).
    A,
    /// IM-style call callbacks (`CallbackCommand=Call.CallbackAfter...`).
    B,
    /// Both, decided per call (a quarter of the calls IM-style).
    #[default]
    Mixed,
}

impl FromStr for Family {
    type Err = String;

    fn from_str(s: &str) -> Result<Family, String> {
        match s.to_ascii_lowercase().as_str() {
            "a" => Ok(Family::A),
            "b" => Ok(Family::B),
            "mixed" => Ok(Family::Mixed),
            _ => Err(format!("family {s:?}: expected a, b or mixed")),
        }
    }
}

/// What to simulate. [`Default`] gives the command line's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Seed of the random numbers: the same seed, the same trace.
    pub seed: u64,
    /// Calls to place.
    pub calls: u64,
    /// Mean calls started per second.
    pub rate: f64,
    /// Distinct users (`u0001`...), besides any an `offline` anomaly names.
    pub users: u32,
    /// Unix seconds when the first call may start; anomaly offsets count
    /// from here.
    pub start: i64,
    pub sdkappid: u64,
    pub family: Family,
    pub anomalies: Vec<Anomaly>,
    /// Probability that a delivery is repeated, as Tencent repeats a
    /// callback whose acknowledgement it did not see in time.
    pub retries: f64,
}

/// `--start`'s default: 2026-01-01T00:00:00Z.
pub const DEFAULT_START: i64 = 1_767_225_600;

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            seed: 1,
            calls: 1000,
            rate: 1.0,
            users: 200,
            start: DEFAULT_START,
            sdkappid: 1_400_000_001,
            family: Family::Mixed,
            anomalies: Vec::new(),
            retries: 0.0,
        }
    }
}

impl SimOptions {
    /// Checks the values the types allow but the model cannot use; the
    /// error names the option.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(format!("--rate {}: must be a positive number", self.rate));
        }
        if self.users < 2 {
            return Err(format!(
                "--users {}: at least 2 are needed for a call",
                self.users
            ));
        }
        if !(0.0..1.0).contains(&self.retries) {
            return Err(format!(
                "--retries {}: must be a probability below 1",
                self.retries
            ));
        }
        Ok(())
    }
}

/// What an anomaly did: how many calls it changed (for `outage`, how many
/// calls it pushed past its end).
#[derive(Debug, Clone, PartialEq)]
pub struct Injected {
    pub anomaly: Anomaly,
    pub calls: u64,
}

/// What a trace holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimSummary {
    /// Callbacks written, duplicates included.
    pub callbacks: u64,
    /// Of those, repeated deliveries.
    pub duplicates: u64,
    pub calls: u64,
    /// Arrival of the first and last callback (Unix ms).
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    /// Callbacks per command (duplicates not counted).
    pub commands: BTreeMap<String, u64>,
    pub injected: Vec<Injected>,
}

impl fmt::Display for SimSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let span = match (self.first_ms, self.last_ms) {
            (Some(a), Some(b)) => (b - a) / 1000,
            _ => 0,
        };
        writeln!(
            f,
            "{} callbacks ({} duplicate deliveries) from {} calls over {span} s",
            self.callbacks, self.duplicates, self.calls
        )?;
        let commands: Vec<String> = self
            .commands
            .iter()
            .map(|(c, n)| format!("{c}={n}"))
            .collect();
        writeln!(f, "commands: {}", commands.join(" "))?;
        for i in &self.injected {
            let what = match i.anomaly.kind {
                AnomalyKind::Outage => "calls moved past it",
                AnomalyKind::Offline { .. } => "calls left unanswered",
                AnomalyKind::Interrupt { .. } => "calls interrupted",
                AnomalyKind::Fail { .. } => "calls failed",
                AnomalyKind::Reject { .. } => "calls rejected",
                AnomalyKind::Slow { .. } => "calls answered late",
            };
            writeln!(f, "injected: {} ({} {what})", i.anomaly, i.calls)?;
        }
        Ok(())
    }
}

/// A callback waiting for its turn in arrival order.
struct Pending {
    received: i64,
    seq: u64,
    tail: Arc<[u8]>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.received, self.seq) == (other.received, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed: `BinaryHeap` is a max-heap, the earliest must come first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.received, other.seq).cmp(&(self.received, self.seq))
    }
}

/// One delivery: a recorded-callback line, split as `{"received_at":N,` +
/// tail so a repeated delivery shares its tail.
pub(crate) struct Delivery {
    pub received_ms: i64,
    tail: Arc<[u8]>,
}

impl Delivery {
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"received_at\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.received_ms).as_bytes());
        out.push(b',');
        out.extend_from_slice(&self.tail);
    }
}

/// Tencent gives up after this many repeats.
const MAX_REPEATS: u32 = 6;

/// The trace as a stream of deliveries in arrival order.
pub(crate) struct Trace<'o> {
    model: Model<'o>,
    /// Network delays and repeats: a stream of their own, so that turning
    /// `--retries` on changes which callbacks repeat, not the calls.
    net: Rng,
    clock: Clock,
    sdkappid: String,
    retries: f64,
    heap: BinaryHeap<Pending>,
    seq: u64,
    /// Nothing generated later can arrive before this (Unix ms).
    watermark: i64,
    done: bool,
    scratch: Vec<Callback>,
    summary: SimSummary,
    commands: BTreeMap<&'static str, u64>,
}

impl<'o> Trace<'o> {
    pub fn new(opts: &'o SimOptions, speed: f64) -> Trace<'o> {
        Trace {
            model: Model::new(opts),
            net: Rng::new(opts.seed ^ 0x6e65_7477_6f72_6b21),
            clock: Clock {
                start: opts.start as f64,
                speed,
            },
            sdkappid: opts.sdkappid.to_string(),
            retries: opts.retries,
            heap: BinaryHeap::new(),
            seq: 0,
            watermark: i64::MIN,
            done: false,
            scratch: Vec::new(),
            summary: SimSummary::default(),
            commands: BTreeMap::new(),
        }
    }

    fn push(&mut self, t: f64, tail: Arc<[u8]>) {
        let received = self.clock.millis(t);
        self.heap.push(Pending {
            received,
            seq: self.seq,
            tail,
        });
        self.seq += 1;
    }

    /// Plans the next call and queues its callbacks; false when all
    /// calls are made.
    fn generate(&mut self) -> bool {
        let Some(call) = self.model.next_call() else {
            return false;
        };
        let encoder = Encoder {
            users: &self.model.users,
            sdkappid: &self.sdkappid,
            clock: self.clock,
        };
        let mut callbacks = std::mem::take(&mut self.scratch);
        encoder.encode(&call, &mut callbacks);
        for cb in callbacks.drain(..) {
            *self.commands.entry(cb.command).or_default() += 1;
            // Network delay; one in a hundred is held up for seconds.
            let mut delay = self.net.uniform(0.02, 0.4);
            if self.net.chance(0.01) {
                delay += self.net.uniform(2.0, 30.0);
            }
            let t = cb.t + delay;
            let tail: Arc<[u8]> = cb.tail.into();
            let mut k = 0;
            while k < MAX_REPEATS && self.retries > 0.0 && self.net.chance(self.retries) {
                k += 1;
                // Tencent waits 2 s for the acknowledgement, then sends again.
                let again = t + 2.0 * k as f64 + self.net.uniform(0.0, 0.3);
                self.push(again, tail.clone());
                self.summary.duplicates += 1;
            }
            self.push(t, tail);
        }
        self.scratch = callbacks;
        self.watermark = self.clock.millis(call.t0);
        true
    }

    pub fn next_delivery(&mut self) -> Option<Delivery> {
        loop {
            if let Some(top) = self.heap.peek() {
                if self.done || top.received < self.watermark {
                    let p = self.heap.pop()?;
                    self.summary.callbacks += 1;
                    self.summary.first_ms.get_or_insert(p.received);
                    self.summary.last_ms = Some(p.received);
                    return Some(Delivery {
                        received_ms: p.received,
                        tail: p.tail,
                    });
                }
            }
            if self.done {
                return None;
            }
            if !self.generate() {
                self.done = true;
            }
        }
    }

    /// The summary so far (complete once the stream is exhausted).
    pub fn summary(&self) -> SimSummary {
        let mut s = self.summary.clone();
        s.calls = self.model.made;
        s.commands = self
            .commands
            .iter()
            .map(|(c, n)| (c.to_string(), *n))
            .collect();
        s.injected = self
            .model
            .effects
            .affected
            .iter()
            .zip(self.model.anomalies())
            .map(|(n, a)| Injected {
                anomaly: (*a).clone(),
                calls: *n,
            })
            .collect();
        s
    }
}

/// Writes the trace `opts` describe to `out`, one recorded callback per
/// line in arrival order, and says what it holds. Invalid options are an
/// `InvalidInput` error naming the option.
pub fn write_trace(opts: &SimOptions, out: &mut dyn Write) -> io::Result<SimSummary> {
    opts.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut trace = Trace::new(opts, 1.0);
    // Lines are gathered and written in large pieces: `out` may be an
    // unbuffered file, and one call through `dyn Write` per line costs.
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 18);
    while let Some(d) = trace.next_delivery() {
        d.write_to(&mut buf);
        if buf.len() >= (1 << 18) - 1024 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(trace.summary())
}

#[cfg(test)]
mod tests;
