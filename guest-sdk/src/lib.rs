//! # weft-sdk
//!
//! The only crate a weft plug-in depends on. A plug-in is a type implementing
//! [`Plugin`], exported with [`export_plugin!`] (several from one component
//! with [`export_plugins!`]), compiled to a weft:plugin@0.2.0 WebAssembly
//! component (`cargo build --target wasm32-wasip2`) and run by the weft host in
//! a sandbox. It sees the Dataverse execution context ([`Context`]) and reaches
//! the host only through [`Services`]: tracing, the service-endpoint
//! notification service, the organization service and its step configuration.
//!
//! ```
//! use weft_sdk::{Context, Plugin, PluginError, Services};
//!
//! /// Rejects accounts without a name.
//! pub struct RequireName;
//!
//! impl Plugin for RequireName {
//!     fn execute(ctx: &mut Context, services: &Services) -> Result<(), PluginError> {
//!         let target = ctx.target().ok_or_else(|| PluginError::new("no Target"))?;
//!         if target.get_str("name").is_none_or(str::is_empty) {
//!             return Err(PluginError::new("Account name is required."));
//!         }
//!         services.trace("name present");
//!         Ok(())
//!     }
//! }
//! // In the plug-in crate (a `cdylib`): weft_sdk::export_plugin!(RequireName);
//! ```
//!
//! # Layout
//! - [`Guid`], [`Value`], [`Entity`], [`EntityReference`], [`EntityCollection`],
//!   [`Parameters`]: Dataverse value types (`guid`, `value` modules).
//! - [`Context`] / [`ContextFrame`]: the execution context, read from the host
//!   on demand; writes are tracked so only changed parts go back to the host
//!   (`context`).
//! - [`Services`] and the [`Host`] seam behind it (`services`).
//! - [`PluginError`] / [`ServiceError`] (`error`).
//! - [`http`]: outbound HTTP and HTTPS calls ([`Services::send`]), on `wasi:http`.
//! - [`testing`]: the native harness — unit-test plug-ins with `cargo test`.
//!
//! Must not: expose the generated WIT types (they stay in the hidden `wit`
//! module and `convert`).

mod context;
mod error;
mod guid;
mod services;
mod value;

#[doc(hidden)]
pub mod convert;
pub mod http;
pub mod testing;
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod wit;

pub use context::{Context, ContextFrame, IsolationMode, Mode, Stage};
pub use error::{OperationStatus, PluginError, ServiceError, ServiceErrorKind};
pub use guid::{Guid, ParseGuidError};
pub use services::{Condition, ConditionOperator, ContextChanges, Host, Query, Services};
pub use value::{Entity, EntityCollection, EntityReference, ParameterValue, Parameters, Value};

/// A plug-in: one `execute` per pipeline event it is registered on.
///
/// Return `Err(PluginError)` to raise an InvalidPluginExecutionException: its
/// message reaches the caller verbatim and, in a synchronous step, the whole
/// operation rolls back.
pub trait Plugin {
    /// Runs once per invocation, with the context and the host's services.
    fn execute(ctx: &mut Context, services: &Services) -> Result<(), PluginError>;
}

/// Exports one [`Plugin`] type as a component holding one plug-in type (named
/// like the Rust type): `export_plugin!(T)` is `export_plugins!(T)`.
///
/// ```
/// use weft_sdk::{Context, Plugin, PluginError, Services};
///
/// struct MyPlugin;
///
/// impl Plugin for MyPlugin {
///     fn execute(ctx: &mut Context, services: &Services) -> Result<(), PluginError> {
///         services.trace(format!("{} of {}", ctx.message_name, ctx.primary_entity_name));
///         Ok(())
///     }
/// }
///
/// weft_sdk::export_plugin!(MyPlugin);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:path) => {
        $crate::export_plugins!($plugin);
    };
}

/// Exports several [`Plugin`] types from one component (weft:plugin@0.2.0), as
/// one .NET assembly holds several IPlugin classes; a step names the type it
/// runs (`type = "…"` in weft.toml). A type's name is its Rust type's name, or
/// the string given before `=>`.
///
/// ```
/// use weft_sdk::{Context, Plugin, PluginError, Services};
///
/// struct Validate;
/// impl Plugin for Validate {
///     fn execute(_: &mut Context, _: &Services) -> Result<(), PluginError> { Ok(()) }
/// }
/// struct Enrich;
/// impl Plugin for Enrich {
///     fn execute(_: &mut Context, _: &Services) -> Result<(), PluginError> { Ok(()) }
/// }
///
/// // Types "Contoso.Validate" and "Enrich".
/// weft_sdk::export_plugins!("Contoso.Validate" => Validate, Enrich);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_plugins {
    ($($($name:literal =>)? $plugin:path),+ $(,)?) => {
        const _: () = {
            struct __WeftPluginExport;
            fn __weft_plugin_types() -> ::std::vec::Vec<::std::string::String> {
                ::std::vec![$($crate::__plugin_type_name!([$($name)?] $plugin)),+]
            }
            impl $crate::wit::Guest for __WeftPluginExport {
                fn plugin_types() -> ::std::vec::Vec<::std::string::String> {
                    __weft_plugin_types()
                }
                fn execute(
                    plugin_type: ::std::string::String,
                    context: &$crate::wit::weft::plugin::context::ExecutionContext,
                ) -> ::core::result::Result<(), $crate::wit::weft::plugin::context::PluginError> {
                    type Run = fn(
                        &$crate::wit::weft::plugin::context::ExecutionContext,
                    ) -> ::core::result::Result<(), $crate::wit::weft::plugin::context::PluginError>;
                    let runs: &[Run] = &[$($crate::convert::run::<$plugin>),+];
                    match __weft_plugin_types().iter().position(|t| *t == plugin_type) {
                        ::core::option::Option::Some(i) => runs[i](context),
                        ::core::option::Option::None => ::core::result::Result::Err(
                            $crate::PluginError::new(::std::format!(
                                "this component holds no plug-in type \"{plugin_type}\""
                            ))
                            .into(),
                        ),
                    }
                }
            }
            $crate::wit::__export_plugin_world!(__WeftPluginExport with_types_in $crate::wit);
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_type_name {
    ([] $plugin:path) => {
        $crate::convert::short_type_name(::core::any::type_name::<$plugin>())
    };
    ([$name:literal] $plugin:path) => {
        ::std::string::String::from($name)
    };
}
