//! Pure domain rules: roles, statuses and their transitions, timestamps. No I/O here.

pub mod aggregate;
pub mod error_code;
pub mod retry;
pub mod role;
pub mod schedule;
pub mod status;
pub mod time;

pub use role::{Permission, Role};
pub use status::{EventStatus, EventStep, JobStatus, JobStep};
pub use time::Timestamp;
