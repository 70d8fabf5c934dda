//! U+0000, which Postgres cannot keep in text (SQLite can). What the store records about an
//! event or a job — messages, a transformation's logs, an answer's excerpt, a reference, an
//! entity id — comes from other systems and from code the merchant wrote; if it could not be
//! stored, the event or job it belongs to could never move on (and a delivery already sent
//! would be sent again each time its lease ran out). There the character is kept as U+FFFD, on
//! every store alike. Records' data is never changed: payloads and a job's records are `json`
//! on Postgres, which keeps `\u0000` as written (see
//! `migrations/postgres/0014_json_payloads.sql`).

use std::borrow::Cow;

/// `text` with each U+0000 replaced by U+FFFD.
pub fn printable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// [`printable`] of borrowed text, copied only when it holds U+0000.
pub fn printable_ref(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_replaces_only_nul() {
        assert_eq!(printable("a\u{0}b\u{0}".into()), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(printable("plain é".into()), "plain é");
        assert!(matches!(printable_ref("plain"), Cow::Borrowed(_)));
    }
}
