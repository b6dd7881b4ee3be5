//! `GET /api/v1/events/{stream,recent,per_minute}`: the live feed of
//! accepted callbacks (`crate::feed`) over HTTP. The JSON bodies are built
//! by plain functions ([`recent`], [`per_minute`]) the console's pages
//! call directly; the stream is server-sent events, one task per reader.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use warp::http::StatusCode;
use warp::Filter;

use super::{error_reply, json_reply};
use crate::feed::{EventFilter, Feed, FeedEvent, Subscription, MINUTES_KEPT, RING_CAPACITY};

/// `limit` of `recent` when none is given.
pub const DEFAULT_LIMIT: usize = 100;
/// `minutes` of `per_minute` when none is given.
pub const DEFAULT_MINUTES: usize = 60;
/// How often an idle stream sends a comment, so proxies keep it open.
const KEEPALIVE: Duration = Duration::from_secs(15);

const FILTERS: [&str; 4] = ["sdkappid", "user", "platform", "command"];

/// The query's filters and its one numeric parameter (`limit` or
/// `minutes`), if `number` names one; a name not understood is an error
/// naming it, as is a value that does not parse.
fn parse_query(raw: &str, number: Option<&str>) -> Result<(EventFilter, Option<usize>), String> {
    let mut filter = EventFilter::default();
    let mut n = None;
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "sdkappid" => {
                let id = v
                    .parse()
                    .map_err(|_| format!("sdkappid: {v:?} is not a number"))?;
                filter.sdkappid = Some(id);
            }
            "user" => filter.user = Some(v),
            "platform" => filter.platform = Some(v),
            "command" => filter.command = Some(v),
            name if Some(name) == number => {
                n = Some(
                    v.parse()
                        .map_err(|_| format!("{name}: {v:?} is not a whole number"))?,
                );
            }
            other => {
                let mut known: Vec<&str> = FILTERS.to_vec();
                known.extend(number);
                return Err(format!(
                    "unknown query parameter {other:?} (known: {})",
                    known.join(", ")
                ));
            }
        }
    }
    Ok((filter, n))
}

/// `{"events": [...]}`: up to `limit` (at most 1000) newest matching
/// events, newest first.
pub fn recent(feed: &Feed, filter: &EventFilter, limit: usize) -> Value {
    let events: Vec<Value> = feed
        .recent(filter, limit.min(RING_CAPACITY))
        .iter()
        .map(|f| f.to_json())
        .collect();
    json!({ "events": events })
}

/// `{"minutes": [{"minute_ms", "count"}, ...]}`: events per minute for the
/// last `minutes` (at most 1440) minutes up to `now_ms`, oldest first.
pub fn per_minute(feed: &Feed, minutes: usize, now_ms: i64) -> Value {
    let minutes: Vec<Value> = feed
        .per_minute(minutes.clamp(1, MINUTES_KEPT), now_ms)
        .iter()
        .map(|m| json!({"minute_ms": m.minute_ms, "count": m.count}))
        .collect();
    json!({ "minutes": minutes })
}

/// The three routes, under `/api/v1` and its authorisation.
pub fn routes(
    feed: Arc<Feed>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let query = || warp::query::raw().or(warp::any().map(String::new)).unify();
    let f = feed.clone();
    let recent_route = warp::path!("events" / "recent")
        .and(warp::get())
        .and(query())
        .map(move |raw: String| match parse_query(&raw, Some("limit")) {
            Ok((filter, limit)) => json_reply(
                StatusCode::OK,
                &recent(&f, &filter, limit.unwrap_or(DEFAULT_LIMIT)),
            ),
            Err(e) => error_reply(StatusCode::BAD_REQUEST, &e),
        });
    let f = feed.clone();
    let per_minute_route = warp::path!("events" / "per_minute")
        .and(warp::get())
        .and(query())
        .map(
            move |raw: String| match parse_query(&raw, Some("minutes")) {
                Ok((filter, _)) if filter != EventFilter::default() => error_reply(
                    StatusCode::BAD_REQUEST,
                    "per_minute counts every accepted event and takes no filters",
                ),
                Ok((_, minutes)) => json_reply(
                    StatusCode::OK,
                    &per_minute(
                        &f,
                        minutes.unwrap_or(DEFAULT_MINUTES),
                        crate::time::now_ms(),
                    ),
                ),
                Err(e) => error_reply(StatusCode::BAD_REQUEST, &e),
            },
        );
    let stream_route = warp::path!("events" / "stream")
        .and(warp::get())
        .and(query())
        .and(warp::header::optional::<String>("last-event-id"))
        .map(move |raw: String, last: Option<String>| stream(&feed, &raw, last.as_deref()));
    recent_route
        .or(per_minute_route)
        .unify()
        .or(stream_route)
        .unify()
}

/// Answers a stream request: 400 for a bad filter, 503 when
/// [`crate::feed::MAX_STREAMS`] are open, else the event stream.
fn stream(feed: &Feed, raw: &str, last_event_id: Option<&str>) -> warp::reply::Response {
    let filter = match parse_query(raw, None) {
        Ok((filter, _)) => filter,
        Err(e) => return error_reply(StatusCode::BAD_REQUEST, &e),
    };
    // An id from before a restart (or garbage) just means "from now".
    let after = last_event_id.and_then(|s| s.trim().parse().ok());
    let Some(sub) = feed.subscribe(after) else {
        let mut r = error_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "too many event streams open (at most {}); close one or retry later",
                crate::feed::MAX_STREAMS
            ),
        );
        r.headers_mut().insert(
            warp::http::header::RETRY_AFTER,
            warp::http::HeaderValue::from_static("5"),
        );
        return r;
    };
    // A small queue between the reader task and the connection: the
    // broadcast, not this queue, is where a slow reader falls behind.
    let (tx, mut rx) = mpsc::channel::<warp::sse::Event>(16);
    tokio::spawn(forward(sub, filter, tx));
    let events = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|e| e.map(Ok::<_, Infallible>))
    });
    let events = warp::sse::keep_alive()
        .interval(KEEPALIVE)
        .text(" keepalive")
        .stream(events);
    let mut r = warp::reply::Reply::into_response(warp::sse::reply(events));
    // Tells nginx and similar proxies not to buffer the stream.
    r.headers_mut().insert(
        "x-accel-buffering",
        warp::http::HeaderValue::from_static("no"),
    );
    r
}

/// One reader: the backlog, then live items that pass the filter, a
/// `lagged` item when it fell behind; ends when the client goes away
/// or the daemon stops.
async fn forward(sub: Subscription, filter: EventFilter, tx: mpsc::Sender<warp::sse::Event>) {
    let Subscription {
        mut live,
        backlog,
        permit,
        mut closed,
    } = sub;
    let mut backlog: VecDeque<Arc<FeedEvent>> = backlog.into();
    let mut last_seq = 0;
    loop {
        if *closed.borrow() {
            break;
        }
        let item = if let Some(f) = backlog.pop_front() {
            Ok(f)
        } else {
            tokio::select! {
                _ = closed.changed() => break,
                _ = tx.closed() => break,
                r = live.recv() => r,
            }
        };
        let sse = match item {
            Ok(f) if f.seq <= last_seq || !filter.matches(&f.event) => continue,
            Ok(f) => {
                last_seq = f.seq;
                callback_item(&f)
            }
            Err(RecvError::Lagged(missed)) => lagged_item(missed),
            Err(RecvError::Closed) => break,
        };
        if tx.send(sse).await.is_err() {
            break;
        }
    }
    drop(permit);
}

/// warp writes an item's fields as `event:`, `data:`, `id:` in that order
/// and without the space after the colon; the documented shape is `id: `,
/// `event: `, `data: `. An item made of a comment whose text starts on a
/// new line writes an empty comment line (which readers ignore) followed
/// by exactly the documented lines.
fn raw_item(lines: String) -> warp::sse::Event {
    warp::sse::Event::default().comment(lines)
}

fn callback_item(f: &FeedEvent) -> warp::sse::Event {
    raw_item(format!(
        "\nid: {}\nevent: callback\ndata: {}",
        f.seq,
        f.json_text()
    ))
}

fn lagged_item(missed: u64) -> warp::sse::Event {
    raw_item(format!("\nevent: lagged\ndata: {{\"missed\":{missed}}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_read_strictly() {
        let (f, n) = parse_query("sdkappid=14&user=u%201&limit=5", Some("limit")).expect("parses");
        assert_eq!(f.sdkappid, Some(14));
        assert_eq!(f.user.as_deref(), Some("u 1"));
        assert_eq!(n, Some(5));
        let e = parse_query("sdkappid=abc", None).expect_err("not a number");
        assert!(e.contains("sdkappid"), "{e}");
        let e = parse_query("limit=5", None).expect_err("no limit on streams");
        assert!(e.contains("\"limit\""), "{e}");
        let e = parse_query("minutes=-1", Some("minutes")).expect_err("negative");
        assert!(e.contains("minutes"), "{e}");
    }

    #[test]
    fn items_have_the_documented_lines() {
        let lagged = lagged_item(7).to_string();
        assert_eq!(lagged, ":\nevent: lagged\ndata: {\"missed\":7}\n\n");
    }
}
