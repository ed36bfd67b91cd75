//! # weft-host
//!
//! weft's trusted host: the plug-in sandbox, the event execution pipeline and
//! its registration, and the `weft` command that drives them. The message
//! formats (`weft-message`), the local bus (`weft-bus`), the data store
//! (`weft-store`), the endpoint clients (`weft-endpoints`) and the asynchronous
//! service (`weft-jobs`) are crates of their own.
//!
//! # Layout
//! - [`sandbox`]: runs untrusted plug-in components (wasmtime, limits, cache).
//! - [`pipeline`]: stages, steps, images, shared variables, child operations,
//!   depth limit, rollback, the outbox of async steps, the trace log.
//! - [`registration`]: `weft.toml`, validated and persisted.
//! - [`convert`]: WIT context ⇄ RemoteExecutionContext ⇄ store values.
//! - [`runtime`]: opens registration + store + sandbox + pipeline for a command.
//! - [`builder`]: builds plug-in crates from source for `wasm32-wasip2`.
//! - [`context`]: builds execution contexts from command-line input.
//! - [`replay`]: recorded executions (context and host-call answers) for `weft plugin replay`.
//! - [`suggest`]: "did you mean" for names users type.
//! - [`telemetry`]: OpenTelemetry traces exported by OTLP when configured.
//! - [`bench`]: `weft bench …` capacity measurements.
//! - [`cli`]: the `weft` commands (no business logic of its own).

pub mod api;
pub mod bench;
pub mod builder;
pub mod cli;
pub mod context;
pub mod convert;
pub mod delivery;
pub mod pipeline;
pub mod registration;
pub mod replay;
pub mod runtime;
pub mod sandbox;
pub mod suggest;
pub mod telemetry;
