//! The live feed of accepted callbacks the console shows: a bounded ring
//! of the newest events, per-minute counts for the last day, and a
//! bounded broadcast for server-sent event streams.
//!
//! Ingest hands each journaled, non-duplicate callback's events to
//! [`Feed::push`], which only clones them into the ring under a short
//! lock: nothing is formatted on the callback path (a stream formats an
//! item once, the first time any reader needs it). A reader that falls
//! behind loses items (it is told how many), never slows ingest. The feed
//! is memory only: it starts empty after a restart. It owns no HTTP; the
//! endpoints are in `api/events.rs`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Value};
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};

use crate::event::Event;

/// Events kept for `GET /api/v1/events/recent` (its largest `limit`).
pub const RING_CAPACITY: usize = 1000;
/// Minutes of per-minute counts kept (a day).
pub const MINUTES_KEPT: usize = 1440;
/// Items a stream may fall behind before it skips ahead.
const BROADCAST_CAPACITY: usize = 1024;
/// Streams served at once; each holds a connection and a broadcast slot.
pub const MAX_STREAMS: usize = 64;

const MINUTE_MS: i64 = 60_000;

/// One accepted event as the console sees it, numbered in arrival order.
#[derive(Debug)]
pub struct FeedEvent {
    /// 1, 2, 3... since the daemon started; a stream's `id`.
    pub seq: u64,
    /// When the callback carrying it was received (Unix ms).
    pub received_ms: i64,
    pub event: Event,
    /// The JSON text, made the first time a reader needs it.
    json: OnceLock<String>,
}

impl FeedEvent {
    /// The object the endpoints show: absent optional fields are null.
    pub fn to_json(&self) -> Value {
        let e = &self.event;
        json!({
            "seq": self.seq,
            "received_ms": self.received_ms,
            "sdkappid": e.sdkappid,
            "command": e.command.as_str(),
            "event": e.event.as_str(),
            "user_id": e.user_id.as_deref(),
            "role": e.role.as_deref(),
            "platform": e.platform.as_deref(),
            "call_id": e.call_id.as_deref(),
            "room_id": e.room_id.as_deref(),
            "call_result": (!e.call_result.is_empty()).then_some(e.call_result.as_str()),
            "event_time": e.event_time,
        })
    }

    /// [`Self::to_json`] as text, formatted once however many streams
    /// send it.
    pub fn json_text(&self) -> &str {
        self.json.get_or_init(|| self.to_json().to_string())
    }
}

/// Exact-match filters over the feed; `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    pub sdkappid: Option<u64>,
    pub user: Option<String>,
    pub platform: Option<String>,
    pub command: Option<String>,
}

impl EventFilter {
    pub fn matches(&self, e: &Event) -> bool {
        let text = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        self.sdkappid.is_none_or(|a| a == e.sdkappid)
            && text(&self.user, e.user_id.as_deref())
            && text(&self.platform, e.platform.as_deref())
            && text(&self.command, Some(e.command.as_str()))
    }
}

/// One minute's count: the minute's start (Unix ms) and events in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteCount {
    pub minute_ms: i64,
    pub count: u64,
}

struct Ring {
    last_seq: u64,
    recent: VecDeque<Arc<FeedEvent>>,
    /// Oldest first; only minutes that had events.
    minutes: VecDeque<MinuteCount>,
}

/// What a stream subscriber starts from: the live receiver and the items
/// already in the ring after the `Last-Event-ID` it gave, if any.
pub struct Subscription {
    pub live: broadcast::Receiver<Arc<FeedEvent>>,
    /// Newer than the client's last id, oldest first; the live receiver
    /// may repeat some of them, which the reader skips by `seq`.
    pub backlog: Vec<Arc<FeedEvent>>,
    /// Holds one of the [`MAX_STREAMS`] places until dropped.
    pub permit: OwnedSemaphorePermit,
    /// Turns true when the daemon stops: streams end so shutdown need
    /// not wait for them.
    pub closed: watch::Receiver<bool>,
}

/// The ring, the counts and the broadcast (see the module doc).
pub struct Feed {
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<FeedEvent>>,
    streams: Arc<Semaphore>,
    closed: watch::Sender<bool>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new()
    }
}

impl Feed {
    pub fn new() -> Feed {
        Feed {
            ring: Mutex::new(Ring {
                last_seq: 0,
                recent: VecDeque::with_capacity(RING_CAPACITY),
                minutes: VecDeque::new(),
            }),
            tx: broadcast::channel(BROADCAST_CAPACITY).0,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            closed: watch::channel(false).0,
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        // The ring is always consistent between statements: a panic
        // elsewhere while holding it leaves nothing half-done.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a journaled callback's events (the callback path: clones and
    /// counts, nothing more).
    pub fn push(&self, received_ms: i64, events: &[Event]) {
        let mut ring = self.ring();
        let minute_ms = received_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let live = self.tx.receiver_count() > 0;
        for e in events {
            ring.last_seq += 1;
            let item = Arc::new(FeedEvent {
                seq: ring.last_seq,
                received_ms,
                event: e.clone(),
                json: OnceLock::new(),
            });
            if ring.recent.len() == RING_CAPACITY {
                ring.recent.pop_front();
            }
            if live {
                // Sent under the lock so streams see `seq` in order.
                let _ = self.tx.send(item.clone());
            }
            ring.recent.push_back(item);
        }
        count_minute(&mut ring.minutes, minute_ms, events.len() as u64);
    }

    /// Up to `limit` newest events that match, newest first.
    pub fn recent(&self, filter: &EventFilter, limit: usize) -> Vec<Arc<FeedEvent>> {
        let ring = self.ring();
        ring.recent
            .iter()
            .rev()
            .filter(|f| filter.matches(&f.event))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Counts for the `minutes` minutes up to and including the one
    /// holding `now_ms`, oldest first, minutes without events as 0.
    pub fn per_minute(&self, minutes: usize, now_ms: i64) -> Vec<MinuteCount> {
        let minutes = minutes.min(MINUTES_KEPT) as i64;
        let last = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let first = last - (minutes - 1) * MINUTE_MS;
        let ring = self.ring();
        let mut have = ring
            .minutes
            .iter()
            .filter(|m| m.minute_ms >= first && m.minute_ms <= last)
            .peekable();
        (0..minutes)
            .map(|i| {
                let minute_ms = first + i * MINUTE_MS;
                let count = match have.peek() {
                    Some(m) if m.minute_ms == minute_ms => have.next().map_or(0, |m| m.count),
                    _ => 0,
                };
                MinuteCount { minute_ms, count }
            })
            .collect()
    }

    /// A place for one more stream, or `None` when [`MAX_STREAMS`] are
    /// open. `after` is the client's `Last-Event-ID`: items still in the
    /// ring after it are handed back first, so a reconnecting page misses
    /// nothing the ring holds.
    pub fn subscribe(&self, after: Option<u64>) -> Option<Subscription> {
        let permit = self.streams.clone().try_acquire_owned().ok()?;
        // Subscribed under the lock: every item is either in the backlog
        // or on the receiver (or both).
        let ring = self.ring();
        let live = self.tx.subscribe();
        let backlog = match after {
            Some(id) if id < ring.last_seq => {
                ring.recent.iter().filter(|f| f.seq > id).cloned().collect()
            }
            _ => Vec::new(),
        };
        drop(ring);
        Some(Subscription {
            live,
            backlog,
            permit,
            closed: self.closed.subscribe(),
        })
    }

    /// Ends every stream (shutdown), and refuses none afterwards: a new
    /// stream ends at once.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }
}

/// Adds `n` to the count of `minute_ms`, keeping at most a day of minutes.
/// Callbacks finish their journal writes slightly out of order, so a
/// minute may be one already passed.
fn count_minute(minutes: &mut VecDeque<MinuteCount>, minute_ms: i64, n: u64) {
    if n == 0 {
        return;
    }
    match minutes.iter().rposition(|m| m.minute_ms <= minute_ms) {
        Some(i) if minutes[i].minute_ms == minute_ms => minutes[i].count += n,
        Some(i) => minutes.insert(
            i + 1,
            MinuteCount {
                minute_ms,
                count: n,
            },
        ),
        None => minutes.push_front(MinuteCount {
            minute_ms,
            count: n,
        }),
    }
    let newest = minutes.back().map_or(minute_ms, |m| m.minute_ms);
    let horizon = newest - (MINUTES_KEPT as i64 - 1) * MINUTE_MS;
    while minutes.front().is_some_and(|m| m.minute_ms < horizon) {
        minutes.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(user: &str, platform: &str) -> Event {
        Event {
            sdkappid: 1400000001,
            command: "callevent".into(),
            event: "start_call".into(),
            user_id: Some(user.into()),
            platform: Some(platform.into()),
            event_time: 1_700_000_000,
            ..Event::default()
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_and_filters_exactly() {
        let feed = Feed::new();
        for i in 0..RING_CAPACITY + 5 {
            let platform = if i % 2 == 0 { "Android" } else { "iOS" };
            feed.push(1_000, &[event(&format!("u{i}"), platform)]);
        }
        let all = feed.recent(&EventFilter::default(), usize::MAX);
        assert_eq!(all.len(), RING_CAPACITY);
        assert_eq!(all[0].seq, (RING_CAPACITY + 5) as u64);
        assert_eq!(all[RING_CAPACITY - 1].seq, 6);
        let ios = EventFilter {
            platform: Some("iOS".into()),
            ..EventFilter::default()
        };
        let got = feed.recent(&ios, 3);
        assert_eq!(got.len(), 3);
        assert!(got
            .iter()
            .all(|f| f.event.platform.as_deref() == Some("iOS")));
        let one = EventFilter {
            user: Some("u1000".into()),
            sdkappid: Some(1400000001),
            command: Some("callevent".into()),
            ..EventFilter::default()
        };
        assert_eq!(feed.recent(&one, 10).len(), 1);
        let other_app = EventFilter {
            sdkappid: Some(7),
            ..EventFilter::default()
        };
        assert!(feed.recent(&other_app, 10).is_empty());
        // "Andr" is not "Android": matching is exact.
        let prefix = EventFilter {
            platform: Some("Andr".into()),
            ..EventFilter::default()
        };
        assert!(feed.recent(&prefix, 10).is_empty());
    }

    #[test]
    fn per_minute_is_dense_oldest_first_and_tolerates_late_writes() {
        let feed = Feed::new();
        let t0 = 1_700_000_000_000 / MINUTE_MS * MINUTE_MS;
        feed.push(t0 + 1_000, &[event("a", "iOS"), event("b", "iOS")]);
        feed.push(t0 + 2 * MINUTE_MS + 5, &[event("c", "iOS")]);
        // A write finishing after a later minute's.
        feed.push(t0 + 59_999, &[event("d", "iOS")]);
        let m = feed.per_minute(4, t0 + 3 * MINUTE_MS + 10);
        let counts: Vec<(i64, u64)> = m.iter().map(|c| (c.minute_ms - t0, c.count)).collect();
        assert_eq!(
            counts,
            [
                (0, 3),
                (MINUTE_MS, 0),
                (2 * MINUTE_MS, 1),
                (3 * MINUTE_MS, 0)
            ]
        );
        assert_eq!(feed.per_minute(10_000, t0).len(), MINUTES_KEPT);
    }

    #[test]
    fn minutes_older_than_a_day_are_dropped() {
        let mut minutes = VecDeque::new();
        for i in 0..(MINUTES_KEPT as i64 + 10) {
            count_minute(&mut minutes, i * MINUTE_MS, 1);
        }
        assert_eq!(minutes.len(), MINUTES_KEPT);
        assert_eq!(minutes.front().map(|m| m.minute_ms), Some(10 * MINUTE_MS));
    }

    #[test]
    fn a_resuming_subscriber_gets_what_it_missed_and_streams_are_capped() {
        let feed = Feed::new();
        feed.push(
            1,
            &[event("a", "iOS"), event("b", "iOS"), event("c", "iOS")],
        );
        let sub = feed.subscribe(Some(1)).expect("a place");
        let seqs: Vec<u64> = sub.backlog.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, [2, 3]);
        let mut held = vec![sub];
        while let Some(s) = feed.subscribe(None) {
            held.push(s);
        }
        assert_eq!(held.len(), MAX_STREAMS);
        held.pop();
        assert!(feed.subscribe(None).is_some(), "a place frees when dropped");
    }

    #[test]
    fn absent_fields_are_null() {
        let feed = Feed::new();
        let mut e = event("a", "iOS");
        e.platform = None;
        feed.push(5, &[e]);
        let got = feed.recent(&EventFilter::default(), 1);
        let v: Value = serde_json::from_str(got[0].json_text()).expect("json");
        assert_eq!(v["platform"], Value::Null);
        assert_eq!(v["call_result"], Value::Null);
        assert_eq!(v["user_id"], "a");
        assert_eq!(v["seq"], 1);
        assert_eq!(v["received_ms"], 5);
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "seq",
                "received_ms",
                "sdkappid",
                "command",
                "event",
                "user_id",
                "role",
                "platform",
                "call_id",
                "room_id",
                "call_result",
                "event_time"
            ]
        );
    }
}
