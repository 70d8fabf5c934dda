//! The `ctx` helper API: what both transformation languages offer besides the language itself
//! (dates with time zones, money rounding, padding, CSV and XML fields, skipping; lookups are
//! in `lookups`). Each helper is implemented once, here; JavaScript (`js/prelude.js`) and
//! templates (`template/env.rs`) only turn their own values into these arguments, so the two
//! agree to the character.
//!
//! | helper                 | JavaScript (`ctx.…`)             | template                        |
//! |------------------------|----------------------------------|---------------------------------|
//! | lookup                 | `lookup(table, key[, default])`  | `lookup(table, key[, default])` |
//! | date formatting        | `formatDate(value, pattern, tz)` | `value \| format_date(pattern, tz)` |
//! | date reading           | `parseDate(text, pattern, tz)`   | `text \| parse_date(pattern, tz)` |
//! | money (decimal text)   | `money(value[, places])`         | `value \| money(places)`        |
//! | padding                | `padStart`, `padEnd`             | `pad_left`, `pad_right`         |
//! | fixed width            | `fixed(value, width, fill, align)` | `fixed(width, fill=, align=)` |
//! | CSV row or field       | `csv(values)`                    | `values \| csv`                 |
//! | XML text               | `xml(text)`                      | `text \| xml`                   |
//! | skip the record        | `skip(reason)` (return it)       | `skip(reason)`                  |
//! | log                    | `log(...)`                       | `log(...)`                      |
//!
//! Two differences are kept on purpose: JavaScript's `round(value[, places])` is `money` as a
//! number, while templates keep Jinja's own `round` filter (its default of 0 places differs, and
//! changing it would silently change existing templates); and `log` prints each value as its
//! language prints it (JSON in JavaScript), since a log line is for reading, not for output.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A time zone by IANA name (`Europe/London`), or `UTC` when empty.
fn zone(name: &str) -> Result<Tz, String> {
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>()
        .map_err(|_| format!("unknown time zone `{name}`; use an IANA name such as Europe/London"))
}

/// Reads an instant: RFC 3339 / ISO 8601 with an offset (`2024-03-01T10:00:00-05:00`), a date
/// and time without one (taken in `tz`), a date alone (midnight in `tz`), or with `pattern`
/// (strftime, e.g. `%d/%m/%Y %H:%M`) a text in that shape, in `tz` unless it carries an offset.
pub fn parse_instant(text: &str, pattern: Option<&str>, tz: &str) -> Result<DateTime<Utc>, String> {
    let tz = zone(tz)?;
    let text = text.trim();
    let local = |naive: NaiveDateTime| {
        tz.from_local_datetime(&naive)
            .earliest()
            .map(|d| d.with_timezone(&Utc))
            .ok_or_else(|| format!("`{text}` does not exist in time zone {tz}"))
    };
    if let Some(p) = pattern.filter(|p| !p.is_empty()) {
        if let Ok(d) = DateTime::<FixedOffset>::parse_from_str(text, p) {
            return Ok(d.with_timezone(&Utc));
        }
        if let Ok(n) = NaiveDateTime::parse_from_str(text, p) {
            return local(n);
        }
        if let Ok(d) = NaiveDate::parse_from_str(text, p) {
            return local(d.and_hms_opt(0, 0, 0).expect("midnight exists"));
        }
        return Err(format!("`{text}` does not match the date pattern `{p}`"));
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(text) {
        return Ok(d.with_timezone(&Utc));
    }
    for p in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(text, p) {
            return local(n);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return local(d.and_hms_opt(0, 0, 0).expect("midnight exists"));
    }
    if let Ok(d) = DateTime::parse_from_rfc2822(text) {
        return Ok(d.with_timezone(&Utc));
    }
    Err(format!(
        "`{text}` is not a date this helper reads: give ISO 8601 (2024-03-01T10:00:00Z) or a pattern"
    ))
}

/// Formats an instant with a strftime pattern in a time zone (`%Y-%m-%d %H:%M`, `%d/%m/%Y`).
pub fn format_instant(at: DateTime<Utc>, pattern: &str, tz: &str) -> Result<String, String> {
    use std::fmt::Write;
    let tz = zone(tz)?;
    let pattern = if pattern.is_empty() {
        "%Y-%m-%dT%H:%M:%S%:z"
    } else {
        pattern
    };
    let mut out = String::new();
    write!(out, "{}", at.with_timezone(&tz).format(pattern)).map_err(|_| {
        format!("`{pattern}` is not a valid date pattern (strftime, e.g. %Y-%m-%d)")
    })?;
    Ok(out)
}

/// Parses then formats: the usual `formatDate("2024-03-01T10:00:00Z", "%d/%m/%Y", "Europe/London")`.
pub fn format_date(value: &str, pattern: &str, tz: &str) -> Result<String, String> {
    format_instant(parse_instant(value, None, "UTC")?, pattern, tz)
}

/// Rounds a decimal given as text (Shopify sends money as strings) or a number's shortest
/// text, half away from zero, to `places` decimals, in decimal: `1.005` is `1.01`, never the
/// `1.00` binary floating point gives. Returns the fixed-point text (`"12.50"`).
pub fn round_decimal(value: &str, places: u32) -> Result<String, String> {
    let places = places.min(12) as usize;
    let text = value.trim();
    let bad = || format!("`{value}` is not a number");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    // Exponent forms (1e-7) come from numbers' shortest text; widen them first.
    let expanded;
    let digits = if digits.contains(['e', 'E']) {
        let f: f64 = digits.parse().map_err(|_| bad())?;
        expanded = format!("{f:.20}");
        expanded.as_str()
    } else {
        digits
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let mut all: Vec<u8> = int.bytes().map(|b| b - b'0').collect();
    if all.is_empty() {
        all.push(0);
    }
    let int_len = all.len();
    let mut fr: Vec<u8> = frac.bytes().map(|b| b - b'0').collect();
    let round_up = fr.len() > places && fr[places] >= 5;
    fr.resize(places, 0);
    all.extend(fr);
    if round_up {
        let mut i = all.len();
        loop {
            if i == 0 {
                all.insert(0, 1);
                break;
            }
            i -= 1;
            if all[i] == 9 {
                all[i] = 0;
            } else {
                all[i] += 1;
                break;
            }
        }
    }
    let int_len = int_len + (all.len() - int_len - places);
    let mut out = String::with_capacity(all.len() + 2);
    let int_part: String = all[..int_len].iter().map(|d| (b'0' + d) as char).collect();
    let int_part = int_part.trim_start_matches('0');
    let zero = all.iter().all(|d| *d == 0);
    if negative && !zero {
        out.push('-');
    }
    out.push_str(if int_part.is_empty() { "0" } else { int_part });
    if places > 0 {
        out.push('.');
        out.extend(all[int_len..].iter().map(|d| (b'0' + d) as char));
    }
    Ok(out)
}

/// Places `money` rounds to when none are given.
pub const MONEY_PLACES: u32 = 2;

/// `money(value[, places])`: the decimal text of a number or numeric text, rounded half away
/// from zero in decimal (see `round_decimal`), to `places` (default 2).
pub fn money(value: &str, places: Option<u32>) -> Result<String, String> {
    round_decimal(value, places.unwrap_or(MONEY_PLACES))
}

/// The instant a date helper is given: text (ISO 8601, RFC 2822) or milliseconds since the
/// Unix epoch (a JavaScript `Date` or `Date.now()`, or a number in a template).
#[derive(Debug, Clone, Copy)]
pub enum When<'a> {
    Text(&'a str),
    Millis(f64),
}

/// `formatDate` / `format_date`: the instant written with a strftime pattern (default ISO
/// 8601 with offset) in a time zone (default UTC).
pub fn format_when(value: When<'_>, pattern: &str, tz: &str) -> Result<String, String> {
    match value {
        When::Text(text) => format_date(text, pattern, tz),
        When::Millis(ms) => {
            let at = (ms.is_finite() && ms.abs() < 8.64e15)
                .then(|| DateTime::<Utc>::from_timestamp_millis(ms.trunc() as i64))
                .flatten()
                .ok_or_else(|| format!("{ms} is not a time in milliseconds since 1970"))?;
            format_instant(at, pattern, tz)
        }
    }
}

/// `parseDate` / `parse_date`: the instant a text stands for, as RFC 3339 in UTC.
pub fn parse_date(text: &str, pattern: Option<&str>, tz: &str) -> Result<String, String> {
    parse_instant(text, pattern, tz).map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// The reason `skip(reason)` records; a skip without one says so.
pub fn skip_reason(reason: Option<&str>) -> String {
    reason.map_or_else(
        || "skipped by the transformation".to_string(),
        str::to_string,
    )
}

/// A width given as a JavaScript number, as the padding helpers take it: missing, negative
/// or not a number is 0 (as `String.prototype.padStart` takes it), a fraction is cut, and one
/// over `max` is refused naming the number as written.
pub fn width_of_number(helper: &str, width: f64, max: usize) -> Result<usize, String> {
    if width.is_nan() || width <= 0.0 {
        return Ok(0);
    }
    if width > max as f64 {
        let shown = if width.is_infinite() {
            "Infinity".to_string()
        } else {
            format!("{}", width.trunc())
        };
        return Err(over_width(helper, &shown, max));
    }
    Ok(width as usize)
}

fn over_width(helper: &str, width: &str, max: usize) -> String {
    format!(
        "{helper}: width {width} is over the limit of {max} characters (transform.max_pad_width)"
    )
}

/// How a padding helper lays out its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `padStart` / `pad_left`: filled on the left, never cut.
    Start,
    /// `padEnd` / `pad_right`: filled on the right, never cut.
    End,
    /// `fixed`: exactly `width` characters, cut if longer; aligned left unless `right`.
    Fixed { right: bool },
}

/// The padding helpers: `text` laid out in `width` characters with the first character of
/// `fill` (a space when there is none), the width checked against `max` first.
pub fn padded(
    helper: &str,
    text: &str,
    width: usize,
    fill: Option<&str>,
    layout: Layout,
    max: usize,
) -> Result<String, String> {
    check_width(helper, width, max)?;
    let fill = fill.and_then(|f| f.chars().next()).unwrap_or(' ');
    Ok(match layout {
        Layout::Start => pad(text, width, fill, true, false),
        Layout::End => pad(text, width, fill, false, false),
        Layout::Fixed { right } => pad(text, width, fill, right, true),
    })
}

/// Adds one field to a CSV row being built (a comma before all but the `first`), quoted as
/// needed; false, leaving the row as it was, when the row would pass `limit` bytes.
pub fn push_csv_field(row: &mut String, text: &str, first: bool, limit: usize) -> bool {
    let field = csv_field(text);
    let comma = usize::from(!first);
    if row.len() + comma + field.len() > limit {
        return false;
    }
    if !first {
        row.push(',');
    }
    row.push_str(&field);
    true
}

/// Refuses a padding width over `max` (`transform.max_pad_width`) before anything of that
/// size is built; `helper` names the helper in the message.
pub fn check_width(helper: &str, width: usize, max: usize) -> Result<(), String> {
    if width > max {
        return Err(over_width(helper, &width.to_string(), max));
    }
    Ok(())
}

/// Pads (or, with `truncate`, cuts) `text` to exactly `width` characters: on the left when
/// `left`, else on the right. For fixed-width files. Callers bound `width` (`check_width`).
pub fn pad(text: &str, width: usize, fill: char, left: bool, truncate: bool) -> String {
    let len = text.chars().count();
    if len >= width {
        return if truncate {
            text.chars().take(width).collect()
        } else {
            text.to_string()
        };
    }
    let fill: String = std::iter::repeat_n(fill, width - len).collect();
    if left {
        fill + text
    } else {
        text.to_string() + &fill
    }
}

/// One CSV field: quoted when it holds a comma, a quote or a line break (quotes doubled).
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) || text.starts_with(' ') || text.ends_with(' ') {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Text made safe inside XML elements and attributes.
pub fn xml_escape(text: &str, out: &mut String) {
    xml_escape_within(text, out, usize::MAX);
}

/// `xml_escape`, stopping as soon as `out` is longer than `limit` bytes (escaping can make a
/// text six times longer); returns whether all of `text` fit.
pub fn xml_escape_within(text: &str, out: &mut String, limit: usize) -> bool {
    for c in text.chars() {
        if out.len() > limit {
            return false;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all are dropped rather than break the document.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out.len() <= limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_in_decimal() {
        assert_eq!(round_decimal("1.005", 2).unwrap(), "1.01");
        assert_eq!(round_decimal("2.675", 2).unwrap(), "2.68");
        assert_eq!(round_decimal("-2.5", 0).unwrap(), "-3");
        assert_eq!(round_decimal("9.999", 2).unwrap(), "10.00");
        assert_eq!(round_decimal("12", 2).unwrap(), "12.00");
        assert_eq!(round_decimal(".5", 0).unwrap(), "1");
        assert_eq!(round_decimal("-0.001", 2).unwrap(), "0.00");
        assert_eq!(round_decimal("1e-7", 2).unwrap(), "0.00");
        assert!(round_decimal("abc", 2).is_err());
        assert!(round_decimal("1.2.3", 2).is_err());
    }

    #[test]
    fn dates_in_time_zones() {
        assert_eq!(
            format_date("2024-07-01T23:30:00Z", "%Y-%m-%d %H:%M", "Europe/London").unwrap(),
            "2024-07-02 00:30"
        );
        assert_eq!(
            format_date("2024-01-05T10:00:00-05:00", "%d/%m/%Y %H:%M", "UTC").unwrap(),
            "05/01/2024 15:00"
        );
        let at = parse_instant(
            "05/01/2024 09:00",
            Some("%d/%m/%Y %H:%M"),
            "Australia/Sydney",
        )
        .unwrap();
        assert_eq!(at.to_rfc3339(), "2024-01-04T22:00:00+00:00");
        assert!(format_date("2024-01-05", "%Y", "Mars/Base").is_err());
        assert!(parse_instant("yesterday", None, "UTC").is_err());
    }

    #[test]
    fn csv_and_xml_escaping() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        let mut s = String::new();
        xml_escape("<a & 'b'>\u{1}", &mut s);
        assert_eq!(s, "&lt;a &amp; &apos;b&apos;&gt;");
        assert_eq!(pad("7", 4, '0', true, true), "0007");
        assert_eq!(pad("ABCDEF", 4, ' ', false, true), "ABCD");
        let mut s = String::new();
        assert!(!xml_escape_within(&"&".repeat(1000), &mut s, 100));
        assert!(s.len() <= 105, "{}", s.len());
        let mut s = String::new();
        assert!(xml_escape_within("a<b", &mut s, 6));
        assert_eq!(s, "a&lt;b");
    }

    #[test]
    fn padding_and_fields() {
        let max = 10;
        let p = |w, fill, layout| padded("h", "abc", w, fill, layout, max).unwrap();
        assert_eq!(p(5, Some("0"), Layout::Start), "00abc");
        assert_eq!(p(5, Some("xy"), Layout::End), "abcxx");
        assert_eq!(p(5, Some(""), Layout::End), "abc  ");
        assert_eq!(p(2, None, Layout::Start), "abc");
        assert_eq!(p(2, None, Layout::Fixed { right: true }), "ab");
        assert_eq!(p(4, Some("."), Layout::Fixed { right: true }), ".abc");
        assert!(padded("h", "", 11, None, Layout::End, max).is_err());
        assert_eq!(width_of_number("h", f64::NAN, max), Ok(0));
        assert_eq!(width_of_number("h", -3.0, max), Ok(0));
        assert_eq!(width_of_number("h", 4.7, max), Ok(4));
        let e = width_of_number("h", f64::INFINITY, max).unwrap_err();
        assert!(e.contains("width Infinity"), "{e}");
        let e = width_of_number("h", 1099511627776.0, max).unwrap_err();
        assert!(e.contains("width 1099511627776 "), "{e}");
        let mut row = String::new();
        assert!(push_csv_field(&mut row, "", true, 100));
        assert!(push_csv_field(&mut row, "a,b", false, 100));
        assert!(push_csv_field(&mut row, "c", false, 100));
        assert_eq!(row, ",\"a,b\",c");
        assert!(!push_csv_field(&mut row, "dddd", false, 10));
        assert_eq!(row, ",\"a,b\",c");
    }

    #[test]
    fn dates_from_milliseconds() {
        let at = When::Millis(1_719_876_600_000.0);
        assert_eq!(
            format_when(at, "%Y-%m-%d %H:%M", "Europe/London").unwrap(),
            "2024-07-02 00:30"
        );
        assert!(format_when(When::Millis(f64::NAN), "", "").is_err());
        assert_eq!(
            parse_date("2024-07-01 23:30", None, "UTC").unwrap(),
            "2024-07-01T23:30:00Z"
        );
    }

    #[test]
    fn widths_are_bounded() {
        assert!(check_width("pad_left", 10_000, 10_000).is_ok());
        let e = check_width("pad_left", usize::MAX, 10_000).unwrap_err();
        assert_eq!(
            e,
            "pad_left: width 18446744073709551615 is over the limit of 10000 characters (transform.max_pad_width)"
        );
    }
}
