//! One JSON record read without building its value: the text is checked as JSON (with the
//! same nesting limit as parsing it) and only the value at the entity-id path is taken out.
//! A webhook's body is stored as it came; parsing it into a value only to read its id and
//! drop it cost more than the rest of the request's own work in the server.

use std::fmt;

use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde::Deserialize;
use serde_json::Value;

/// The value at `path` in the JSON text `body` (as [`crate::connectors::at_path`] reads a
/// parsed value: dot-separated keys, numbers indexing lists; a key given twice counts as
/// its last), or `None` when nothing is there; an error when `body` is not one JSON document.
pub fn value_at(body: &[u8], path: &str) -> Result<Option<Value>, serde_json::Error> {
    let parts: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        path.split('.').collect()
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = At(&parts).deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// Checks that `body` is one JSON document, by the rules [`value_at`] reads it with.
pub fn check(body: &[u8]) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    Skip.deserialize(&mut de)?;
    de.end()
}

/// Reads a value, keeping what is at the path below it.
struct At<'p>(&'p [&'p str]);

impl<'de> DeserializeSeed<'de> for At<'_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Option<Value>, D::Error> {
        match self.0 {
            [] => Value::deserialize(de).map(Some),
            _ => de.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for At<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Value>, A::Error> {
        let (first, rest) = self
            .0
            .split_first()
            .ok_or_else(|| A::Error::custom("no path"))?;
        let mut found = None;
        while let Some(hit) = map.next_key_seed(KeyIs(first))? {
            if hit {
                found = map.next_value_seed(At(rest))?;
            } else {
                map.next_value_seed(Skip)?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Value>, A::Error> {
        let (first, rest) = self
            .0
            .split_first()
            .ok_or_else(|| A::Error::custom("no path"))?;
        let index = first.parse::<usize>().ok();
        let mut found = None;
        let mut i = 0;
        loop {
            let more = if Some(i) == index {
                seq.next_element_seed(At(rest))?.map(|v| found = v)
            } else {
                seq.next_element_seed(Skip)?
            };
            if more.is_none() {
                return Ok(found);
            }
            i += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<Value>, E> {
        Ok(None)
    }
}

/// Whether a key is the one looked for, compared without copying it.
struct KeyIs<'p>(&'p str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// Reads a value and keeps nothing of it. Every part goes through `deserialize_any`, so the
/// parser's nesting limit holds as it does for a parsed value.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{check, value_at};
    use crate::connectors::at_path;

    /// The scan finds what reading the parsed value finds, for every path tried.
    #[test]
    fn reads_what_the_parsed_value_holds() {
        let docs = [
            r#"{"id": 123, "name": "\u0041da", "order": {"id": "A-1", "lines": [{"sku": "x"}, {"sku": "y"}]}}"#,
            r#"{"id": 1, "id": 2}"#,
            r#"{"id": {"a": 1}, "id": "last"}"#,
            r#"{"order": {"id": 1}, "order": {"other": 2}}"#,
            r#"[{"id": 5}, {"id": 6}]"#,
            r#""just text""#,
            r#"12.50"#,
            r#"{"n": 1e3, "big": 123456789012345678901234567890, "neg": -7, "f": 1.0}"#,
            r#"{"0": "key zero", "list": [10, 20, 30]}"#,
            r#"{"e\"sc": "quoted key", "nul": null, "t": true}"#,
        ];
        let paths = [
            "",
            "id",
            "name",
            "order",
            "order.id",
            "order.lines",
            "order.lines.1.sku",
            "order.lines.5",
            "order.lines.x",
            "0",
            "1.id",
            "list.2",
            "list.-1",
            "n",
            "big",
            "neg",
            "f",
            "e\"sc",
            "nul",
            "t",
            "t.x",
            "missing",
            "order.other",
        ];
        for doc in docs {
            let parsed: serde_json::Value = serde_json::from_str(doc).unwrap();
            check(doc.as_bytes()).unwrap();
            for path in paths {
                assert_eq!(
                    value_at(doc.as_bytes(), path).unwrap(),
                    at_path(&parsed, path).cloned(),
                    "{doc} at {path:?}"
                );
            }
        }
    }

    /// What parsing refuses, the scan refuses: bad syntax, trailing text, bad UTF-8, and
    /// nesting past the parser's limit.
    #[test]
    fn refuses_what_parsing_refuses() {
        let deep_list = "[".repeat(200) + &"]".repeat(200);
        let deep_object = "{\"a\":".repeat(200) + "1" + &"}".repeat(200);
        let bad: [&[u8]; 8] = [
            b"",
            b"{",
            b"{\"id\": 1,}",
            b"{\"id\": 1} x",
            b"{\"id\": \"\xff\"}",
            b"{\"a\": [1, 2}",
            deep_list.as_bytes(),
            deep_object.as_bytes(),
        ];
        for body in bad {
            assert!(serde_json::from_slice::<serde_json::Value>(body).is_err());
            assert!(check(body).is_err());
            for path in ["", "id", "a", "a.a"] {
                assert!(
                    value_at(body, path).is_err(),
                    "{:?} at {path:?}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }
}
