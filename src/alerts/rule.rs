//! What an alert rule says, as stored in its `definition`, and the daily window silence is
//! checked in.

use chrono::{Datelike, NaiveTime, Timelike};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::Timestamp;

/// The kinds of rule: three follow status changes as they happen, three judge a condition.
pub const KINDS: [&str; 6] = [
    "job_failed",
    "event_error",
    "event_failed",
    "error_rate",
    "silence",
    "stuck",
];

/// Whether a kind counts matching status changes (and splits alerts by error code for
/// events), rather than judging a condition.
pub fn follows_changes(kind: &str) -> bool {
    matches!(kind, "job_failed" | "event_error" | "event_failed")
}

/// A rule's settings beyond its name, kind, digest and switch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct Definition {
    /// The streams it watches; empty: every stream of the organisation.
    #[serde(default)]
    pub stream_ids: Vec<Uuid>,
    /// `error_rate`: the share of finished events that are ERROR or FAILED, in percent.
    #[serde(default = "threshold_pct")]
    pub threshold_pct: f64,
    /// `error_rate`: finished events needed in the window before the rate is judged.
    #[serde(default = "min_events")]
    pub min_events: u64,
    /// `error_rate`: the window judged. Every kind: how long the condition must be clear (or,
    /// for status changes, quiet) before its alert resolves itself.
    #[serde(default = "window_minutes")]
    pub window_minutes: u64,
    /// `silence`: how long without an OK event is silence.
    #[serde(default = "silence_minutes")]
    pub silence_minutes: u64,
    /// `stuck`: how long an event may wait (NEW or TRANSFORMED) before it is stuck.
    #[serde(default = "stuck_minutes")]
    pub stuck_minutes: u64,
    /// `silence`: checked only inside this daily window; none: always.
    #[serde(default)]
    pub check_window: Option<CheckWindow>,
    /// Where messages go.
    #[serde(default)]
    pub channel_ids: Vec<Uuid>,
    #[serde(default)]
    pub flood: Flood,
}

fn threshold_pct() -> f64 {
    10.0
}
fn min_events() -> u64 {
    20
}
fn window_minutes() -> u64 {
    60
}
fn silence_minutes() -> u64 {
    120
}
fn stuck_minutes() -> u64 {
    30
}

/// At most `max` messages per alert in `per_minutes`; the next says how many were held back.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Flood {
    pub max: u32,
    pub per_minutes: u32,
}

impl Default for Flood {
    fn default() -> Self {
        Flood {
            max: 20,
            per_minutes: 15,
        }
    }
}

/// Days and hours of a time zone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckWindow {
    /// `mon` … `sun`; empty: every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// `HH:MM`, local time.
    pub from: String,
    /// `HH:MM`, local time; before `from`, the window runs past midnight.
    pub to: String,
    /// An IANA time zone, e.g. `Europe/London`.
    pub timezone: String,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn hhmm(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text, "%H:%M").ok()
}

impl CheckWindow {
    /// What is wrong with it, as (field, message) under `at`.
    pub fn problems(&self, at: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for d in &self.days {
            if !DAYS.contains(&d.as_str()) {
                out.push((
                    format!("{at}.days"),
                    format!("{d:?} is not a day; use mon, tue, wed, thu, fri, sat, sun"),
                ));
            }
        }
        for (field, v) in [("from", &self.from), ("to", &self.to)] {
            if hhmm(v).is_none() {
                out.push((
                    format!("{at}.{field}"),
                    format!("{v:?} is not a time; write HH:MM, e.g. 08:00"),
                ));
            }
        }
        if self.timezone.parse::<chrono_tz::Tz>().is_err() {
            out.push((
                format!("{at}.timezone"),
                format!(
                    "{:?} is not a time zone; use an IANA name such as Europe/London",
                    self.timezone
                ),
            ));
        }
        out
    }

    /// Whether `now` falls inside the window (its day is the day the window opened).
    pub fn contains(&self, now: Timestamp) -> bool {
        let (Ok(tz), Some(from), Some(to)) = (
            self.timezone.parse::<chrono_tz::Tz>(),
            hhmm(&self.from),
            hhmm(&self.to),
        ) else {
            return false;
        };
        let local = now.0.with_timezone(&tz);
        let time = NaiveTime::from_hms_opt(local.hour(), local.minute(), local.second())
            .unwrap_or_default();
        let day = |offset: i64| {
            let d = (local.weekday().num_days_from_monday() as i64 + offset).rem_euclid(7);
            self.days.is_empty() || self.days.iter().any(|x| x == DAYS[d as usize])
        };
        if from <= to {
            day(0) && time >= from && time < to
        } else if time >= from {
            day(0)
        } else {
            // After midnight: the window opened the day before.
            time < to && day(-1)
        }
    }
}

impl Definition {
    /// What is wrong with it for a rule of `kind`, as (field, message).
    pub fn problems(&self, kind: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |f: &str, m: &str| out.push((f.to_string(), m.to_string()));
        if !(self.threshold_pct > 0.0 && self.threshold_pct <= 100.0) {
            bad("threshold_pct", "must be above 0 and at most 100");
        }
        if !(1..=1_000_000).contains(&self.min_events) {
            bad("min_events", "must be between 1 and 1000000");
        }
        for (f, v) in [
            ("window_minutes", self.window_minutes),
            ("silence_minutes", self.silence_minutes),
            ("stuck_minutes", self.stuck_minutes),
        ] {
            if !(1..=43_200).contains(&v) {
                bad(f, "must be between 1 and 43200 (30 days)");
            }
        }
        if !(1..=1000).contains(&self.flood.max) {
            bad("flood.max", "must be between 1 and 1000");
        }
        if !(1..=10_080).contains(&self.flood.per_minutes) {
            bad("flood.per_minutes", "must be between 1 and 10080 (a week)");
        }
        if self.stream_ids.len() > 1000 {
            bad("stream_ids", "may list at most 1000 streams");
        }
        if self.channel_ids.len() > 20 {
            bad("channel_ids", "may list at most 20 channels");
        }
        if let Some(w) = &self.check_window {
            out.extend(w.problems("check_window"));
            if kind != "silence" {
                out.push((
                    "check_window".into(),
                    "applies to silence rules only; remove it".into(),
                ));
            }
        }
        out
    }

    /// Whether the rule watches `stream`.
    pub fn watches(&self, stream: Uuid) -> bool {
        self.stream_ids.is_empty() || self.stream_ids.contains(&stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::from_datetime(text.parse().unwrap())
    }

    #[test]
    fn the_check_window_is_local_time_on_its_days_and_may_run_past_midnight() {
        let weekdays = CheckWindow {
            days: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
            from: "08:00".into(),
            to: "22:00".into(),
            timezone: "Europe/London".into(),
        };
        // 2026-07-06 is a Monday; London is on summer time (UTC+1).
        assert!(weekdays.contains(at("2026-07-06T07:00:00Z")));
        assert!(!weekdays.contains(at("2026-07-06T06:59:00Z")));
        assert!(!weekdays.contains(at("2026-07-06T21:00:00Z")));
        assert!(!weekdays.contains(at("2026-07-05T12:00:00Z")), "a Sunday");
        // In winter London is UTC.
        assert!(weekdays.contains(at("2026-12-07T08:00:00Z")));
        let night = CheckWindow {
            days: vec!["fri".into()],
            from: "22:00".into(),
            to: "02:00".into(),
            timezone: "UTC".into(),
        };
        assert!(night.contains(at("2026-07-10T23:00:00Z")), "Friday night");
        assert!(
            night.contains(at("2026-07-11T01:00:00Z")),
            "Saturday, from Friday"
        );
        assert!(
            !night.contains(at("2026-07-11T23:00:00Z")),
            "Saturday night"
        );
        assert!(
            !night.contains(at("2026-07-10T01:00:00Z")),
            "Friday, from Thursday"
        );
        let bad = CheckWindow {
            days: vec!["monday".into()],
            from: "8am".into(),
            to: "22:00".into(),
            timezone: "Mars/Olympus".into(),
        };
        let fields: Vec<_> = bad
            .problems("check_window")
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(
            fields,
            [
                "check_window.days",
                "check_window.from",
                "check_window.timezone"
            ]
        );
    }
}
