//! Black-box tests of the HTTP API, each case on SQLite and on Postgres.

// The tests are the API's clients: they send their own requests, not through the outbound guard.
#![allow(clippy::disallowed_methods)]

mod common;

mod access;
mod alerts;
mod audit;
mod binary;
mod config_resources;
mod csv_lists;
mod dear;
mod email;
mod engine;
mod flows;
mod ftp;
mod hygiene;
mod ingest;
mod input_limits;
mod lifecycle;
mod lookup_tables;
mod magento;
mod monitoring;
mod outbound;
mod panel;
mod parts;
mod peers;
mod people;
mod peoplevox;
mod processes;
mod replicate;
mod retention;
mod schedule;
mod security;
mod sftp;
mod shopify;
mod storage_faults;
mod transforms;
mod walkthrough;
mod woocommerce;
