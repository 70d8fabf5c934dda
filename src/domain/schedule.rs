//! Cron schedules of scheduled sources: 5 fields, evaluated in the source's time zone.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// Parses a 5-field cron expression; the error says what is wrong with it.
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    if expr.split_whitespace().count() != 5 {
        return Err("must have 5 fields: minute hour day-of-month month day-of-week".into());
    }
    Cron::new(expr).parse().map_err(|e| e.to_string())
}

/// Parses an IANA time zone name such as `Europe/London`.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| "is not an IANA time zone name such as `Europe/London`".to_string())
}

/// The first time strictly after `after` at which the schedule fires, in UTC.
pub fn next_run(expr: &str, tz: &str, after: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let cron = parse_cron(expr)?;
    let tz = parse_timezone(tz)?;
    cron.find_next_occurrence(&after.with_timezone(&tz), false)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_the_sources_time_zone() {
        let after: DateTime<Utc> = "2026-07-01T00:30:00Z".parse().unwrap();
        // 02:00 in London during summer time is 01:00 UTC.
        let next = next_run("0 2 * * *", "Europe/London", after).unwrap();
        assert_eq!(
            next,
            "2026-07-01T01:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let next = next_run("*/5 * * * *", "UTC", after).unwrap();
        assert_eq!(
            next,
            "2026-07-01T00:35:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn bad_input_is_explained() {
        assert!(parse_cron("* * *").unwrap_err().contains("5 fields"));
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_timezone("Mars/Olympus").is_err());
    }
}
