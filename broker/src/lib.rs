//! The broker of the federated ALPR system: it routes signed queries between agencies'
//! nodes only where admission passes, keeps the agreement registry, and logs every
//! routing decision. It stores no reads and no answers.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod anchors;
pub mod broker;
pub mod cli;
pub mod config;
mod error;
pub mod metrics;
pub mod page;
pub mod registry;
pub mod regulator;
pub mod server;
pub mod service;
pub mod store;
pub mod vocabulary;

#[cfg(test)]
mod testkit;

pub use broker::Broker;
pub use config::BrokerConfig;
pub use error::Error;
pub use server::{RunningBroker, start, start_on, start_tapped};
