//! The key of a rule's window: the values of the rule's `group_by` fields
//! for one event, packed into one byte string. It owns the encoding and
//! its decoding into the forms the outside sees (labels, `w.key`, the
//! `field=value` text, name/value pairs); it does not decide which fields
//! make a key (that is the rule) nor where keys are kept (the engine).
//!
//! A rule may track a million keys and looks one up per event, so a key
//! holds only the values — the field names are the rule's, and every
//! caller has them — in one allocation, and a lookup key is built into a
//! reusable [`KeyBuf`] so that finding an existing key allocates nothing.
//!
//! Encoding: a tag byte, then length-prefixed strings (the length as LEB128,
//! then the UTF-8 bytes). [`VALUES`] keys hold one string per `group_by`
//! field. A key whose field names are not the rule's `group_by` (restored
//! or kept across an edit that changed `group_by`) holds name, value,
//! name, value… under [`PAIRS`], so it stays apart from every key of the
//! current fields, as it did when keys carried their names.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};

use rhai::{Dynamic, Map};

use crate::event::Field;

/// Tag of a key holding only values, named by the rule's `group_by`.
const VALUES: u8 = 0;
/// Tag of a key holding its own field names.
const PAIRS: u8 = 1;

/// A key as a map of rule keys stores it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Box<[u8]>);

/// A key under construction, reused from event to event so that looking
/// up an existing key allocates nothing.
#[derive(Debug, Default)]
pub struct KeyBuf(Vec<u8>);

/// A key together with the field names that go with it: everything that
/// shows a key decodes it through this.
#[derive(Clone, Copy)]
pub struct KeyView<'a> {
    bytes: &'a [u8],
    names: &'a [String],
}

// Maps keyed by `Key` are searched with the bytes of a `KeyBuf`; `Borrow`
// promises equal hashes, so both hash just their bytes.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl Default for Key {
    /// The key of a rule without `group_by`: one global window.
    fn default() -> Key {
        Key(Box::new([VALUES]))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (tag, rest) = self.0.split_first().unwrap_or((&VALUES, &[]));
        let strings: Vec<&str> = strings(rest).collect();
        f.debug_tuple("Key").field(tag).field(&strings).finish()
    }
}

impl Key {
    /// The key of `pairs` (field name, value) for a rule grouping by
    /// `names`: values only when the pairs name exactly those fields in
    /// that order, so it equals the key the rule builds from events.
    pub fn from_pairs(names: &[String], pairs: &[(String, String)]) -> Key {
        let mut buf = KeyBuf::default();
        let same_fields =
            names.len() == pairs.len() && names.iter().zip(pairs).all(|(n, (f, _))| n == f);
        if same_fields {
            buf.start();
            for (_, v) in pairs {
                buf.push_str(v);
            }
        } else {
            buf.0.clear();
            buf.0.push(PAIRS);
            for (f, v) in pairs {
                buf.push_str(f);
                buf.push_str(v);
            }
        }
        buf.to_key()
    }

    /// The key of a rule grouping by `names` as one grouping by `to`.
    pub fn regroup(&self, names: &[String], to: &[String]) -> Key {
        if names == to {
            return self.clone();
        }
        Key::from_pairs(to, &self.view(names).to_pairs())
    }

    /// This key decoded with the `group_by` field names it was built for.
    pub fn view<'a>(&'a self, names: &'a [String]) -> KeyView<'a> {
        KeyView {
            bytes: &self.0,
            names,
        }
    }
}

impl KeyBuf {
    /// Empties the buffer for a new key of values.
    pub(crate) fn start(&mut self) {
        self.0.clear();
        self.0.push(VALUES);
    }

    /// Appends the next value.
    pub(crate) fn push_str(&mut self, s: &str) {
        push_len(&mut self.0, s.len());
        self.0.extend_from_slice(s.as_bytes());
    }

    /// Appends the next value as the field's text (`Field::to_text`
    /// spelling), or `""` when the event lacks the field, without an
    /// intermediate string.
    pub(crate) fn push_field(&mut self, f: Option<Field<'_>>) {
        match f {
            Some(Field::Str(s)) => self.push_str(s),
            Some(Field::Int(i)) => self.push_display(i),
            Some(Field::Float(x)) => self.push_display(x),
            Some(Field::Bool(b)) => self.push_str(if b { "true" } else { "false" }),
            None => self.push_str(""),
        }
    }

    /// Appends `x`'s text. Its length goes before it but is known only
    /// after it is written, so the text goes after a one-byte length,
    /// which fits every integer, and the length is widened in place in the
    /// rare case it does not (a float like `1e300` prints 301 digits).
    fn push_display(&mut self, x: impl fmt::Display) {
        use std::io::Write;
        let buf = &mut self.0;
        let at = buf.len();
        buf.push(0);
        // Writing to a Vec cannot fail.
        let _ = write!(buf, "{x}");
        let len = buf.len() - at - 1;
        if len < 0x80 {
            buf[at] = len as u8;
        } else {
            let mut prefix = Vec::with_capacity(4);
            push_len(&mut prefix, len);
            buf.splice(at..at + 1, prefix);
        }
    }

    /// The bytes to look the key up with in a map of [`Key`]s.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key, allocated to be stored.
    pub fn to_key(&self) -> Key {
        Key(self.0.as_slice().into())
    }

    /// The key decoded with the `group_by` field names it was built for.
    pub fn view<'a>(&'a self, names: &'a [String]) -> KeyView<'a> {
        KeyView {
            bytes: &self.0,
            names,
        }
    }
}

impl<'a> KeyView<'a> {
    /// The bytes to look the key up with in a map of [`Key`]s.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn to_key(&self) -> Key {
        Key(self.bytes.into())
    }

    /// (field, value) in `group_by` order.
    pub fn pairs(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let (tag, rest) = self.bytes.split_first().unwrap_or((&VALUES, &[]));
        let mut values = strings(rest);
        let mut names = self.names.iter();
        let pairs = *tag == PAIRS;
        std::iter::from_fn(move || {
            if pairs {
                Some((values.next()?, values.next()?))
            } else {
                Some((names.next()?.as_str(), values.next()?))
            }
        })
    }

    /// What a key's persisted record holds.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.pairs()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect()
    }

    /// The key as alert labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.to_pairs().into_iter().collect()
    }

    pub fn get(&self, field: &str) -> Option<&'a str> {
        self.pairs().find(|(f, _)| *f == field).map(|(_, v)| v)
    }

    /// The key as `w.key` shows it.
    pub(crate) fn to_map(self) -> Map {
        self.pairs()
            .map(|(f, v)| (f.into(), Dynamic::from(v.to_string())))
            .collect()
    }
}

impl fmt::Display for KeyView<'_> {
    /// `sdkappid=1400000001,user_id=alice`; empty for a global window.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (field, value)) in self.pairs().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{field}={value}")?;
        }
        Ok(())
    }
}

/// Appends `len` as LEB128: one byte below 128, which is nearly every value.
fn push_len(out: &mut Vec<u8>, mut len: usize) {
    while len >= 0x80 {
        out.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
}

/// The length-prefixed strings of an encoded key, after its tag. The bytes
/// were written by this module from `&str`s, so decoding never fails; were
/// they cut short or not UTF-8, the strings would end or read as empty
/// rather than panic.
fn strings(mut rest: &[u8]) -> impl Iterator<Item = &str> {
    std::iter::from_fn(move || {
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            let (&b, tail) = rest.split_first()?;
            rest = tail;
            len |= usize::from(b & 0x7f).checked_shl(shift)?;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let (s, tail) = rest.split_at_checked(len)?;
        rest = tail;
        Some(std::str::from_utf8(s).unwrap_or_default())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn values_round_trip_with_the_rules_names() {
        let g = names(&["sdkappid", "user_id"]);
        let long = "x".repeat(300);
        for v in ["", "alice", "a=b,c", "\u{0}\u{80}é", long.as_str()] {
            let p = pairs(&[("sdkappid", "1400000001"), ("user_id", v)]);
            let k = Key::from_pairs(&g, &p);
            assert_eq!(k.view(&g).to_pairs(), p);
            assert_eq!(k.view(&g).get("user_id"), Some(v));
        }
    }

    #[test]
    fn values_are_unambiguous() {
        let g = names(&["a", "b"]);
        let k1 = Key::from_pairs(&g, &pairs(&[("a", "x"), ("b", "yz")]));
        let k2 = Key::from_pairs(&g, &pairs(&[("a", "xy"), ("b", "z")]));
        assert_ne!(k1, k2);
    }

    #[test]
    fn foreign_names_stay_apart_and_keep_their_names() {
        let g = names(&["sdkappid", "platform"]);
        let old = pairs(&[("sdkappid", "1"), ("user_id", "web")]);
        let current = pairs(&[("sdkappid", "1"), ("platform", "web")]);
        let k_old = Key::from_pairs(&g, &old);
        let k_new = Key::from_pairs(&g, &current);
        assert_ne!(k_old, k_new);
        assert_eq!(k_old.view(&g).to_pairs(), old);
        assert_eq!(k_old.view(&g).to_string(), "sdkappid=1,user_id=web");
        // Back under its own fields it is an ordinary key again.
        let g_old = names(&["sdkappid", "user_id"]);
        assert_eq!(
            k_old.regroup(&g, &g_old),
            Key::from_pairs(&g_old, &old),
            "canonical form"
        );
    }

    #[test]
    fn built_keys_equal_restored_keys() {
        let g = names(&["sdkappid", "user_id", "ok", "x"]);
        let mut b = KeyBuf::default();
        b.start();
        b.push_field(Some(Field::Int(1_400_000_001)));
        b.push_field(Some(Field::Str("alice")));
        b.push_field(Some(Field::Bool(true)));
        b.push_field(None);
        let p = pairs(&[
            ("sdkappid", "1400000001"),
            ("user_id", "alice"),
            ("ok", "true"),
            ("x", ""),
        ]);
        assert_eq!(b.to_key(), Key::from_pairs(&g, &p));
        assert_eq!(
            b.view(&g).to_string(),
            "sdkappid=1400000001,user_id=alice,ok=true,x="
        );
    }

    #[test]
    fn long_number_text_gets_a_wide_length() {
        let g = names(&["v"]);
        let mut b = KeyBuf::default();
        b.start();
        b.push_field(Some(Field::Float(1e300)));
        assert_eq!(b.view(&g).get("v"), Some(1e300f64.to_string().as_str()));
        assert_eq!(b.view(&g).get("v").map(str::len), Some(301));
    }

    #[test]
    fn empty_group_by_is_the_default_key() {
        let mut b = KeyBuf::default();
        b.start();
        assert_eq!(b.to_key(), Key::default());
        assert_eq!(b.view(&[]).to_string(), "");
        assert!(b.view(&[]).labels().is_empty());
    }
}
