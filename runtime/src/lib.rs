//! The runtime a party runs on: what the node and the broker share and an outside client
//! of the wire contract does not need.
//!
//! * [`tls`]: mutual TLS (rustls, ring, TLS 1.3), CRL reload without restart.
//! * [`client`]: mTLS channels to a party, connection errors in an operator's words.
//! * [`codes`]: sign-in codes (TOTP) and their enrollment QR codes.
//! * [`server`]: serving gRPC over mTLS with health checking and reflection.
//! * [`undecodable`]: requests the transport cannot decode are refused and logged.
//! * [`tasks`]: periodic background work (CRL reload, purges, syncs).
//! * [`config`]: the `[tls]` section, relative paths, TOML errors in one line.
//! * [`metrics`]: Prometheus metrics (the `prometheus-client` crate) served at `/metrics`.
//! * [`telemetry`]: logging and OpenTelemetry span export and propagation.
//! * [`vocabulary`](mod@vocabulary): closed sets of log names as enums with one string form.
//! * [`sqlite`]: how every party opens its database files; background WAL checkpoints.
//! * [`pgserver`]: a PostgreSQL server of its own in a temporary directory (tests, demo).
//! * [`tree`]: an RFC 6962 tree kept in a SQLite table beside the log it covers.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod client;
pub mod codes;
pub mod config;
mod error;
pub mod metrics;
pub mod pgpool;
pub mod pgserver;
pub mod server;
pub mod sqlite;
pub mod tasks;
pub mod telemetry;
pub mod tls;
pub mod tree;
pub mod undecodable;
pub mod vocabulary;
pub mod web;
pub mod wiretap;

pub use error::Error;
