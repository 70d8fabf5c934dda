//! Job and event statuses and the transitions allowed between them. The store refuses any
//! transition not listed here (a conditional update on the current status changes no row).
//!
//! `sources_of` is the lifecycle one status at a time. What the store actually writes are the
//! steps ([`EventStep`], [`JobStep`]): each names the statuses it starts from and the one it
//! ends in, and a composite step (a record transformed and delivered in one commit) passes
//! through statuses of the lifecycle, every hop of which `sources_of` allows. The store builds
//! its `WHERE status IN (…)` from these tables, so a status is written only by a listed step.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Status of a job (one run of a stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Queued or due.
    Pending,
    /// The source is running or events are still in flight.
    Processing,
    /// Every event OK.
    Finished,
    /// Some events ended ERROR, FAILED or ABORTED.
    FinishedWithIssues,
    /// The source itself failed.
    Failed,
}

/// Status of an event (one record moving through a stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventStatus {
    New,
    Transformed,
    Ok,
    Error,
    Failed,
    Aborted,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Pending,
        JobStatus::Processing,
        JobStatus::Finished,
        JobStatus::FinishedWithIssues,
        JobStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "PENDING",
            JobStatus::Processing => "PROCESSING",
            JobStatus::Finished => "FINISHED",
            JobStatus::FinishedWithIssues => "FINISHED_WITH_ISSUES",
            JobStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Finished | JobStatus::FinishedWithIssues | JobStatus::Failed
        )
    }

    /// Statuses from which a job may move to `to`.
    pub fn sources_of(to: JobStatus) -> &'static [JobStatus] {
        use JobStatus::*;
        match to {
            Pending => &[],
            Processing => &[Pending],
            // A job aborted before it started finishes with issues straight from PENDING.
            Finished | FinishedWithIssues | Failed => &[Pending, Processing],
        }
    }

    pub fn can_transition(self, to: JobStatus) -> bool {
        Self::sources_of(to).contains(&self)
    }
}

impl EventStatus {
    pub const ALL: [EventStatus; 6] = [
        EventStatus::New,
        EventStatus::Transformed,
        EventStatus::Ok,
        EventStatus::Error,
        EventStatus::Failed,
        EventStatus::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::New => "NEW",
            EventStatus::Transformed => "TRANSFORMED",
            EventStatus::Ok => "OK",
            EventStatus::Error => "ERROR",
            EventStatus::Failed => "FAILED",
            EventStatus::Aborted => "ABORTED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, EventStatus::New | EventStatus::Transformed)
    }

    /// Level shown in reports (reference 003): success, warning or error.
    pub fn level(self) -> &'static str {
        match self {
            EventStatus::Ok => "success",
            EventStatus::New | EventStatus::Transformed | EventStatus::Aborted => "warning",
            EventStatus::Error | EventStatus::Failed => "error",
        }
    }

    /// Statuses from which an event may move to `to`.
    pub fn sources_of(to: EventStatus) -> &'static [EventStatus] {
        use EventStatus::*;
        match to {
            New => &[],
            Transformed => &[New],
            // Test-mode streams end at OK without posting, straight from TRANSFORMED.
            Ok | Failed => &[Transformed],
            Error => &[New],
            Aborted => &[New, Transformed],
        }
    }

    pub fn can_transition(self, to: EventStatus) -> bool {
        Self::sources_of(to).contains(&self)
    }
}

impl TryFrom<String> for JobStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| format!("unknown job status `{s}`"))
    }
}

impl TryFrom<String> for EventStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| format!("unknown event status `{s}`"))
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for EventStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Events a worker may claim: not yet transformed, or transformed and waiting for delivery.
pub const OPEN_EVENTS: &[EventStatus] = &[EventStatus::New, EventStatus::Transformed];

/// Terminal event statuses that make their job FINISHED_WITH_ISSUES rather than FINISHED.
pub const ISSUE_EVENTS: &[EventStatus] = &[
    EventStatus::Error,
    EventStatus::Failed,
    EventStatus::Aborted,
];

/// Every change of an event's status the store makes, named once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventStep {
    /// The transformation produced its output; delivery comes later (or is retried later).
    Transform,
    /// The transformation failed for this record.
    TransformFailed,
    /// Transformed and delivered in one commit (a delivery due at once), or skipped by the
    /// transformation (an empty output, nothing to deliver: done).
    TransformAndDeliver,
    /// Transformed, and its delivery due at once failed for good, in one commit.
    TransformAndFail,
    /// Delivered (or, in test mode, transformed and deliberately not sent).
    Deliver,
    /// Delivery failed for good.
    DeliveryFailed,
    /// A delivery attempt to be tried again later: the event stays TRANSFORMED.
    Retry,
    /// Ended by a user, or because its stream was deactivated, while still open.
    Abort,
}

impl EventStep {
    pub const ALL: [EventStep; 8] = [
        EventStep::Transform,
        EventStep::TransformFailed,
        EventStep::TransformAndDeliver,
        EventStep::TransformAndFail,
        EventStep::Deliver,
        EventStep::DeliveryFailed,
        EventStep::Retry,
        EventStep::Abort,
    ];

    /// The statuses this step starts from.
    pub fn from(self) -> &'static [EventStatus] {
        use EventStatus::*;
        match self {
            EventStep::Transform
            | EventStep::TransformFailed
            | EventStep::TransformAndDeliver
            | EventStep::TransformAndFail => &[New],
            EventStep::Deliver | EventStep::DeliveryFailed | EventStep::Retry => &[Transformed],
            EventStep::Abort => OPEN_EVENTS,
        }
    }

    /// The statuses the event passes through after its start, the last being where it ends;
    /// each is written to the event log. Empty for a step that keeps the status.
    pub fn path(self) -> &'static [EventStatus] {
        use EventStatus::*;
        match self {
            EventStep::Transform => &[Transformed],
            EventStep::TransformFailed => &[Error],
            EventStep::TransformAndDeliver => &[Transformed, Ok],
            EventStep::TransformAndFail => &[Transformed, Failed],
            EventStep::Deliver => &[Ok],
            EventStep::DeliveryFailed => &[Failed],
            EventStep::Retry => &[],
            EventStep::Abort => &[Aborted],
        }
    }

    /// Where the step leaves an event that was `from`.
    pub fn to(self, from: EventStatus) -> EventStatus {
        self.path().last().copied().unwrap_or(from)
    }

    /// The step that takes an event from `from` to `to` (`None`: keeps its status), given
    /// whether the change carries the transformation's output. `None` when no step does.
    pub fn between(from: EventStatus, to: Option<EventStatus>, output: bool) -> Option<EventStep> {
        use EventStatus::*;
        let step = match (from, to, output) {
            (New, None | Some(Transformed), true) => EventStep::Transform,
            (New, Some(Error), false) => EventStep::TransformFailed,
            (New, Some(Ok), true) => EventStep::TransformAndDeliver,
            (New, Some(Failed), true) => EventStep::TransformAndFail,
            (Transformed, Some(Ok), false) => EventStep::Deliver,
            (Transformed, Some(Failed), false) => EventStep::DeliveryFailed,
            (Transformed, None, false) => EventStep::Retry,
            (_, Some(Aborted), _) => EventStep::Abort,
            _ => return None,
        };
        step.from().contains(&from).then_some(step)
    }
}

/// Every change of a job's status the store makes, named once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStep {
    /// A worker claims a due job to run its source.
    Claim,
    /// The source failed.
    Fail,
    /// Source done and every event ended OK.
    Finish,
    /// Source done and every event ended, some not OK.
    FinishWithIssues,
    /// Ended by a user before its source produced its events.
    AbortSource,
}

impl JobStep {
    pub const ALL: [JobStep; 5] = [
        JobStep::Claim,
        JobStep::Fail,
        JobStep::Finish,
        JobStep::FinishWithIssues,
        JobStep::AbortSource,
    ];

    /// The statuses this step starts from.
    pub fn from(self) -> &'static [JobStatus] {
        use JobStatus::*;
        match self {
            JobStep::Claim => &[Pending],
            JobStep::Fail | JobStep::Finish | JobStep::FinishWithIssues => &[Processing],
            // A job aborted before it started finishes with issues straight from PENDING.
            JobStep::AbortSource => &[Pending, Processing],
        }
    }

    /// Where the step leaves the job.
    pub fn to(self) -> JobStatus {
        match self {
            JobStep::Claim => JobStatus::Processing,
            JobStep::Fail => JobStatus::Failed,
            JobStep::Finish => JobStatus::Finished,
            JobStep::FinishWithIssues | JobStep::AbortSource => JobStatus::FinishedWithIssues,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_have_no_way_out() {
        for from in EventStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in EventStatus::ALL {
                assert!(!from.can_transition(to), "{from:?} -> {to:?}");
            }
        }
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobStatus::ALL {
                assert!(!from.can_transition(to), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn the_happy_path_is_allowed() {
        use EventStatus::*;
        assert!(New.can_transition(Transformed));
        assert!(Transformed.can_transition(Ok));
        assert!(New.can_transition(Error));
        assert!(!New.can_transition(Ok));
        assert!(JobStatus::Pending.can_transition(JobStatus::Processing));
        assert!(JobStatus::Processing.can_transition(JobStatus::Finished));
        assert!(!JobStatus::Processing.can_transition(JobStatus::Pending));
    }

    #[test]
    fn every_step_follows_the_lifecycle() {
        for step in EventStep::ALL {
            for &from in step.from() {
                let mut at = from;
                for &next in step.path() {
                    assert!(at.can_transition(next), "{step:?}: {at:?} -> {next:?}");
                    at = next;
                }
                assert!(!from.is_terminal(), "{step:?} starts from {from:?}");
            }
        }
        for step in JobStep::ALL {
            for &from in step.from() {
                assert!(from.can_transition(step.to()), "{step:?}: {from:?}");
            }
        }
    }

    #[test]
    fn no_step_leaves_a_terminal_event() {
        for from in EventStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in EventStatus::ALL.map(Some).into_iter().chain([None]) {
                for output in [false, true] {
                    assert_eq!(
                        EventStep::between(from, to, output),
                        None,
                        "{from:?} {to:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in EventStatus::ALL {
            assert_eq!(EventStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
