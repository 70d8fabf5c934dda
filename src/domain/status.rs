//! Job and event statuses and the transitions allowed between them. The store refuses any
//! transition not listed here (a conditional update on the current status changes no row).

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
