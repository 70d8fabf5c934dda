//! Store conformance: what must hold for both backends alike.

// The harness talks to the server under test directly, not through the outbound guard.
#![allow(clippy::disallowed_methods)]

#[allow(dead_code, unused_macros, unused_imports)]
#[path = "../api/common.rs"]
mod common;

mod actions;
mod conformance;
mod schema;
