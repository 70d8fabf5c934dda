//! Alerts: rules are judged against the event log and the event counts, incidents become
//! alerts (one unresolved per rule, stream and error code, counting repeats), and their
//! messages go to channels under flood control, with every try in `/notifications`.
//!
//! One node at a time evaluates (a lease in the database). An evaluation reads on from where
//! the last one stopped in the event log and writes its alert changes, its notifications and
//! the new position in one transaction, fenced by the lease: a node that lost the lease writes
//! nothing. Notifications are sent after that commit, each try claimed first, so two nodes
//! never send the same message.

pub mod rule;
mod send;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::types::Json;
use tokio::sync::watch;
use uuid::Uuid;

use crate::app::AppState;
use crate::config::AlertsConfig;
use crate::domain::Timestamp;
use crate::store::{
    Alert, AlertRule, AlertWrites, LogEntry, LogPosition, Notification, Store, StreamBrief,
};
use rule::{follows_changes, Definition};

pub use send::{sign, SIGNATURE_HEADER};

/// Most event-log rows one evaluation reads; the rest wait for the next.
const LOG_ROWS: i64 = 1000;
/// Most batches of the event log one tick reads when it has fallen behind.
const MAX_BATCHES: usize = 20;
/// Most notifications sent per evaluation.
const SEND_BATCH: i64 = 100;
/// Event ids kept on an alert as examples.
const SAMPLES: usize = 10;

/// Evaluates rules and sends notifications for this process.
#[derive(Clone)]
pub struct Alerting {
    store: Store,
    config: AlertsConfig,
    sender: send::Sender,
    /// This process, as the lease names it.
    holder: String,
    /// When condition rules were last judged (they read event counts: not every tick).
    judged_at: Arc<Mutex<Option<Timestamp>>>,
}

/// What one evaluation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tick {
    /// Whether this node held the lease and wrote its evaluation.
    pub evaluated: bool,
    pub opened: usize,
    pub notifications: usize,
    pub sent: usize,
    pub failed: usize,
}

impl Alerting {
    pub fn new(state: &AppState) -> Alerting {
        Alerting {
            store: state.store.clone(),
            config: state.config.alerts.clone(),
            sender: send::Sender::new(state),
            holder: format!("node-{}", Uuid::new_v4().simple()),
            judged_at: Arc::default(),
        }
    }

    /// Evaluates every `alerts.interval_seconds` until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let every = Duration::from_secs(self.config.interval_seconds);
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = self.tick(Timestamp::now()).await {
                tracing::warn!(error = %e, "evaluating alerts failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One evaluation as of `now` (the clock is the caller's, so tests can move it), then the
    /// sending of what is due.
    pub async fn tick(&self, now: Timestamp) -> anyhow::Result<Tick> {
        let mut report = Tick::default();
        let until = later(now, self.config.lease_seconds);
        let Some(from) = self
            .store
            .take_alert_lease(&self.holder, now, until)
            .await?
        else {
            return Ok(report);
        };
        let judge = self
            .judged_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|last| {
                now < last || later(last, self.config.condition_interval_seconds) <= now
            });
        // Sending goes on whatever evaluation met: a notification already written is sent.
        let evaluated = self.evaluate_batches(&mut report, from, now, judge).await;
        if judge && report.evaluated {
            // Judged only once written: a failed evaluation judges again at the next tick.
            *self.judged_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        }
        let (sent, failed) = self.sender.send_due(&self.store, &self.config, now).await?;
        report.sent = sent;
        report.failed = failed;
        evaluated.map(|_| report)
    }

    /// Batches of the event log while it is behind; conditions and digests in the first.
    async fn evaluate_batches(
        &self,
        report: &mut Tick,
        mut from: LogPosition,
        now: Timestamp,
        judge: bool,
    ) -> anyhow::Result<()> {
        for batch in 0..MAX_BATCHES {
            let mut saved = None;
            // A change made meanwhile (an alert acknowledged) makes the write fail; run again.
            for _ in 0..3 {
                let last = batch + 1 == MAX_BATCHES;
                let (writes, to, full) =
                    self.evaluate(from, now, batch == 0 && judge, last).await?;
                if self
                    .store
                    .save_alert_evaluation(&self.holder, from, to, &writes)
                    .await?
                {
                    report.evaluated = true;
                    report.opened += writes.created.len();
                    report.notifications += writes.notifications.len();
                    saved = Some((to, full));
                    break;
                }
            }
            match saved {
                Some((to, true)) => from = to,
                _ => break,
            }
        }
        Ok(())
    }

    /// One batch: the event log from `from` on, and (with `judge`) condition rules and
    /// digests; messages only if the log is read to its end or this is the tick's `last`
    /// batch. Answers the writes, the position read to, and whether the batch was full.
    async fn evaluate(
        &self,
        from: LogPosition,
        now: Timestamp,
        judge: bool,
        last: bool,
    ) -> anyhow::Result<(AlertWrites, LogPosition, bool)> {
        let rules: Vec<(AlertRule, Definition)> = self
            .store
            .enabled_alert_rules()
            .await?
            .into_iter()
            .filter_map(|r| {
                let d = serde_json::from_value(r.definition.0.clone()).ok()?;
                Some((r, d))
            })
            .collect();
        // Without a rule that follows status changes the log is skipped, not read.
        let (entries, to, full) = if rules.iter().any(|(r, _)| follows_changes(&r.kind)) {
            let (entries, to, rows) = self.store.event_log_rows_after(from, LOG_ROWS).await?;
            (entries, to, rows == LOG_ROWS as usize)
        } else {
            (
                Vec::new(),
                self.store.event_log_head().await?.max(from),
                false,
            )
        };
        let mut ev = Evaluation {
            now,
            alerts: self
                .store
                .unresolved_alerts()
                .await?
                .into_iter()
                .map(|a| {
                    let key = (a.rule_id, a.stream_id, a.error_code.clone());
                    (key, Tracked::read(a))
                })
                .collect(),
        };
        let mut streams: HashMap<Uuid, Vec<StreamBrief>> = HashMap::new();
        for (rule, def) in &rules {
            if let std::collections::hash_map::Entry::Vacant(slot) = streams.entry(rule.org_id) {
                slot.insert(self.store.stream_briefs(rule.org_id).await?);
            }
            if follows_changes(&rule.kind) {
                // A stream deleted since its entry was written has no alerts to hold.
                let known: HashSet<Uuid> = streams[&rule.org_id].iter().map(|s| s.id).collect();
                for (org, entry) in &entries {
                    if *org == rule.org_id && entry.stream_id.is_some_and(|s| known.contains(&s)) {
                        ev.follow(rule, def, entry);
                    }
                }
                // While catching up, quiet is judged once the log has been read.
                if !full {
                    ev.quiet(rule, def);
                }
            } else if judge {
                let org_streams = &streams[&rule.org_id];
                self.judge(&mut ev, rule, def, org_streams).await?;
            }
        }
        let names: HashMap<Uuid, &StreamBrief> =
            streams.values().flatten().map(|s| (s.id, s)).collect();
        let mut ev_unresolved: HashMap<Uuid, usize> = HashMap::new();
        for t in ev.alerts.values() {
            if t.alert.status != "resolved" {
                *ev_unresolved.entry(t.alert.rule_id).or_default() += 1;
            }
        }
        let mut writes = AlertWrites::default();
        let by_id: HashMap<Uuid, (&AlertRule, &Definition)> =
            rules.iter().map(|(r, d)| (r.id, (r, d))).collect();
        ev.orphans(&by_id);
        let channels = self.store.alert_channel_ids().await?;
        for (_, mut t) in ev.alerts {
            if let Some((rule, def)) = by_id.get(&t.alert.rule_id) {
                let stream = names.get(&t.alert.stream_id).copied();
                // While catching up, messages wait for the tick's last batch: one message
                // then tells of all the batches' matches.
                let messages = if full && !last {
                    Vec::new()
                } else {
                    t.messages(rule, def, now)
                };
                for message in messages {
                    // A channel deleted since the rule named it is skipped.
                    for channel in def.channel_ids.iter().filter(|c| channels.contains(c)) {
                        writes.notifications.push(notification(
                            &t.alert, rule, def, stream, *channel, &message, now,
                        ));
                    }
                }
            }
            if !t.changed {
                continue;
            }
            match t.read_at {
                None => writes.created.push(t.alert),
                Some(read_at) => writes.updated.push((t.alert, read_at)),
            }
        }
        for (rule, def) in rules.iter().filter(|_| judge) {
            if let Some((notifications, at)) = self.digest(rule, def, &ev_unresolved, now).await? {
                let live = notifications
                    .into_iter()
                    .filter(|n| channels.contains(&n.channel_id));
                writes.notifications.extend(live);
                writes.digested.push((rule.id, at));
            }
        }
        Ok((writes, to, full))
    }

    /// The digest of `rule` if one is due: a summary of each watched stream since the last.
    async fn digest(
        &self,
        rule: &AlertRule,
        def: &Definition,
        unresolved: &HashMap<Uuid, usize>,
        now: Timestamp,
    ) -> anyhow::Result<Option<(Vec<Notification>, Timestamp)>> {
        let days = match rule.digest.as_str() {
            "daily" => 1,
            "weekly" => 7,
            _ => return Ok(None),
        };
        let since = rule.digest_sent_at.unwrap_or(rule.created_at);
        if later(since, days * 86_400) > now {
            return Ok(None);
        }
        let report = crate::reports::summary(&self.store, rule.org_id, since, now, None).await?;
        let streams: Vec<_> = report
            .streams
            .into_iter()
            .filter(|s| def.watches(s.stream_id))
            .collect();
        let period = if days == 1 { "day" } else { "week" };
        let mut text = format!(
            "{} digest: {} — {} to {}\n\n",
            if days == 1 { "Daily" } else { "Weekly" },
            rule.name,
            since.0.to_rfc3339(),
            now.0.to_rfc3339()
        );
        for s in &streams {
            let e = &s.summary.events;
            text.push_str(&format!(
                "{}: OK {}, ERROR {}, FAILED {}, ABORTED {}, pending {}{}\n",
                s.title,
                e.ok,
                e.error,
                e.failed,
                e.aborted,
                e.pending,
                s.summary
                    .success_rate
                    .map(|r| format!(", success {:.1}%", r * 100.0))
                    .unwrap_or_default()
            ));
        }
        let open = unresolved.get(&rule.id).copied().unwrap_or(0);
        text.push_str(&format!("\nAlerts of this rule not yet resolved: {open}\n"));
        let notifications = def
            .channel_ids
            .iter()
            .map(|channel| {
                let id = Uuid::now_v7();
                let subject = format!("[Wharf] Your {period}: {}", rule.name);
                pending(
                    id,
                    rule,
                    *channel,
                    None,
                    "digest",
                    subject,
                    now,
                    json!({
                        "type": "digest",
                        "notification_id": id,
                        "created_at": now,
                        "text": text,
                        "rule_id": rule.id,
                        "rule_name": rule.name,
                        "from": since,
                        "to": now,
                        "unresolved_alerts": open,
                        "streams": streams,
                    }),
                )
            })
            .collect();
        Ok(Some((notifications, now)))
    }

    /// Judges a condition rule on each stream it watches.
    async fn judge(
        &self,
        ev: &mut Evaluation,
        rule: &AlertRule,
        def: &Definition,
        streams: &[StreamBrief],
    ) -> anyhow::Result<()> {
        let now = ev.now;
        let watched = streams.iter().filter(|s| def.watches(s.id));
        match rule.kind.as_str() {
            "error_rate" => {
                let since = earlier(now, def.window_minutes * 60);
                let rows = self.store.finished_since(rule.org_id, since, false).await?;
                for s in watched {
                    let mut total = 0;
                    let mut bad = 0;
                    for r in rows.iter().filter(|r| r.stream_id == s.id) {
                        total += r.n;
                        if matches!(r.status.as_str(), "ERROR" | "FAILED") {
                            bad += r.n;
                        }
                    }
                    let pct = if total > 0 {
                        bad as f64 * 100.0 / total as f64
                    } else {
                        0.0
                    };
                    let found =
                        (total as u64 >= def.min_events && pct >= def.threshold_pct).then(|| {
                            (
                                bad,
                                format!(
                                    "{bad} of {total} finished events ERROR or FAILED ({pct:.1}%, \
                                     threshold {}%) in the last {} minutes",
                                    def.threshold_pct, def.window_minutes
                                ),
                            )
                        });
                    ev.condition(rule, def, s.id, found);
                }
            }
            "silence" => {
                let since = earlier(now, def.silence_minutes * 60);
                let ok: HashSet<Uuid> = self
                    .store
                    .finished_since(rule.org_id, since, true)
                    .await?
                    .into_iter()
                    .map(|r| r.stream_id)
                    .collect();
                let inside = def.check_window.as_ref().is_none_or(|w| w.contains(now));
                for s in watched {
                    let silent = s.active && s.created_at <= since && !ok.contains(&s.id);
                    if silent && !inside {
                        // Outside the window silence is not judged: an alert stays as it is.
                        continue;
                    }
                    let found = silent.then(|| {
                        (
                            1,
                            format!("no OK event for {} minutes or more", def.silence_minutes),
                        )
                    });
                    ev.condition(rule, def, s.id, found);
                }
            }
            "stuck" => {
                let before = earlier(now, def.stuck_minutes * 60);
                let rows = self.store.waiting_since(rule.org_id, before).await?;
                for s in watched {
                    let found = rows.iter().find(|r| r.stream_id == s.id).map(|r| {
                        (
                            r.n,
                            format!(
                                "{} events waiting (NEW or TRANSFORMED) for more than {} minutes; \
                                 the oldest since {}",
                                r.n,
                                def.stuck_minutes,
                                r.oldest.0.to_rfc3339()
                            ),
                        )
                    });
                    ev.condition(rule, def, s.id, found);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn later(t: Timestamp, seconds: u64) -> Timestamp {
    Timestamp::from_datetime(t.0 + chrono::Duration::seconds(seconds as i64))
}

fn earlier(t: Timestamp, seconds: u64) -> Timestamp {
    Timestamp::from_datetime(t.0 - chrono::Duration::seconds(seconds as i64))
}

type AlertKey = (Uuid, Uuid, String);

/// An alert as this evaluation leaves it.
struct Tracked {
    alert: Alert,
    /// `updated_at` as read; `None` for an alert this evaluation opened.
    read_at: Option<Timestamp>,
    /// The count before this evaluation: matches above `notified_count` by then were held
    /// back by flood control.
    count_before: i64,
    /// Whether this evaluation changed it (and must write it).
    changed: bool,
    /// Resolved by this evaluation (a message says so).
    resolved_now: bool,
}

impl Tracked {
    fn read(alert: Alert) -> Tracked {
        Tracked {
            read_at: Some(alert.updated_at),
            count_before: alert.count,
            alert,
            changed: false,
            resolved_now: false,
        }
    }

    /// The messages this evaluation sends for it, with flood control applied.
    fn messages(&mut self, rule: &AlertRule, def: &Definition, now: Timestamp) -> Vec<Message> {
        let a = &mut self.alert;
        if self.resolved_now {
            return vec![Message {
                kind: "resolved",
                new: 0,
                held_back: 0,
            }];
        }
        if a.status != "open" || a.count <= a.notified_count {
            return Vec::new();
        }
        let period = def.flood.per_minutes as u64 * 60;
        if a.flood_started_at
            .is_none_or(|started| later(started, period) <= now)
        {
            a.flood_started_at = Some(now);
            a.flood_sent = 0;
            self.changed = true;
        }
        if a.flood_sent >= def.flood.max as i64 {
            return Vec::new();
        }
        let kind = if a.notified_count == 0 {
            "opened"
        } else {
            "repeated"
        };
        let held_back = if self.read_at.is_some() {
            (self.count_before - a.notified_count).max(0)
        } else {
            0
        };
        let new = if follows_changes(&rule.kind) {
            a.count - a.notified_count
        } else {
            0
        };
        a.flood_sent += 1;
        a.notified_count = a.count;
        a.updated_at = now;
        self.changed = true;
        vec![Message {
            kind,
            new,
            held_back,
        }]
    }
}

/// One message about an alert, before it is addressed to channels.
struct Message {
    kind: &'static str,
    /// Matches since the last message.
    new: i64,
    /// Of those, how many arrived while flood control held messages back.
    held_back: i64,
}

struct Evaluation {
    now: Timestamp,
    alerts: HashMap<AlertKey, Tracked>,
}

impl Evaluation {
    /// Counts an event-log entry that matches a status-change rule.
    fn follow(&mut self, rule: &AlertRule, def: &Definition, entry: &LogEntry) {
        let Some(stream) = entry.stream_id else {
            return;
        };
        if !def.watches(stream) {
            return;
        }
        let (matches, code) = match rule.kind.as_str() {
            "job_failed" => (
                entry.kind == "JOB_STATUS_CHANGE" && entry.to_status == "FAILED",
                String::new(),
            ),
            kind => {
                let wanted = if kind == "event_error" {
                    "ERROR"
                } else {
                    "FAILED"
                };
                let code = entry
                    .details
                    .get("error_code")
                    .and_then(Value::as_str)
                    .unwrap_or("UNKNOWN")
                    .to_string();
                (
                    entry.kind == "EVENT_STATUS_CHANGE" && entry.to_status == wanted,
                    code,
                )
            }
        };
        if !matches {
            return;
        }
        let now = self.now;
        let t = self.open((rule.id, stream, code.clone()), rule);
        let a = &mut t.alert;
        a.count += 1;
        a.last_seen_at = now;
        a.updated_at = now;
        a.clear_since = None;
        let sample = entry.event_id.or(entry.job_id);
        if let (Some(id), Some(list)) = (sample, a.sample_event_ids.0.as_array_mut()) {
            if list.len() < SAMPLES {
                list.push(json!(id));
            }
        }
        a.summary = match rule.kind.as_str() {
            "job_failed" => format!("{} jobs FAILED", a.count),
            "event_error" => format!("{} events ERROR with {code}", a.count),
            _ => format!("{} events FAILED with {code}", a.count),
        };
        t.changed = true;
    }

    /// Resolves, without a message, alerts no enabled rule can judge any more: the rule is
    /// disabled or deleted, its kind changed (an alert's key no longer fits it), or it no
    /// longer watches the alert's stream (conditions; status-change alerts go quiet).
    fn orphans(&mut self, rules: &HashMap<Uuid, (&AlertRule, &Definition)>) {
        let now = self.now;
        for t in self.alerts.values_mut() {
            if t.alert.status == "resolved" {
                continue;
            }
            let fits = rules.get(&t.alert.rule_id).is_some_and(|(rule, def)| {
                let coded = matches!(rule.kind.as_str(), "event_error" | "event_failed");
                coded != t.alert.error_code.is_empty()
                    && (follows_changes(&rule.kind) || def.watches(t.alert.stream_id))
            });
            if !fits {
                t.resolve(now);
                t.resolved_now = false;
            }
        }
    }

    /// Resolves the status-change alerts of `rule` that have been quiet for its window.
    fn quiet(&mut self, rule: &AlertRule, def: &Definition) {
        let now = self.now;
        for t in self.alerts.values_mut() {
            if t.alert.rule_id == rule.id
                && later(t.alert.last_seen_at, def.window_minutes * 60) <= now
            {
                t.resolve(now);
            }
        }
    }

    /// Applies a condition rule's finding on one stream: `Some((count, summary))` when the
    /// condition holds.
    fn condition(
        &mut self,
        rule: &AlertRule,
        def: &Definition,
        stream: Uuid,
        found: Option<(i64, String)>,
    ) {
        let now = self.now;
        let key = (rule.id, stream, String::new());
        match found {
            Some((count, summary)) => {
                let t = self.open(key, rule);
                let a = &mut t.alert;
                if a.count != count || a.summary != summary || a.clear_since.is_some() {
                    a.count = count;
                    a.summary = summary;
                    a.clear_since = None;
                    a.updated_at = now;
                    t.changed = true;
                }
                if a.last_seen_at != now {
                    a.last_seen_at = now;
                    t.changed = true;
                }
                // A condition's count goes up and down: it is told when it opens, not again.
                if a.notified_count > 0 {
                    a.notified_count = a.count;
                }
            }
            None => {
                if let Some(t) = self.alerts.get_mut(&key) {
                    match t.alert.clear_since {
                        None => {
                            t.alert.clear_since = Some(now);
                            t.alert.updated_at = now;
                            t.changed = true;
                        }
                        Some(since) if later(since, def.window_minutes * 60) <= now => {
                            t.resolve(now)
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }

    /// The unresolved alert for `key`, opened now if there is none.
    fn open(&mut self, key: AlertKey, rule: &AlertRule) -> &mut Tracked {
        let now = self.now;
        self.alerts.entry(key.clone()).or_insert_with(|| Tracked {
            alert: Alert {
                id: Uuid::now_v7(),
                org_id: rule.org_id,
                rule_id: key.0,
                stream_id: key.1,
                error_code: key.2,
                status: "open".into(),
                first_seen_at: now,
                last_seen_at: now,
                count: 0,
                summary: String::new(),
                sample_event_ids: Json(json!([])),
                notified_count: 0,
                flood_started_at: None,
                flood_sent: 0,
                clear_since: None,
                resolved_at: None,
                created_at: now,
                updated_at: now,
            },
            read_at: None,
            count_before: 0,
            changed: true,
            resolved_now: false,
        })
    }
}

impl Tracked {
    fn resolve(&mut self, now: Timestamp) {
        // An ignored alert ends quietly; the others say so.
        self.resolved_now = self.alert.status != "ignored" && self.alert.notified_count > 0;
        self.alert.status = "resolved".into();
        self.alert.resolved_at = Some(now);
        self.alert.updated_at = now;
        self.changed = true;
    }
}

/// The notification of `message` about `alert` to one channel.
fn notification(
    alert: &Alert,
    rule: &AlertRule,
    def: &Definition,
    stream: Option<&StreamBrief>,
    channel: Uuid,
    message: &Message,
    now: Timestamp,
) -> Notification {
    let id = Uuid::now_v7();
    let stream_title = stream.map_or_else(|| alert.stream_id.to_string(), |s| s.title.clone());
    let what = match message.kind {
        "opened" => "Alert",
        "repeated" => "Alert repeated",
        _ => "Resolved",
    };
    let subject = format!("[Wharf] {what}: {} on {stream_title}", rule.name);
    let mut text = format!(
        "{what}: {}\nStream: {stream_title}\nRule: {} ({})\n{}\nCount: {} (first seen {}, last seen {})\n",
        rule.name,
        rule.name,
        rule.kind,
        alert.summary,
        alert.count,
        alert.first_seen_at.0.to_rfc3339(),
        alert.last_seen_at.0.to_rfc3339(),
    );
    if !alert.error_code.is_empty() {
        text.push_str(&format!("Error code: {}\n", alert.error_code));
    }
    if message.kind == "repeated" && message.new > 0 {
        text.push_str(&format!("{} new since the last message", message.new));
        if message.held_back > 0 {
            text.push_str(&format!(
                ", of which {} more held back by flood control (at most {} messages per {} \
                 minutes)",
                message.held_back, def.flood.max, def.flood.per_minutes,
            ));
        }
        text.push_str(".\n");
    }
    if message.kind == "resolved" {
        text.push_str("The condition has cleared.\n");
    }
    let body = json!({
        "type": format!("alert.{}", message.kind),
        "notification_id": id,
        "created_at": now,
        "text": text,
        "new_since_last_message": message.new,
        "held_back": message.held_back,
        "alert": {
            "id": alert.id,
            "rule_id": alert.rule_id,
            "rule_name": rule.name,
            "kind": rule.kind,
            "stream_id": alert.stream_id,
            "stream_title": stream_title,
            "error_code": (!alert.error_code.is_empty()).then_some(&alert.error_code),
            "status": alert.status,
            "count": alert.count,
            "first_seen_at": alert.first_seen_at,
            "last_seen_at": alert.last_seen_at,
            "summary": alert.summary,
            "sample_event_ids": alert.sample_event_ids.0,
        },
    });
    pending(
        id,
        rule,
        channel,
        Some(alert.id),
        message.kind,
        subject,
        now,
        body,
    )
}

/// A notification of `rule` to `channel`, waiting for its first try at `now`.
#[allow(clippy::too_many_arguments)]
fn pending(
    id: Uuid,
    rule: &AlertRule,
    channel: Uuid,
    alert: Option<Uuid>,
    kind: &str,
    subject: String,
    now: Timestamp,
    body: Value,
) -> Notification {
    Notification {
        id,
        org_id: rule.org_id,
        channel_id: channel,
        alert_id: alert,
        rule_id: Some(rule.id),
        kind: kind.into(),
        subject,
        body: Json(body),
        status: "pending".into(),
        tries: 0,
        next_try_at: Some(now),
        sent_at: None,
        error: None,
        created_at: now,
        updated_at: now,
    }
}
