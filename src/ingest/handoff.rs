//! The durable hand-off of an accepted callback: its journal line goes to
//! the journal writer, and the writer's own thread, once the line is
//! durable, releases retries waiting on it and queues the events for the
//! engine. The request only waits for that outcome, so neither a task nor
//! a second hop per callback sits on the hot path, and a request that is
//! dropped while it waits (Tencent's 2 s timeout) loses nothing.
//!
//! What wakes another thread (the engine's queue, the waiting requests) is
//! staged per callback and released once per journal batch, all of it at
//! once: the engine thread then finds the whole batch when it wakes
//! instead of waking, draining one callback and sleeping again for each.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Accepted, Ingest};
use crate::event::Event;

/// One callback between its journal append and its engine hand-off.
/// Consumed by [`Pending::finish`] on the writer thread; dropped without
/// it (the writer stopped or the line was never queued), it undoes the
/// reservation as a failed write would, so the retry is processed.
struct Pending {
    ingest: Arc<Ingest>,
    key: u64,
    received_at: i64,
    events: Vec<Event>,
    /// The engine queue place reserved before anything was made durable.
    permit: mpsc::OwnedPermit<Accepted>,
    reply: oneshot::Sender<Result<(), String>>,
}

/// Successful completions of the journal batch being finished, held until
/// its end ([`release_batch`]). Only the writer thread fills its own.
#[derive(Default)]
struct Staged {
    engine: Vec<(mpsc::OwnedPermit<Accepted>, Accepted)>,
    replies: Vec<oneshot::Sender<Result<(), String>>>,
}

thread_local! {
    static STAGED: RefCell<Staged> = RefCell::default();
}

/// The journal's after-batch hook: queues the batch's callbacks for the
/// engine, then answers their requests (so a 200 still follows the
/// engine's place being filled).
pub(super) fn release_batch() {
    STAGED.with(|s| {
        let mut s = s.borrow_mut();
        for (permit, accepted) in s.engine.drain(..) {
            permit.send(accepted);
        }
        for reply in s.replies.drain(..) {
            let _ = reply.send(Ok(()));
        }
    });
}

/// [`Pending`] until it is finished.
struct Guard(Option<Pending>);

impl Guard {
    fn finish(mut self, stored: io::Result<()>) {
        if let Some(p) = self.0.take() {
            p.finish(stored.map_err(|e| e.to_string()));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            p.finish(Err("journal writer has stopped".into()));
        }
    }
}

impl Pending {
    fn finish(self, stored: Result<(), String>) {
        let Pending {
            ingest,
            key,
            received_at,
            events,
            permit,
            reply,
        } = self;
        // Retries of this delivery that arrived meanwhile learn the outcome.
        if let Some(Some(waiting)) = ingest.lock_in_flight().remove(&key) {
            let _ = waiting.send(Some(stored.is_ok()));
        }
        if let Err(e) = stored {
            // The journal writer logs the failure itself, once per
            // interval however many callbacks it refuses.
            tracing::debug!(error = %e, "journal append failed; callback refused");
            if let Ok(mut d) = ingest.dedup.lock() {
                d.release(key);
            }
            let _ = reply.send(Err(e));
            return;
        }
        ingest.metrics.events.inc_by(events.len() as u64);
        if ingest.tap.receiver_count() > 0 {
            for e in &events {
                let _ = ingest.tap.send(e.clone());
            }
        }
        ingest.feed.push(received_at, &events);
        ingest.metrics.queue_depth.inc();
        let accepted = Accepted {
            received_at,
            events,
            seq: 0,
            tick: false,
        };
        if !ingest.batched {
            permit.send(accepted);
            let _ = reply.send(Ok(()));
            return;
        }
        STAGED.with(|s| {
            let mut s = s.borrow_mut();
            s.engine.push((permit, accepted));
            s.replies.push(reply);
        });
    }
}

impl Ingest {
    /// Appends `line` to the journal and, once it is durable, queues
    /// `events` for the engine (in `permit`'s place). The append is queued
    /// before this returns; the future only waits for the outcome, so
    /// dropping it changes nothing. An error is the reason the callback
    /// was not stored (the dedup reservation `key` is then released).
    pub(super) fn store(
        self: &Arc<Self>,
        key: u64,
        line: Vec<u8>,
        received_at: i64,
        events: Vec<Event>,
        permit: mpsc::OwnedPermit<Accepted>,
    ) -> impl Future<Output = Result<(), String>> + use<> {
        let (reply, outcome) = oneshot::channel();
        let guard = Guard(Some(Pending {
            ingest: self.clone(),
            key,
            received_at,
            events,
            permit,
            reply,
        }));
        // On failure the guard is dropped unfinished, which releases the
        // reservation and answers `outcome` with an error.
        let queued =
            self.journal
                .append_then(line, received_at, Box::new(move |r| guard.finish(r)));
        async move {
            let stored = outcome
                .await
                .unwrap_or_else(|_| Err("journal writer has stopped".into()));
            match queued {
                Err(e) => Err(e.to_string()),
                Ok(()) => stored,
            }
        }
    }
}
