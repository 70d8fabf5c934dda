//! `dear.fulfilment`: fulfils a sale through its fulfilment task — create the task
//! (`POST /sale/fulfilment`), pick (`/sale/fulfilment/pick`, autopick by default), pack (every
//! picked line by default) and ship (`/sale/fulfilment/ship`, the output's lines) — paced within
//! DEAR's limit like its other calls.
//!
//! DEAR has no idempotency key, so each try first reads the sale's tasks
//! (`GET /sale/fulfilment?SaleID=`) and goes on from the stage a task reached: a stage already
//! `AUTHORISED` is skipped, one left `DRAFT` with lines is replaced (`PUT`) rather than added
//! to, and a new task is created only when no unfinished one exists.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use super::{code_of, error_model, explain, request, Dear};
use crate::connectors::delivery::{self, refused, Answer, Steps};
use crate::connectors::net::{CallError, Outbound};
use crate::connectors::registry::{Call, DestinationFunction, Outgoing, SendResult};
use crate::domain::error_code::ErrorCode;
use crate::domain::retry::Verdict;

crate::params! {
    /// The params of `dear.fulfilment`.
    pub struct FulfilmentParams {
        box_name: String = "Box 1".into(), "The box every picked line is packed in when the output's `pack` lists no `Lines` and names no `Box`.";
    }
}

/// `dear.fulfilment`, sharing DEAR's pacing with the connector's other calls.
pub struct FulfilmentWrite {
    pub dear: Arc<Dear>,
}

/// The fields of a pick line that a pack line repeats.
const LINE_FIELDS: [&str; 8] = [
    "ProductID",
    "SKU",
    "Name",
    "Location",
    "LocationID",
    "Quantity",
    "BatchSN",
    "ExpiryDate",
];

/// One output's calls to DEAR.
struct Api<'a> {
    dear: &'a Dear,
    net: &'a Outbound,
    key: &'a Value,
    account: String,
    timeout: Duration,
    started: Instant,
}

impl Api<'_> {
    /// One call: its JSON answer with its result, or the result that ends the delivery.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        what: &str,
    ) -> Result<(Value, SendResult), SendResult> {
        // The try's calls share its time (held below the claim's lease): each gets what is
        // left, its turn in DEAR's limit included.
        let left = self
            .dear
            .turn_within(&self.account, self.started, self.timeout)
            .await?;
        let mut req = request(self.net, method, self.key, path);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let mut answer = delivery::send_reading(self.net, req, left).await;
        let json = answer
            .as_mut()
            .ok()
            .filter(|a| a.status.is_success())
            .and_then(|a| a.json.take());
        let r = result(self.started, what, answer);
        if r.verdict != Verdict::Success {
            return Err(r);
        }
        let Some(json) = json else {
            return Err(SendResult {
                verdict: Verdict::Final,
                error_code: Some(ErrorCode::InvalidApiResponse),
                message: Some(format!("DEAR's answer to {what} is not JSON")),
                ..r
            });
        };
        // DEAR sometimes answers a refusal with a 200 and its error model.
        if let Some(e) = error_model(&json) {
            let code = code_of(400, &json.to_string()).unwrap_or(ErrorCode::InvalidSchema);
            return Err(SendResult {
                verdict: if code == ErrorCode::RateLimited {
                    Verdict::Retry
                } else {
                    Verdict::Final
                },
                error_code: Some(code),
                message: Some(format!("DEAR refused {what}: {e}")),
                ..r
            });
        }
        Ok((json, r))
    }
}

fn result(started: Instant, what: &str, answer: Result<Answer, CallError>) -> SendResult {
    delivery::result(started, "DEAR", what, answer, explain, code_of)
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// A stage's status (`Pick`, `Pack` or `Ship` of a task).
fn status<'a>(task: &'a Value, stage: &str) -> &'a str {
    task.get(stage).map_or("", |s| text(s, "Status"))
}

/// A stage's lines as a task or an answer holds them.
fn lines(stage: Option<&Value>) -> Vec<Value> {
    stage
        .and_then(|s| s.get("Lines"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A stage written with lines already is replaced, not added to: a `POST` adds lines.
fn method_for(existing: &[Value]) -> reqwest::Method {
    if existing.is_empty() {
        reqwest::Method::POST
    } else {
        reqwest::Method::PUT
    }
}

/// What the output asks for, checked before any call.
struct Asked<'a> {
    sale_id: &'a str,
    task_id: Option<&'a str>,
    /// `None`: autopick.
    pick: Option<&'a Map<String, Value>>,
    pack: Option<&'a Map<String, Value>>,
    ship: Option<&'a Map<String, Value>>,
}

fn asked(item: &Value) -> Result<Asked<'_>, String> {
    let Some(o) = item.as_object() else {
        return Err("the output is not a fulfilment (an object with `SaleID`)".into());
    };
    let sale_id = match o.get("SaleID").and_then(Value::as_str) {
        Some(id) if !id.trim().is_empty() => id,
        _ => return Err("the output names no `SaleID`".into()),
    };
    let task_id = match o.get("TaskID") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if !id.trim().is_empty() => Some(id.as_str()),
        Some(other) => return Err(format!("`TaskID` is not a task id: {other}")),
    };
    let pick = match o.get("pick") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "auto" => None,
        Some(Value::Object(p))
            if p.get("Lines")
                .and_then(Value::as_array)
                .is_some_and(|l| !l.is_empty()) =>
        {
            Some(p)
        }
        Some(other) => {
            return Err(format!(
                "`pick` is \"auto\" or an object with `Lines`, not {other}"
            ))
        }
    };
    let pack = match o.get("pack") {
        None | Some(Value::Null) => None,
        Some(Value::Object(p)) if p.get("Lines").is_none_or(Value::is_array) => Some(p),
        Some(other) => {
            return Err(format!(
                "`pack` is an object (with `Lines` or a `Box`), not {other}"
            ))
        }
    };
    let ship = match o.get("ship") {
        None | Some(Value::Null) => None,
        Some(Value::Object(s))
            if s.get("Lines")
                .and_then(Value::as_array)
                .is_some_and(|l| !l.is_empty() && l.iter().all(Value::is_object)) =>
        {
            Some(s)
        }
        Some(other) => {
            return Err(format!(
                "`ship` is an object with `Lines` (one object per box), not {other}"
            ))
        }
    };
    Ok(Asked {
        sale_id,
        task_id,
        pick,
        pack,
        ship,
    })
}

/// The tracking numbers the output ships under: a task already shipped under one of them is
/// the one a retry finds done.
fn tracking(asked: &Asked<'_>) -> HashSet<String> {
    asked
        .ship
        .and_then(|s| s.get("Lines"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|l| text(l, "TrackingNumber").trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The task an output goes on with: the one it names; else one already shipped under its
/// tracking numbers (a retry of a delivery that went through); else the newest unfinished
/// one. `None` when a task is to be created.
fn chosen<'a>(
    tasks: &'a [Value],
    asked: &Asked<'_>,
) -> Result<Option<&'a Value>, (ErrorCode, String)> {
    if let Some(id) = asked.task_id {
        return match tasks.iter().find(|t| text(t, "TaskID") == id) {
            Some(t) => Ok(Some(t)),
            None => Err((
                ErrorCode::NotFound,
                format!(
                    "sale {} has no fulfilment task {id} (not found)",
                    asked.sale_id
                ),
            )),
        };
    }
    let live = || {
        tasks
            .iter()
            .filter(|t| status(t, "Pick") != "VOIDED" && text(t, "FulFilmentStatus") != "VOIDED")
    };
    let numbers = tracking(asked);
    if !numbers.is_empty() {
        let shipped = live().find(|t| {
            lines(t.get("Ship"))
                .iter()
                .any(|l| numbers.contains(text(l, "TrackingNumber").trim()))
        });
        if shipped.is_some() {
            return Ok(shipped);
        }
    }
    let unfinished = live()
        .filter(|t| !shipped(status(t, "Ship")))
        .max_by_key(|t| t.get("FulfillmentNumber").and_then(Value::as_i64));
    if unfinished.is_none()
        && numbers.is_empty()
        && asked.ship.is_some()
        && live().any(|t| shipped(status(t, "Ship")))
    {
        // A shipment without a tracking number cannot be told from one this delivery made
        // before its answer was lost: a new task would pick and ship the rest of the sale.
        return Err((
            ErrorCode::InvalidSchema,
            format!(
            "sale {} already has a shipped fulfilment and this output names neither a `TaskID` \
             nor a tracking number, so a retry cannot tell whether it was shipped: name the task \
             to go on with (`TaskID`) or the parcel's `TrackingNumber`",
            asked.sale_id
        ),
        ));
    }
    Ok(unfinished)
}

/// A ship stage that takes no more lines through `POST`.
fn shipped(status: &str) -> bool {
    matches!(status, "AUTHORISED" | "PARTIALLY AUTHORISED")
}

/// The object a stage is written with: the output's, with the task and a status (`AUTHORISED`
/// unless the output says).
fn stage_body(given: Option<&Map<String, Value>>, task_id: &str) -> Map<String, Value> {
    let mut body = given.cloned().unwrap_or_default();
    body.insert("TaskID".into(), json!(task_id));
    body.entry("Status").or_insert(json!("AUTHORISED"));
    body
}

/// Pack lines for every picked line, in `box_name`.
fn packed_from(picked: &[Value], box_name: &str) -> Vec<Value> {
    picked
        .iter()
        .map(|l| {
            let mut line = Map::new();
            for f in LINE_FIELDS {
                if let Some(v) = l.get(f).filter(|v| !v.is_null()) {
                    line.insert(f.into(), v.clone());
                }
            }
            line.insert("Box".into(), json!(box_name));
            Value::Object(line)
        })
        .collect()
}

/// Ship lines as DEAR takes them: each names its `Box`; a line naming none ships every packed
/// box no other line names (one line per box, as DEAR shows them); `ShipmentDate` is now and
/// `IsShipped` true unless given.
fn ship_lines(given: &[Value], packed: &[Value], now: &str) -> Vec<Value> {
    let mut boxes: Vec<&str> = Vec::new();
    for l in packed {
        let b = text(l, "Box");
        if !b.is_empty() && !boxes.contains(&b) {
            boxes.push(b);
        }
    }
    let named: HashSet<&str> = given.iter().map(|l| text(l, "Box")).collect();
    let unnamed: Vec<&str> = boxes
        .iter()
        .copied()
        .filter(|b| !named.contains(b))
        .collect();
    let mut out = Vec::new();
    for l in given {
        let Some(line) = l.as_object() else { continue };
        let mut line = line.clone();
        line.entry("ShipmentDate").or_insert(json!(now));
        line.entry("IsShipped").or_insert(json!(true));
        if text(l, "Box").is_empty() && !unnamed.is_empty() {
            for b in &unnamed {
                let mut one = line.clone();
                one.insert("Box".into(), json!(b));
                out.push(Value::Object(one));
            }
        } else {
            out.push(Value::Object(line));
        }
    }
    out
}

/// A stage whose status after writing is not `AUTHORISED`: stop there, successfully when the
/// output asked for that status, else refused with what DEAR left.
fn stops(
    written: &Map<String, Value>,
    answer: &Value,
    stage: &str,
    task_id: &str,
    r: SendResult,
) -> Option<SendResult> {
    let now = text(answer, "Status");
    if now == "AUTHORISED"
        || (now.is_empty() && written.get("Status") == Some(&json!("AUTHORISED")))
    {
        return None;
    }
    if written.get("Status").and_then(Value::as_str) == Some(now) {
        return Some(r);
    }
    Some(SendResult {
        verdict: Verdict::Final,
        error_code: Some(ErrorCode::InvalidSchema),
        message: Some(format!(
            "DEAR left the {stage} of task {task_id} {}; see the task in DEAR (stock to {stage}?) and send the event again",
            if now.is_empty() { "without a status" } else { now }
        )),
        ..r
    })
}

impl FulfilmentWrite {
    async fn fulfil(&self, api: &Api<'_>, params: &FulfilmentParams, item: &Value) -> SendResult {
        let asked = match asked(item) {
            Ok(a) => a,
            Err(e) => return refused(api.started, ErrorCode::InvalidSchema, e),
        };
        let sale_id = asked.sale_id;
        let what = format!("reading the fulfilments of sale {sale_id}");
        let (before, mut last) = match api
            .call(
                reqwest::Method::GET,
                "/sale/fulfilment",
                &[("SaleID", sale_id)],
                None,
                &what,
            )
            .await
        {
            Ok(read) => read,
            Err(r) => return r,
        };
        let tasks = lines_of(&before, "Fulfilments");
        let task = match chosen(&tasks, &asked) {
            Ok(t) => t.cloned(),
            Err((code, e)) => return refused(api.started, code, e),
        };
        let task = match task {
            Some(t) => t,
            None => {
                let known: HashSet<String> = tasks
                    .iter()
                    .map(|t| text(t, "TaskID").to_string())
                    .collect();
                let what = format!("creating a fulfilment task for sale {sale_id}");
                let body = json!({ "SaleID": sale_id });
                let (after, r) = match api
                    .call(
                        reqwest::Method::POST,
                        "/sale/fulfilment",
                        &[],
                        Some(&body),
                        &what,
                    )
                    .await
                {
                    Ok(made) => made,
                    Err(r) => return r,
                };
                last = r;
                // The answer lists every task; the new one is the one not there before.
                let made = lines_of(&after, "Fulfilments")
                    .into_iter()
                    .filter(|t| !known.contains(text(t, "TaskID")))
                    .max_by_key(|t| t.get("FulfillmentNumber").and_then(Value::as_i64));
                match made {
                    Some(t) => t,
                    None => {
                        return SendResult {
                            verdict: Verdict::Final,
                            error_code: Some(ErrorCode::InvalidApiResponse),
                            message: Some(format!("DEAR's answer to {what} lists no new task")),
                            ..last
                        }
                    }
                }
            }
        };
        let task_id = text(&task, "TaskID").to_string();
        if task_id.is_empty() {
            return refused(
                api.started,
                ErrorCode::InvalidApiResponse,
                format!("a fulfilment task of sale {sale_id} has no `TaskID`"),
            );
        }

        // Pick.
        let mut picked = lines(task.get("Pick"));
        if status(&task, "Pick") != "AUTHORISED" {
            let body = match asked.pick {
                None => {
                    let mut b = Map::new();
                    b.insert("TaskID".into(), json!(task_id));
                    b.insert("AutoPickMode".into(), json!("AUTOPICK"));
                    b
                }
                Some(p) => stage_body(Some(p), &task_id),
            };
            let method = if asked.pick.is_none() {
                reqwest::Method::POST
            } else {
                method_for(&picked)
            };
            let what = format!("picking task {task_id} of sale {sale_id}");
            let (answer, r) = match api
                .call(
                    method,
                    "/sale/fulfilment/pick",
                    &[],
                    Some(&Value::Object(body.clone())),
                    &what,
                )
                .await
            {
                Ok(done) => done,
                Err(r) => return r,
            };
            let mut expected = body;
            expected.entry("Status").or_insert(json!("AUTHORISED"));
            if let Some(stop) = stops(&expected, &answer, "pick", &task_id, r.clone()) {
                return stop;
            }
            picked = lines(Some(&answer));
            last = r;
        }

        // Pack.
        let mut packed = lines(task.get("Pack"));
        if status(&task, "Pack") != "AUTHORISED" {
            let mut body = stage_body(asked.pack, &task_id);
            // `Box` names the default box; DEAR's pack has boxes on its lines only.
            body.remove("Box");
            let given = asked
                .pack
                .and_then(|p| p.get("Lines"))
                .and_then(Value::as_array)
                .filter(|l| !l.is_empty());
            if given.is_none() {
                if picked.is_empty() {
                    return refused(
                        api.started,
                        ErrorCode::InvalidApiResponse,
                        format!("task {task_id} of sale {sale_id} has no picked lines to pack"),
                    );
                }
                let box_name = asked
                    .pack
                    .and_then(|p| p.get("Box"))
                    .and_then(Value::as_str)
                    .filter(|b| !b.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| params.box_name.clone());
                body.insert("Lines".into(), json!(packed_from(&picked, &box_name)));
            }
            let what = format!("packing task {task_id} of sale {sale_id}");
            let (answer, r) = match api
                .call(
                    method_for(&packed),
                    "/sale/fulfilment/pack",
                    &[],
                    Some(&Value::Object(body.clone())),
                    &what,
                )
                .await
            {
                Ok(done) => done,
                Err(r) => return r,
            };
            if let Some(stop) = stops(&body, &answer, "pack", &task_id, r.clone()) {
                return stop;
            }
            let answered = lines(Some(&answer));
            packed = if answered.is_empty() {
                lines(Some(&Value::Object(body)))
            } else {
                answered
            };
            last = r;
        }

        // Ship.
        let task_ref = || Some(task_id.clone());
        let Some(ship) = asked.ship else {
            return last.referring(task_ref);
        };
        if shipped(status(&task, "Ship")) {
            // Shipped already: done if every parcel the output names is on the task (a retry,
            // a replay); DEAR takes no more lines on a shipped task, so new parcels are refused
            // rather than answered as shipped.
            let on_task: HashSet<String> = lines(task.get("Ship"))
                .iter()
                .map(|l| text(l, "TrackingNumber").trim().to_string())
                .collect();
            let missing: Vec<String> = tracking(&asked)
                .into_iter()
                .filter(|n| !on_task.contains(n))
                .collect();
            if !missing.is_empty() {
                return refused(
                    api.started,
                    ErrorCode::InvalidSchema,
                    format!(
                        "task {task_id} of sale {sale_id} is shipped already ({}) and does not \
                         take more parcels ({}): ship them as a new fulfilment (leave out `TaskID`)",
                        status(&task, "Ship"),
                        missing.join(", ")
                    ),
                );
            }
            return last.referring(task_ref);
        }
        let existing = lines(task.get("Ship"));
        let mut body = stage_body(Some(ship), &task_id);
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
        body.insert(
            "Lines".into(),
            json!(ship_lines(
                &lines(Some(&Value::Object(ship.clone()))),
                &packed,
                &now
            )),
        );
        let what = format!("shipping task {task_id} of sale {sale_id}");
        match api
            .call(
                method_for(&existing),
                "/sale/fulfilment/ship",
                &[],
                Some(&Value::Object(body)),
                &what,
            )
            .await
        {
            Ok((_, r)) => r.referring(task_ref),
            Err(r) => r,
        }
    }
}

/// A list field of an answer (`Fulfilments`), empty when absent.
fn lines_of(v: &Value, field: &str) -> Vec<Value> {
    v.get(field)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[async_trait]
impl DestinationFunction for FulfilmentWrite {
    async fn send(&self, call: Call<'_>, out: Outgoing<'_>) -> SendResult {
        let started = Instant::now();
        let (params, key) = match delivery::prepare::<FulfilmentParams>(started, &call, "DEAR") {
            Ok(ready) => ready,
            Err(refusal) => return *refusal,
        };
        let api = Api {
            dear: &self.dear,
            net: call.net,
            key,
            account: super::account(key),
            timeout: out.timeout,
            started,
        };
        let mut steps = Steps::new(started);
        for item in delivery::items(out.body) {
            if let Some(stop) = steps.step(self.fulfil(&api, &params, item).await) {
                return stop;
            }
        }
        steps.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_checked_before_any_call() {
        assert!(asked(&json!({"SaleID": "s", "ship": {"Lines": [{"Carrier": "DPD"}]}})).is_ok());
        assert!(asked(&json!({"SaleID": "s", "pick": "auto", "pack": {"Box": "A"}})).is_ok());
        for bad in [
            json!([]),
            json!({"pick": "auto"}),
            json!({"SaleID": "s", "pick": "manual"}),
            json!({"SaleID": "s", "pick": {"Lines": []}}),
            json!({"SaleID": "s", "ship": {"Lines": []}}),
            json!({"SaleID": "s", "ship": {"Lines": ["Box 1"]}}),
            json!({"SaleID": "s", "TaskID": 7}),
        ] {
            assert!(asked(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_ship_line_without_a_box_ships_every_box_no_other_line_names() {
        let packed = vec![
            json!({"SKU": "A", "Box": "Box 1"}),
            json!({"SKU": "B", "Box": "Box 1"}),
            json!({"SKU": "C", "Box": "Box 2"}),
            json!({"SKU": "D", "Box": "Box 3"}),
        ];
        let given = vec![
            json!({"Carrier": "DPD", "TrackingNumber": "T1"}),
            json!({"Carrier": "Royal Mail", "TrackingNumber": "T3", "Box": "Box 3", "ShipmentDate": "2026-11-30"}),
        ];
        let out = ship_lines(&given, &packed, "2026-12-01T09:00:00");
        assert_eq!(
            out,
            vec![
                json!({"Carrier": "DPD", "TrackingNumber": "T1", "Box": "Box 1", "ShipmentDate": "2026-12-01T09:00:00", "IsShipped": true}),
                json!({"Carrier": "DPD", "TrackingNumber": "T1", "Box": "Box 2", "ShipmentDate": "2026-12-01T09:00:00", "IsShipped": true}),
                json!({"Carrier": "Royal Mail", "TrackingNumber": "T3", "Box": "Box 3", "ShipmentDate": "2026-11-30", "IsShipped": true}),
            ]
        );
    }

    #[test]
    fn a_retry_goes_on_with_the_task_it_left() {
        let tasks = vec![
            json!({"TaskID": "t1", "FulfillmentNumber": 1, "Pick": {"Status": "AUTHORISED"},
                "Ship": {"Status": "AUTHORISED", "Lines": [{"TrackingNumber": "T1", "Boxes": "Box 1"}]}}),
            json!({"TaskID": "t2", "FulfillmentNumber": 2, "Pick": {"Status": "VOIDED"},
                "Ship": {"Status": "VOIDED"}}),
            json!({"TaskID": "t3", "FulfillmentNumber": 3, "Pick": {"Status": "AUTHORISED"},
                "Ship": {"Status": "DRAFT", "Lines": []}}),
        ];
        let out = |v: Value| {
            let a = asked(&v).unwrap();
            chosen(&tasks, &a).map(|t| t.map(|t| text(t, "TaskID").to_string()))
        };
        let ship = |t: &str| json!({"SaleID": "s", "ship": {"Lines": [{"TrackingNumber": t}]}});
        assert_eq!(out(ship("T1")), Ok(Some("t1".into())), "shipped already");
        assert_eq!(out(ship("T9")), Ok(Some("t3".into())), "the unfinished one");
        assert_eq!(
            out(json!({"SaleID": "s", "TaskID": "t2"})),
            Ok(Some("t2".into()))
        );
        assert!(out(json!({"SaleID": "s", "TaskID": "t7"})).is_err());
        let done = &tasks[..2];
        let again = ship("T9");
        let a = asked(&again).unwrap();
        assert!(chosen(done, &a).unwrap().is_none(), "a new task");
    }
}
