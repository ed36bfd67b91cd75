//! weft-message: Dataverse's RemoteExecutionContext and its three wire formats.
pub mod error;
pub mod json;
pub mod model;
pub use error::MessageError;
pub use model::*;
