//! One-pass decoding of recorded callbacks (journal lines, `replay`
//! input) into events. Recovery and replay read millions of
//! lines, and parsing each into a `serde_json::Value` tree of ordered maps
//! first was most of their time; here a line's members are read straight
//! from the bytes, strings borrowed where they have no escapes, and fed to
//! the same field readers as live callbacks (`decode::Object`). Anything
//! this path does not handle (family B, a body that is not an object, an
//! invalid line) is decoded the general way, so results and errors are
//! exactly those of parsing a [`Record`] and calling [`decode::decode`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

use super::decode::{self, DecodeError, Decoded, Family, Member, Object};
use crate::journal::Record;

/// A recorded callback, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedLine {
    /// When it was received (Unix ms), if the line says.
    pub received_at: Option<i64>,
    pub decoded: Decoded,
}

/// Why a line could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    /// Not a recorded-callback line (bad JSON, missing `body`...).
    #[error("{0}")]
    Record(String),
    /// A record whose callback does not decode.
    #[error("{0}")]
    Decode(#[from] DecodeError),
}

/// Decodes one line (without its newline). A record without
/// `received_at` stands in 0 for a missing event time, as `replay` does.
pub fn decode_line(line: &[u8]) -> Result<DecodedLine, LineError> {
    // Checking the whole line's UTF-8 once is cheaper than `from_slice`
    // checking each of its two dozen strings; a line that is not UTF-8
    // gets the general path's error.
    if let Ok(text) = std::str::from_utf8(line) {
        if let Ok(fast) = serde_json::from_str::<FastRecord<'_>>(text) {
            if let Some(done) = fast.decode() {
                return done;
            }
        }
    }
    let record: Record =
        serde_json::from_slice(line).map_err(|e| LineError::Record(e.to_string()))?;
    let decoded = decode::decode(&record.query, &record.body, record.received_at.unwrap_or(0))?;
    Ok(DecodedLine {
        received_at: record.received_at,
        decoded,
    })
}

/// Decodes a live callback body in one pass if it is a family A object
/// within the depth limit; `None` means: take the general path, which
/// also gives every error its usual wording.
pub(crate) fn decode_body(
    query: &decode::Query,
    body: &[u8],
    received_at_ms: i64,
) -> Option<Result<Decoded, DecodeError>> {
    // Family B names itself in the query (`CallbackCommand`): its body would only
    // be parsed twice here.
    if decode::query_param(query, &["CallbackCommand"]).is_some() {
        return None;
    }
    let members: Members<'_> = serde_json::from_slice(body).ok()?;
    let deepest = members.0.iter().map(|(_, v)| match v {
        Raw::Other(v) => decode::depth(v),
        _ => 0,
    });
    if 1 + deepest.max().unwrap_or(0) > decode::MAX_DEPTH {
        return None;
    }
    match decode::family_and_command(query, &members) {
        Ok((Family::A, command)) => Some(decode::decode_family_a(
            query,
            &members,
            command,
            received_at_ms,
        )),
        Ok((Family::B, _)) => None,
        Err(e) => Some(Err(e)),
    }
}

/// A line whose query and body are objects, read member by member.
#[derive(Deserialize)]
struct FastRecord<'a> {
    #[serde(default)]
    received_at: Option<i64>,
    #[serde(default, borrow)]
    query: Members<'a>,
    #[serde(borrow)]
    body: Members<'a>,
}

impl FastRecord<'_> {
    /// The decoded line, or `None` to take the general path.
    fn decode(&self) -> Option<Result<DecodedLine, LineError>> {
        let (family, command) = match decode::family_and_command(&self.query, &self.body) {
            Ok(fc) => fc,
            Err(e) => return Some(Err(e.into())),
        };
        // Family B nests arrays of objects; it is rare enough in volume
        // to go through `Value`.
        if family != Family::A {
            return None;
        }
        let received = self.received_at.unwrap_or(0);
        Some(
            decode::decode_family_a(&self.query, &self.body, command, received)
                .map(|decoded| DecodedLine {
                    received_at: self.received_at,
                    decoded,
                })
                .map_err(LineError::from),
        )
    }
}

/// A JSON value as read from a line: scalars borrowed or inline, arrays
/// and objects parsed into `Value` (family A has none that it reads).
#[derive(Debug)]
enum Raw<'a> {
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
struct Members<'a>(Vec<(Cow<'a, str>, Raw<'a>)>);

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The general path, for comparison.
    fn slow(line: &[u8]) -> Result<DecodedLine, LineError> {
        let record: Record =
            serde_json::from_slice(line).map_err(|e| LineError::Record(e.to_string()))?;
        let decoded = decode::decode(&record.query, &record.body, record.received_at.unwrap_or(0))?;
        Ok(DecodedLine {
            received_at: record.received_at,
            decoded,
        })
    }

    #[test]
    fn agrees_with_the_general_path() {
        let lines = [
            // A generated line.
            r#"{"received_at":1767225600236,"query":{"sdkappid":"1400000001","command":"caller_start_call","contenttype":"json","clientip":"10.219.189.18","optplatform":"iOS"},"body":{"UserId":"u0139","RoomId":101235946,"TotalNum":2,"MediaType":"audio","CallType":"single","CallId":"83bc9478dd6ac7b8-00000002","Role":"caller","Event":"start_call","CallResult":"","EventTime":1767225600}}"#,
            // Escapes, unknown and repeated fields, nested extras, odd numbers.
            r#"{"query":{"SDKAppID":14,"COMMAND":"Callee_Call_End"},"body":{"UserId":"a\"b","UserId":12,"x":{"y":[1,2]},"x":3,"Score":1.5e0,"Big":18446744073709551615,"EventTime":"1767225600000","CallType":2,"z":null}}"#,
            // Type errors name the field.
            r#"{"query":{"sdkappid":"1","command":"caller_start_call"},"body":{"TotalNum":"many"}}"#,
            r#"{"query":{"sdkappid":"1","command":"caller_start_call"},"body":{"Role":7}}"#,
            r#"{"query":{"sdkappid":"1"},"body":{}}"#,
            // Family B and non-object bodies take the general path.
            r#"{"query":{"sdkappid":"1","CallbackCommand":"Call.CallbackAfterEndCall"},"body":{"CallRecord":{"CallId":"c","Caller_Account":"u","CalleeList_Account":["v"]}}}"#,
            r#"{"query":{"sdkappid":"1","command":"x"},"body":[1]}"#,
            r#"{"query":{"sdkappid":"1","command":"x"}}"#,
            r#"{"query":{"sdkappid":"1","command":"x"},"body":{},"body":{}}"#,
            r#"not json"#,
        ];
        for line in lines {
            assert_eq!(
                decode_line(line.as_bytes()),
                slow(line.as_bytes()),
                "{line}"
            );
        }
        assert!(decode_line(lines[0].as_bytes()).is_ok());
        // Not UTF-8 inside a string: the general path's error.
        let bad = b"{\"query\":{\"sdkappid\":\"1\",\"command\":\"caller_start_call\"},\"body\":{\"UserId\":\"\xff\"}}";
        assert_eq!(decode_line(bad), slow(bad));
        assert!(decode_line(bad).is_err());
    }
}
