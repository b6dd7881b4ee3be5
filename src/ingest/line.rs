//! One-pass decoding of recorded callbacks (journal lines, `replay`
//! input) into events. Recovery and replay read millions of
//! lines, and parsing each into a `serde_json::Value` tree of ordered maps
//! first was most of their time; here a line's members are read straight
//! from the bytes (`decode::members`, shared with live callbacks) and fed
//! to the same field readers as live callbacks (`decode::Object`). Anything
//! this path does not handle (family B, a body that is not an object, an
//! invalid line) is decoded the general way, so results and errors are
//! exactly those of parsing a [`Record`] and calling [`decode::decode`].

use serde::Deserialize;

use super::decode::members::Members;
use super::decode::{self, DecodeError, Decoded, Family};
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
