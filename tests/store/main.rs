//! Store conformance: what must hold for both backends alike.

#[allow(dead_code, unused_macros, unused_imports)]
#[path = "../api/common.rs"]
mod common;

mod schema;
