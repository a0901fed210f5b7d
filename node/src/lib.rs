//! An agency's ALPR node: its own reads, its own audit log, its own say.
//!
//! The node answers queries forwarded by the broker only after re-running admission
//! against **its own** copy of agreements and **its own** policy, logs every request
//! durably before any answer leaves, and endorses its own investigators' queries.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod accounts;
pub mod admin;
pub mod alerts;
pub mod anchoring;
pub mod audit;
pub mod backup;
pub mod cli;
pub mod client;
pub mod config;
pub mod console;
pub mod decommission;
pub mod enrollment;
mod error;
pub mod export;
pub mod holds;
pub mod inbound;
pub mod ingest;
pub mod keyring;
pub mod metrics;
pub mod node;
pub mod outbound;
pub mod outcomes;
pub mod owner;
pub mod publish;
pub mod registry;
pub mod reports;
pub mod sealing;
pub mod server;
pub mod service;
pub mod settings;
pub mod shares;
pub mod state;
pub mod status;
pub mod store;

pub use config::NodeConfig;
pub use error::Error;
pub use node::Node;
pub use server::{RunningNode, start, start_on};
