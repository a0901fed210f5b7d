//! Wire types and shared rules of the federated ALPR query broker.
//!
//! * [`pb`]: generated protobuf messages and gRPC services (protox; no `protoc`).
//! * [`envelope`]: the signed envelope, domain-separated, verified before decoding.
//! * [`purpose`]: the purpose-code table (NIBRS offenses and non-crime purposes), compiled in.
//! * [`input`]: one normalization rule for plates, and the checks on reasons and case numbers.
//! * [`rules`]: state rules as versioned data (California, Illinois, Virginia, default).
//! * [`agreement`]: doubly signed, directional sharing agreements.
//! * [`admission`]: the one rule set that both the broker and every node evaluate.
//! * [`reply`]: the one verification of a target's signed answer or refusal.
//! * [`replay`]: in-memory replay memory, rebuilt from each party's own log at start.
//! * [`limits`]: message-size limits of the wire contract.
//! * [`merkle`], [`registry`]: the agreement registry as an RFC 6962 log.
//! * [`auditlog`]: nodes' audit logs as anchored RFC 6962 logs, verified by outsiders.
//!
//! This is the crate an outside client depends on: no database, server runtime or
//! telemetry crate. What the node and the broker run on is `alpr-runtime`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod admission;
pub mod agreement;
pub mod auditlog;
pub mod envelope;
mod error;
pub mod hotlist;
pub mod input;
pub mod limits;
pub mod merkle;
pub mod purpose;
pub mod registration;
pub mod registry;
pub mod replay;
pub mod reply;
pub mod rules;
pub mod seal;
pub mod subjects;
#[cfg(test)]
mod testkit;

pub use error::{Error, REASON_METADATA, reason_of, refusal_status};
pub use pb::RefusalReason;

/// Generated protobuf and gRPC code for package `alpr.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("alpr.v1");
}

/// The encoded protobuf descriptor set of `alpr.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/alpr_descriptor.bin"));
