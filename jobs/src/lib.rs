//! weft's asynchronous service: runs system jobs (asyncoperation) written by the pipeline, with leases,
//! retries and the user operations of Dataverse's System Jobs view.
//!
//! Owns the worker loop ([`AsyncService`]), the retry policy ([`RetryPolicy`]), the job-state rules for user
//! operations ([`ops`]), read views ([`views`]) and the `weft jobs` command ([`cli`]). It must not know any
//! transport's wire details — it runs jobs through [`JobRunner`] and decides retries from the
//! [`FailureClass`] the runner returns — and it reads and writes jobs only through `weft-store`'s API.
//!
//! States and status codes are Dataverse's (dataverse.md §18): Ready/Waiting For Resources 0/0,
//! Suspended/Waiting 1/10, Locked/In Progress 2/20, Pausing 2/21, Canceling 2/22, Completed/Succeeded 3/30,
//! Failed 3/31, Canceled 3/32.

pub mod cli;
pub mod ops;
pub mod policy;
pub mod runner;
pub mod service;
pub mod settings;
pub mod views;

pub use cli::{JobsCommand, run};
pub use ops::{JobAction, JobOpError, apply};
pub use policy::{Decision, RetryPolicy};
pub use runner::{FailureClass, JobOutcome, JobRunner};
pub use service::{AsyncService, Clock, Notifier, ServiceConfig, system_clock};
pub use settings::JobsSettings;
pub use views::{JobView, ListFilter};
