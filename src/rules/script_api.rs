//! What a rule script sees: the `w` object of rules/README.md (a handle through
//! which one `check` call reaches the key's [`Window`], key, state and
//! time), events answering field names like maps, and
//! conversions between Rhai values and JSON for persisting `w.state`. It registers these on the
//! engine; it does not load rules or decide anything.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard};

use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, Map, FLOAT, INT};
use serde_json::Value;

use super::Key;
use crate::event::{Event, Field, FIELDS};
use crate::window::Window;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// What one `check` call works on. The window and state are moved in for
/// the call and moved back out afterwards, so the script never holds a
/// reference into the engine's own data.
pub(crate) struct Live {
    pub window: Window,
    pub key: LiveKey,
    pub state: Map,
    pub now: i64,
}

/// The key of one `check` call. Most scripts never read `w.key`, so the
/// map is built on demand instead of for every call.
pub(crate) struct LiveKey {
    key: Key,
    group_by: Arc<[String]>,
}

impl LiveKey {
    pub(crate) fn new(key: Key, group_by: Arc<[String]>) -> LiveKey {
        LiveKey { key, group_by }
    }

    fn to_map(&self) -> Map {
        self.key.view(&self.group_by).to_map()
    }
}

/// The `w` value handed to `check`. Clones share the same call; once the
/// call is over the handle is empty and every query on it is an error
/// (a script could have stashed `w` somewhere).
#[derive(Clone)]
pub(crate) struct WHandle(Arc<Mutex<Option<Live>>>);

impl WHandle {
    pub(crate) fn new(live: Live) -> WHandle {
        WHandle(Arc::new(Mutex::new(Some(live))))
    }

    /// Ends the call and gives back what was moved in.
    pub(crate) fn finish(&self) -> Option<Live> {
        // A poisoned lock still holds the data; the caller needs it back.
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        guard.take()
    }

    fn with<T>(&mut self, f: impl FnOnce(&mut Live) -> T) -> RhaiResult<T> {
        let mut guard: MutexGuard<'_, Option<Live>> = self
            .0
            .lock()
            .map_err(|_| "w is unusable after an earlier failure")?;
        match guard.as_mut() {
            Some(live) => Ok(f(live)),
            None => Err("w can only be used during the check call it was given to".into()),
        }
    }
}

/// An event as scripts see it: read-only, answering the event's field names
/// like a map does (`e.user_id`, `e["user_id"]`, `"user_id" in e`, missing
/// values `()`, `e.extra` a map), and `e.to_map()` for a real map. It shares
/// the window's event instead of copying it: Rhai's size limits count every
/// entry of every map inside a value, so an array of real maps would make
/// `w.events()` fail on windows of a few hundred events, and `filter(e)`
/// would build a map per event per rule.
#[derive(Clone)]
pub(crate) struct EventRef(pub Arc<Event>);

fn field_to_dynamic(f: Option<Field<'_>>) -> Dynamic {
    match f {
        Some(Field::Str(s)) => Dynamic::from(s.to_string()),
        Some(Field::Int(i)) => Dynamic::from_int(i as INT),
        Some(Field::Float(f)) => Dynamic::from_float(f as FLOAT),
        Some(Field::Bool(b)) => Dynamic::from_bool(b),
        None => Dynamic::UNIT,
    }
}

/// Field `name` of `e` as the event map would hold it. Only known fields
/// (see [`event_field`] for reads by scripts).
fn field_value(e: &Event, name: &str) -> Dynamic {
    if name == "extra" {
        Dynamic::from_map(map_from_json(&e.extra))
    } else if FIELDS.contains(&name) {
        field_to_dynamic(e.get(name))
    } else {
        Dynamic::UNIT
    }
}

/// A script's read of field `name` (`e.name`, `e["name"]`): a known
/// field, `()` when absent from this event, or an error naming a field
/// that does not exist, since a misspelt name would otherwise read as
/// "absent" forever.
fn event_field(e: &Event, name: &str) -> RhaiResult<Dynamic> {
    if name == "extra" || FIELDS.contains(&name) {
        return Ok(field_value(e, name));
    }
    Err(super::names::check_field(name)
        .and_then(|()| {
            Err(format!(
                "unknown field \"{name}\" (read body fields through e.extra: e.extra[\"{}\"])",
                name.trim_start_matches("extra.")
            ))
        })
        .unwrap_or_else(|m| m)
        .into())
}

/// The field a window aggregate (`w.distinct`, `w.sum`...) reads, checked
/// as [`event_field`] checks reads.
fn window_field(field: &str) -> RhaiResult<&str> {
    super::names::check_field(field)
        .map(|()| field)
        .map_err(Into::into)
}

fn event_dynamic(e: &Arc<Event>) -> Dynamic {
    Dynamic::from(EventRef(e.clone()))
}

/// Event names given as one string or an array of strings. `count`,
/// `ratio` and `streak` are registered once per argument type (string,
/// array, and `Dynamic` for the error message), because Rhai finds an exact
/// signature with one lookup but a `Dynamic` parameter only after trying
/// every wildcard combination, on every call: the rules' common case, a
/// string, then costs several hash lookups and an allocation.
trait Names: Clone + Send + Sync + 'static {
    fn names(&self) -> RhaiResult<Cow<'_, [ImmutableString]>>;
}

impl Names for ImmutableString {
    fn names(&self) -> RhaiResult<Cow<'_, [ImmutableString]>> {
        Ok(Cow::Borrowed(std::slice::from_ref(self)))
    }
}

impl Names for Array {
    fn names(&self) -> RhaiResult<Cow<'_, [ImmutableString]>> {
        self.iter()
            .map(|x| x.read_lock::<ImmutableString>().map(|s| s.clone()))
            .collect::<Option<Vec<_>>>()
            .map(Cow::Owned)
            .ok_or_else(|| bad_names("an array holding a non-string"))
    }
}

impl Names for Dynamic {
    fn names(&self) -> RhaiResult<Cow<'_, [ImmutableString]>> {
        if let Some(s) = self.read_lock::<ImmutableString>() {
            return Ok(Cow::Owned(vec![s.clone()]));
        }
        match self.read_lock::<Array>() {
            Some(arr) => Ok(Cow::Owned(arr.names()?.into_owned())),
            None => Err(bad_names(self.type_name())),
        }
    }
}

fn bad_names(got: &str) -> Box<EvalAltResult> {
    format!("expected an event name or an array of names, got {got}").into()
}

/// `w.count(names)` and `w.streak(names)` for one argument type.
fn register_names<N: Names>(engine: &mut Engine) {
    engine
        .register_fn("count", |w: &mut WHandle, names: N| {
            let names = names.names()?;
            w.with(|l| l.window.count_of(&names) as INT)
        })
        .register_fn("streak", |w: &mut WHandle, names: N| {
            let names = names.names()?;
            w.with(|l| l.window.streak(&names) as INT)
        });
}

/// `w.ratio(num, den)` for one pair of argument types.
fn register_ratio<N: Names, D: Names>(engine: &mut Engine) {
    engine.register_fn("ratio", |w: &mut WHandle, num: N, den: D| {
        let (num, den) = (num.names()?, den.names()?);
        w.with(|l| l.window.ratio(&num, &den) as FLOAT)
    });
}

fn float_or_unit(v: Option<f64>) -> Dynamic {
    v.map_or(Dynamic::UNIT, |x| Dynamic::from_float(x as FLOAT))
}

fn percentile_arg(p: f64) -> RhaiResult<f64> {
    if (0.0..=100.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("percentile must be between 0 and 100, got {p}").into())
    }
}

/// Registers the `w` type and its documented methods and properties. Numeric
/// aggregates (`sum avg min max percentile`) are always floats, or `()`
/// when no event has the field, so a rule's arithmetic does not change
/// type with the data.
pub(crate) fn register(engine: &mut Engine) {
    register_event(engine);
    engine.register_type_with_name::<WHandle>("Window");
    engine
        .register_get("key", |w: &mut WHandle| w.with(|l| l.key.to_map()))
        .register_get("now", |w: &mut WHandle| w.with(|l| l.now as INT))
        .register_get("state", |w: &mut WHandle| w.with(|l| l.state.clone()))
        .register_set("state", |w: &mut WHandle, m: Map| w.with(|l| l.state = m))
        .register_fn("count", |w: &mut WHandle| {
            w.with(|l| l.window.count() as INT)
        })
        .register_fn("distinct", |w: &mut WHandle, field: &str| {
            let field = window_field(field)?;
            w.with(|l| l.window.distinct(field) as INT)
        })
        .register_fn("sum", |w: &mut WHandle, field: &str| {
            let field = window_field(field)?;
            w.with(|l| float_or_unit(l.window.sum(field)))
        })
        .register_fn("avg", |w: &mut WHandle, field: &str| {
            let field = window_field(field)?;
            w.with(|l| float_or_unit(l.window.avg(field)))
        })
        .register_fn("min", |w: &mut WHandle, field: &str| {
            let field = window_field(field)?;
            w.with(|l| float_or_unit(l.window.min(field)))
        })
        .register_fn("max", |w: &mut WHandle, field: &str| {
            let field = window_field(field)?;
            w.with(|l| float_or_unit(l.window.max(field)))
        })
        .register_fn("percentile", |w: &mut WHandle, field: &str, p: INT| {
            let (field, p) = (window_field(field)?, percentile_arg(p as f64)?);
            w.with(|l| float_or_unit(l.window.percentile(field, p)))
        })
        .register_fn("percentile", |w: &mut WHandle, field: &str, p: FLOAT| {
            let (field, p) = (window_field(field)?, percentile_arg(p)?);
            w.with(|l| float_or_unit(l.window.percentile(field, p)))
        })
        .register_fn("first", |w: &mut WHandle| {
            w.with(|l| l.window.first().map_or(Dynamic::UNIT, event_dynamic))
        })
        .register_fn("last", |w: &mut WHandle| {
            w.with(|l| l.window.last().map_or(Dynamic::UNIT, event_dynamic))
        })
        .register_fn("events", |w: &mut WHandle| {
            w.with(|l| l.window.events().map(event_dynamic).collect::<Array>())
        });
    register_names::<ImmutableString>(engine);
    register_names::<Array>(engine);
    register_names::<Dynamic>(engine);
    register_ratio::<ImmutableString, ImmutableString>(engine);
    register_ratio::<ImmutableString, Array>(engine);
    register_ratio::<Array, ImmutableString>(engine);
    register_ratio::<Array, Array>(engine);
    register_ratio::<Dynamic, Dynamic>(engine);
}

/// Registers the event type: map-like reads, `to_map`, and JSON text.
fn register_event(engine: &mut Engine) {
    let text = |e: &mut EventRef| e.0.to_json().to_string();
    engine
        .register_type_with_name::<EventRef>("Event")
        .register_indexer_get(|e: &mut EventRef, name: ImmutableString| event_field(&e.0, &name))
        .register_fn("contains", |_: &mut EventRef, name: &str| {
            name == "extra" || FIELDS.contains(&name)
        })
        .register_fn("keys", |_: &mut EventRef| {
            let names = FIELDS.iter().copied().chain(["extra"]);
            names.map(Dynamic::from).collect::<Array>()
        })
        .register_fn("to_map", |e: &mut EventRef| event_map(&e.0))
        .register_fn("to_string", text)
        .register_fn("to_debug", text);
    // `e.name` would find the indexer too, but only after Rhai has looked for
    // a getter and built a "function not found" error to fall back from, on
    // every `filter(e)` call. A getter per field makes it one lookup.
    for &name in FIELDS.iter().chain(&["extra"]) {
        engine.register_get(name, move |e: &mut EventRef| field_value(&e.0, name));
    }
}

/// An event a rule returned as `evidence`: an event from the window, or a
/// map with the event's fields (`e.to_map()`, a restored `w.state`).
pub(crate) fn evidence_of(v: &Dynamic) -> Option<crate::alert::Evidence> {
    if let Some(e) = v.read_lock::<EventRef>() {
        return Some(crate::alert::Evidence::of(&e.0));
    }
    let m = v.read_lock::<Map>()?;
    let text = |k: &str| {
        m.get(k)
            .filter(|x| !x.is_unit())
            .and_then(super::spec::scalar_text)
    };
    Some(crate::alert::Evidence {
        event_time: m.get("event_time")?.as_int().ok()?,
        event: text("event")?,
        user_id: text("user_id"),
        call_id: text("call_id"),
        platform: text("platform"),
        call_result: text("call_result").filter(|s| !s.is_empty()),
    })
}

/// An event as a map: every field present, missing values as
/// `()`, unknown body fields under `extra`.
pub fn event_map(e: &Event) -> Map {
    let names = FIELDS.iter().copied().chain(["extra"]);
    names.map(|n| (n.into(), field_value(e, n))).collect()
}

/// A JSON value as a Rhai value (null becomes `()`).
pub fn json_to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i as INT),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN) as FLOAT),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(a) => Dynamic::from_array(a.iter().map(json_to_dynamic).collect()),
        Value::Object(o) => Dynamic::from_map(map_from_json(o)),
    }
}

/// A Rhai value as JSON, for persisting `w.state`. Events become their
/// JSON object (a map once restored). Values JSON cannot hold (function
/// pointers, `w` itself, non-finite floats) become null;
/// characters become one-character strings.
pub fn dynamic_to_json(v: &Dynamic) -> Value {
    if v.is_unit() {
        Value::Null
    } else if let Ok(b) = v.as_bool() {
        Value::Bool(b)
    } else if let Ok(i) = v.as_int() {
        Value::from(i)
    } else if let Ok(f) = v.as_float() {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    } else if let Ok(c) = v.as_char() {
        Value::String(c.to_string())
    } else if let Some(s) = v.read_lock::<ImmutableString>() {
        Value::String(s.to_string())
    } else if let Some(a) = v.read_lock::<Array>() {
        Value::Array(a.iter().map(dynamic_to_json).collect())
    } else if let Some(m) = v.read_lock::<Map>() {
        Value::Object(map_to_json(&m))
    } else if let Some(e) = v.read_lock::<EventRef>() {
        e.0.to_json()
    } else {
        Value::Null
    }
}

/// A `w.state` map as a JSON object.
pub fn map_to_json(m: &Map) -> serde_json::Map<String, Value> {
    m.iter()
        .map(|(k, v)| (k.to_string(), dynamic_to_json(v)))
        .collect()
}

/// A JSON object (e.g. a persisted `w.state`) as a Rhai map.
pub fn map_from_json(o: &serde_json::Map<String, Value>) -> Map {
    o.iter()
        .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
        .collect()
}
