//! Black-box tests of the HTTP API, each case on SQLite and on Postgres.

mod common;

mod access;
mod binary;
mod config_resources;
mod engine;
mod hygiene;
mod ingest;
mod input_limits;
mod lifecycle;
mod lookup_tables;
mod peers;
mod processes;
mod replicate;
mod schedule;
mod security;
mod transforms;
