//! The events a rule test feeds: `[[events]]` entries turned into
//! [`Event`]s (with the documented defaults), and recorded callbacks read
//! from files, gzipped or not. Ordering them and running them is the
//! runner's business.

use std::io::{BufRead, Read};
use std::path::Path;

use toml::Spanned;

use super::file::{duration, EventSpec, SimulateSpec, Source, TestFileError};
use crate::event::{Event, Text};
use crate::ingest::line::decode_line;
use crate::journal::each_line;
use crate::simulate::{write_trace, Anomaly, SimOptions};

/// `sdkappid` of an inline event that names none.
pub const DEFAULT_SDKAPPID: u64 = 1_400_000_001;

/// Most copies one `[[events]]` entry may make: a typo such as
/// `repeat = 70000000` should be an error, not an exhausted machine.
const MAX_REPEAT: i64 = 1_000_000;

/// Builds the events of every `[[events]]` entry; `start` is the test's
/// time origin. Each event gets its own `call_id` unless it names one.
pub fn inline_events(
    src: &Source<'_>,
    specs: &[Spanned<EventSpec>],
    start: i64,
) -> Result<Vec<Event>, TestFileError> {
    let mut out = Vec::new();
    for spec in specs {
        let spec = spec.get_ref();
        let first = match (&spec.at, &spec.event_time) {
            (Some(_), Some(t)) => {
                return Err(src.error(t.span(), "give `at` or `event_time`, not both"));
            }
            (Some(at), None) => start + duration(src, "at", at)?,
            (None, Some(t)) => *t.get_ref(),
            (None, None) => start,
        };
        let repeat = match &spec.repeat {
            None => 1,
            Some(r) if (1..=MAX_REPEAT).contains(r.get_ref()) => *r.get_ref(),
            Some(r) => {
                return Err(src.error(
                    r.span(),
                    format!("repeat: must be 1 to {MAX_REPEAT}, not {}", r.get_ref()),
                ))
            }
        };
        let every = match &spec.every {
            None => 0,
            Some(e) if spec.repeat.is_none() => {
                return Err(src.error(e.span(), "every: has no effect without `repeat`"));
            }
            Some(e) => duration(src, "every", e)?,
        };
        let base = event_of(spec);
        let relative = derive_call_times(src, spec)?;
        for i in 0..repeat {
            let mut e = base.clone();
            shift_to(&mut e, first + i * every, relative);
            if e.call_id.is_none() {
                e.call_id = Some(format!("test-{}", out.len() + 1).into());
            }
            out.push(e);
        }
    }
    Ok(out)
}

/// The event of one entry, before it is given its time.
fn event_of(spec: &EventSpec) -> Event {
    // Values arrive lowercased from real callbacks (the decoder normalises
    // them), so a test written as `role = "Callee"` means what it says.
    let lower = |v: &Option<String>| v.as_deref().map(|s| Text::from(s.to_ascii_lowercase()));
    let text = |v: &Option<String>| v.as_deref().map(Text::from);
    let event = spec.event.get_ref().to_ascii_lowercase();
    let role = lower(&spec.role);
    let command = match (&spec.command, &role) {
        (Some(c), _) => c.clone(),
        // What the legacy callback family would have sent.
        (None, Some(r)) => format!("{r}_{event}"),
        (None, None) => event.clone(),
    };
    Event {
        sdkappid: spec.sdkappid.unwrap_or(DEFAULT_SDKAPPID),
        command: command.into(),
        platform: Some(text(&spec.platform).unwrap_or_else(|| "iOS".into())),
        client_ip: text(&spec.client_ip),
        user_id: text(&spec.user_id),
        room_id: text(&spec.room_id),
        total_num: spec.total_num,
        media_type: Some(lower(&spec.media_type).unwrap_or_else(|| "audio".into())),
        call_type: Some(lower(&spec.call_type).unwrap_or_else(|| "single".into())),
        call_id: text(&spec.call_id),
        role,
        event: event.into(),
        call_result: lower(&spec.call_result).unwrap_or_default(),
        event_time: 0,
        start_call_ts: spec.start_call_ts,
        accept_ts: spec.accept_ts,
        end_ts: spec.end_ts,
        extra: match &spec.extra {
            Some(t) => serde_json::to_value(t)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default(),
            None => Default::default(),
        },
    }
}

/// Call times relative to the event time (start, accept, end), from the
/// `ring_secs`/`talk_secs` shorthands: the call ends at the event (when
/// `talk_secs` is given; else it was answered at the event), so
/// `ring_secs = 40` alone is an answer after 40 s of ringing.
type Relative = Option<(Option<i64>, i64, Option<i64>)>;

fn derive_call_times(src: &Source<'_>, spec: &EventSpec) -> Result<Relative, TestFileError> {
    let Some(given) = spec.ring_secs.as_ref().or(spec.talk_secs.as_ref()) else {
        return Ok(None);
    };
    if spec.start_call_ts.is_some() || spec.accept_ts.is_some() || spec.end_ts.is_some() {
        return Err(src.error(
            given.span(),
            "give ring_secs/talk_secs or start_call_ts/accept_ts/end_ts, not both",
        ));
    }
    let talk = spec.talk_secs.as_ref().map(|t| *t.get_ref());
    let accept = -talk.unwrap_or(0);
    let start = spec.ring_secs.as_ref().map(|r| accept - r.get_ref());
    Ok(Some((start, accept, talk.map(|_| 0))))
}

/// Puts an event at time `t`, with its shorthand call times around it.
fn shift_to(e: &mut Event, t: i64, relative: Relative) {
    e.event_time = t;
    if let Some((start, accept, end)) = relative {
        e.start_call_ts = start.map(|s| s + t);
        e.accept_ts = Some(accept + t);
        e.end_ts = end.map(|x| x + t);
    }
}

/// The events of `[simulate]`'s generated traffic, starting at `start`
/// (the trace is made in memory and read back as recorded callbacks, so
/// it is exactly what `callwatch simulate` would write).
pub fn simulated(
    src: &Source<'_>,
    spec: &Spanned<SimulateSpec>,
    start: i64,
) -> Result<Vec<Event>, TestFileError> {
    let s = spec.get_ref();
    let at_section = |e: String| src.error(spec.span(), format!("[simulate]: {e}"));
    let mut anomalies = Vec::new();
    for a in &s.anomalies {
        let parsed = a.get_ref().parse::<Anomaly>();
        anomalies.push(parsed.map_err(|e| src.error(a.span(), format!("anomalies: {e}")))?);
    }
    let defaults = SimOptions::default();
    let family = match &s.family {
        Some(f) => f.get_ref().parse().map_err(|e| src.error(f.span(), e))?,
        None => defaults.family,
    };
    let opts = SimOptions {
        seed: s.seed.unwrap_or(defaults.seed),
        calls: s.calls.unwrap_or(defaults.calls),
        rate: s.rate.unwrap_or(defaults.rate),
        users: s.users.unwrap_or(defaults.users),
        start,
        sdkappid: s.sdkappid.unwrap_or(defaults.sdkappid),
        family,
        anomalies,
        retries: s.retries.unwrap_or(defaults.retries),
    };
    // The generator names its command-line flags; here they are keys.
    opts.validate()
        .map_err(|e| at_section(e.trim_start_matches("--").to_string()))?;
    let mut trace = Vec::new();
    write_trace(&opts, &mut trace).map_err(|e| at_section(e.to_string()))?;
    recorded_events("[simulate]", trace.as_slice()).map_err(at_section)
}

/// Opens a file of recorded callbacks, gunzipping it when it starts with
/// the gzip magic bytes (whatever its name).
pub fn open_input(path: &Path) -> std::io::Result<Box<dyn BufRead + Send>> {
    let file = std::fs::File::open(path)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    if reader.fill_buf()?.starts_with(&[0x1f, 0x8b]) {
        let gz = flate2::read::MultiGzDecoder::new(reader);
        return Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, gz)));
    }
    Ok(Box::new(reader))
}

/// The events of recorded callbacks, in file order; `name` names the
/// input in errors (with the line number).
pub fn recorded_events(name: &str, reader: impl Read) -> Result<Vec<Event>, String> {
    let mut out = Vec::new();
    let reader = std::io::BufReader::new(reader);
    each_line(reader, |line_no, line| {
        let decoded = decode_line(line)
            .map_err(|e| LineFailure::Bad(format!("{name}:{line_no}: {e}")))?
            .decoded;
        out.extend(decoded.events);
        Ok::<(), LineFailure>(())
    })
    .map_err(|e| match e {
        LineFailure::Bad(m) => m,
        LineFailure::Read(e) => format!("{name}: {e} (not JSON Lines, or a damaged .gz file?)"),
    })?;
    Ok(out)
}

enum LineFailure {
    Bad(String),
    Read(std::io::Error),
}

impl From<std::io::Error> for LineFailure {
    fn from(e: std::io::Error) -> Self {
        LineFailure::Read(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruletest::file::{parse, DEFAULT_START};

    fn build(text: &str) -> Result<Vec<Event>, TestFileError> {
        let src = Source {
            path: Path::new("t.test.toml"),
            text,
        };
        let f = parse(&src).expect("parses");
        inline_events(&src, &f.events, DEFAULT_START)
    }

    #[test]
    fn defaults_fill_what_an_entry_leaves_out() {
        let events = build(
            "[[events]]\nat = \"30s\"\nevent = \"not_answer_call\"\nrole = \"Callee\"\nuser_id = \"alice\"\nrepeat = 3\nevery = \"1m\"\n",
        )
        .expect("builds");
        assert_eq!(events.len(), 3);
        let e = &events[2];
        assert_eq!(e.event_time, DEFAULT_START + 30 + 120);
        assert_eq!(e.sdkappid, DEFAULT_SDKAPPID);
        assert_eq!(e.platform.as_deref(), Some("iOS"));
        assert_eq!(e.call_type.as_deref(), Some("single"));
        assert_eq!(e.media_type.as_deref(), Some("audio"));
        assert_eq!(e.role.as_deref(), Some("callee"));
        assert_eq!(e.command, "callee_not_answer_call");
        let ids: std::collections::BTreeSet<_> = events.iter().map(|e| e.call_id.clone()).collect();
        assert_eq!(ids.len(), 3, "a call_id per event");
    }

    #[test]
    fn ring_and_talk_secs_set_the_call_times() {
        let events = build(
            "[[events]]\nat = \"10m\"\nevent = \"call_end\"\nring_secs = 40\ntalk_secs = 5\nrepeat = 2\nevery = \"1m\"\n",
        )
        .expect("builds");
        let e = &events[1];
        assert_eq!(e.end_ts, Some(e.event_time));
        assert_eq!(e.talk_secs(), Some(5));
        assert_eq!(e.ring_secs(), Some(40));
        assert_eq!(e.event_time, DEFAULT_START + 660);
    }

    #[test]
    fn contradictions_are_errors_at_their_place() {
        let e = build("[[events]]\nevent = \"start_call\"\nevery = \"1m\"\n").expect_err("every");
        assert_eq!((e.line, e.col), (3, 9), "{e}");
        let e = build("[[events]]\nevent = \"start_call\"\nrepeat = 0\n").expect_err("repeat");
        assert!(e.message.starts_with("repeat: must be 1"), "{e}");
        let e = build("[[events]]\nevent = \"call_end\"\nring_secs = 3\naccept_ts = 5\n")
            .expect_err("both");
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn recorded_lines_name_the_bad_line() {
        let good = r#"{"query":{"sdkappid":"1400000001","command":"caller_start_call","optplatform":"iOS"},"body":{"UserId":"a","CallId":"c","Role":"caller","Event":"start_call","EventTime":1767225600}}"#;
        let text = format!("{good}\n\n{{\n");
        let e = recorded_events("in.jsonl", text.as_bytes()).expect_err("bad line");
        assert!(e.starts_with("in.jsonl:3: "), "{e}");
        let events = recorded_events("in.jsonl", format!("{good}\n").as_bytes()).expect("ok");
        assert_eq!(events.len(), 1);
    }
}
