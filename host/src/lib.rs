//! # weft-host
//!
//! weft's trusted host: the plug-in sandbox, and the `weft` command that drives
//! it. Later issues add the pipeline, the asynchronous service and the endpoint
//! clients beside it.
//!
//! # Layout
//! - [`sandbox`]: runs untrusted plug-in components (wasmtime, limits, cache).
//! - [`builder`]: builds plug-in crates from source for `wasm32-wasip2`.
//! - [`context`]: builds execution contexts from command-line input.
//! - [`bench`]: `weft bench …` capacity measurements.
//! - [`cli`]: the `weft` commands (no business logic of its own).

pub mod bench;
pub mod builder;
pub mod cli;
pub mod context;
pub mod convert;
pub mod pipeline;
pub mod registration;
pub mod sandbox;
