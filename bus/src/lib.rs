//! weft-bus: weft's embedded local bus and the Dataverse-aware listener.
//!
//! An axum HTTP server speaking the documented Azure REST protocols (Service Bus queues, topics and
//! subscriptions; Event Hubs send; Relay Hybrid Connections HTTP requests), backed by SQLite, so the same client
//! code works against it and against Azure. This crate must not depend on weft-message: decoding for the
//! listener goes through [`listen::summarize`].

pub mod connection_string;
pub mod sas;
