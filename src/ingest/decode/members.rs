//! A JSON object read member by member straight from its bytes
//! ([`Members`]): strings borrowed where they have no escapes, scalars
//! inline, and only nested arrays and objects parsed into `Value`. It is
//! an [`Object`] for the shared field readers, so family A bodies decode
//! without a `Value` tree, live ([`decode_body`]) and from recorded
//! lines (`ingest::line`). Lives under `decode` so that the line reader
//! depends on decoding and not the other way round.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

use super::{DecodeError, Decoded, Family, Member, Object, Query};

/// Decodes a live callback body in one pass if it is a family A object
/// within the depth limit; `None` means: take the general path, which
/// also gives every error its usual wording.
pub(crate) fn decode_body(
    query: &Query,
    body: &[u8],
    received_at_ms: i64,
) -> Option<Result<Decoded, DecodeError>> {
    // Family B names itself in the query (`CallbackCommand`): its body would only
    // be parsed twice here.
    if super::query_param(query, &["CallbackCommand"]).is_some() {
        return None;
    }
    let members: Members<'_> = serde_json::from_slice(body).ok()?;
    let deepest = members.0.iter().map(|(_, v)| match v {
        Raw::Other(v) => super::depth(v),
        _ => 0,
    });
    if 1 + deepest.max().unwrap_or(0) > super::MAX_DEPTH {
        return None;
    }
    match super::family_and_command(query, &members) {
        Ok((Family::A, command)) => Some(super::decode_family_a(
            query,
            &members,
            command,
            received_at_ms,
        )),
        Ok((Family::B, _)) => None,
        Err(e) => Some(Err(e)),
    }
}

/// A JSON value as read from a line: scalars borrowed or inline, arrays
/// and objects parsed into `Value` (family A has none that it reads).
#[derive(Debug)]
pub(crate) enum Raw<'a> {
    Null,
    Bool(bool),
    Num(Number),
    Str(Cow<'a, str>),
    Other(Value),
}

impl Raw<'_> {
    fn member(&self) -> Member<'_> {
        match self {
            Raw::Null => Member::Null,
            Raw::Bool(b) => Member::Bool(*b),
            Raw::Num(n) => Member::Num(n),
            Raw::Str(s) => Member::Str(s),
            Raw::Other(v) => Member::from(v),
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Raw::Null => Value::Null,
            Raw::Bool(b) => Value::Bool(*b),
            Raw::Num(n) => Value::Number(n.clone()),
            Raw::Str(s) => Value::String(s.to_string()),
            Raw::Other(v) => v.clone(),
        }
    }
}

/// The members of a JSON object, in order, repeats included.
#[derive(Debug, Default)]
pub(crate) struct Members<'a>(Vec<(Cow<'a, str>, Raw<'a>)>);

/// `a == b`, looking at the first byte before calling `memcmp`: member
/// names of one length mostly differ there (`UserId`, `RoomId`, `CallId`),
/// and every field lookup compares against each member.
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

impl Object for Members<'_> {
    fn member(&self, key: &str) -> Option<Member<'_>> {
        // The last one wins, as when parsing into a map.
        self.0
            .iter()
            .rev()
            .find(|(k, _)| same_name(k, key))
            .map(|(_, v)| v.member())
    }

    fn members(&self) -> impl Iterator<Item = (&str, Member<'_>)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.member()))
    }

    fn extra(&self, known: &[&str]) -> Map<String, Value> {
        let mut out = Map::new();
        for (k, v) in &self.0 {
            if !known.iter().any(|n| same_name(n, k)) {
                // `insert` keeps a repeated key's first place, as parsing
                // into a map does.
                out.insert(k.to_string(), v.to_value());
            }
        }
        out
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(k) = map.next_key_seed(CowStr)? {
                    out.push((k, map.next_value::<Raw<'a>>()?));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// Reads a string, borrowing it from the input when it has no escapes.
struct CowStr;

impl<'de> DeserializeSeed<'de> for CowStr {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for CowStr {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_string()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Raw<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Raw<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Raw::Null)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
                Ok(Raw::Bool(b))
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<Self::Value, E> {
                Ok(Raw::Num(i.into()))
            }
            fn visit_u64<E: de::Error>(self, u: u64) -> Result<Self::Value, E> {
                Ok(Raw::Num(u.into()))
            }
            fn visit_f64<E: de::Error>(self, f: f64) -> Result<Self::Value, E> {
                // As `Value` does: a float JSON cannot hold becomes null.
                Ok(Number::from_f64(f).map_or(Raw::Null, Raw::Num))
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                CowStr.visit_borrowed_str(s).map(Raw::Str)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                CowStr.visit_str(s).map(Raw::Str)
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                CowStr.visit_string(s).map(Raw::Str)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Raw::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Raw::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}
