//! # weft-sdk
//!
//! The only crate a weft plug-in depends on. A plug-in is a type implementing
//! [`Plugin`], exported with [`export_plugin!`] (several from one component
//! with [`export_plugins!`]); a custom workflow activity is a type implementing
//! [`Activity`], exported with [`export_activity!`] (both kinds from one
//! component with [`export_component!`]). Either is compiled to a weft:plugin@0.2.0 WebAssembly
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
//! - [`Activity`], [`ArgumentSpec`], [`Arguments`], [`WorkflowContext`]:
//!   custom workflow activities (`activity`).
//! - [`http`]: outbound HTTP and HTTPS calls ([`Services::send`]), on `wasi:http`.
//! - [`testing`]: the native harness — unit-test plug-ins with `cargo test`.
//!
//! Must not: expose the generated WIT types (they stay in the hidden `wit`
//! module and `convert`).

mod activity;
#[cfg(any(
    test,
    all(
        target_arch = "wasm32",
        target_os = "wasi",
        not(target_feature = "atomics"),
        feature = "arena"
    )
))]
mod arena;
mod context;
mod error;
mod guid;
mod packed;
mod services;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod stdio;
mod value;

#[doc(hidden)]
pub mod convert;
pub mod http;
pub mod testing;
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod wit;

pub use activity::{Activity, ArgumentSpec, ArgumentType, Arguments, WorkflowContext};
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
        $crate::__export_component!(
            [$(($crate::__plugin_type_name!([$($name)?] $plugin), $plugin)),+] []
        );
    };
}

/// Exports one [`Activity`] type as a component holding one custom workflow
/// activity type (named like the Rust type): `export_activity!(T)` is
/// `export_activities!(T)`.
///
/// ```
/// use weft_sdk::{Activity, Arguments, Context, PluginError, Services, WorkflowContext};
///
/// struct Noop;
/// impl Activity for Noop {
///     fn execute(_: &mut Context, _: &WorkflowContext, _: &Arguments, _: &mut Arguments, _: &Services) -> Result<(), PluginError> {
///         Ok(())
///     }
/// }
///
/// weft_sdk::export_activity!(Noop);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_activity {
    ($activity:path) => {
        $crate::export_activities!($activity);
    };
}

/// Exports several [`Activity`] types from one component; a workflow's
/// activity step names the type it runs. A type's name is its Rust type's name,
/// or the string given before `=>`.
#[macro_export]
macro_rules! export_activities {
    ($($($name:literal =>)? $activity:path),+ $(,)?) => {
        $crate::__export_component!(
            [] [$(($crate::__plugin_type_name!([$($name)?] $activity), $activity)),+]
        );
    };
}

/// Exports plug-in types and activity types from one component, as one .NET
/// assembly holds IPlugin and CodeActivity classes.
///
/// ```
/// use weft_sdk::{Activity, Arguments, Context, Plugin, PluginError, Services, WorkflowContext};
///
/// struct Validate;
/// impl Plugin for Validate {
///     fn execute(_: &mut Context, _: &Services) -> Result<(), PluginError> { Ok(()) }
/// }
/// struct Post;
/// impl Activity for Post {
///     fn execute(_: &mut Context, _: &WorkflowContext, _: &Arguments, _: &mut Arguments, _: &Services) -> Result<(), PluginError> {
///         Ok(())
///     }
/// }
///
/// weft_sdk::export_component!(plugins: [Validate], activities: ["Contoso.Post" => Post]);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_component {
    (plugins: [$($($pname:literal =>)? $plugin:path),* $(,)?], activities: [$($($aname:literal =>)? $activity:path),* $(,)?] $(,)?) => {
        $crate::__export_component!(
            [$(($crate::__plugin_type_name!([$($pname)?] $plugin), $plugin)),*]
            [$(($crate::__plugin_type_name!([$($aname)?] $activity), $activity)),*]
        );
    };
}

/// The one implementation of the exported world, for every export macro.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_component {
    ([$(($pname:expr, $plugin:path)),*] [$(($aname:expr, $activity:path)),*]) => {
        const _: () = {
            use $crate::wit::weft::plugin::context as __wc;
            use $crate::wit::weft::plugin::workflow as __ww;
            struct __WeftExport;
            impl $crate::wit::Guest for __WeftExport {
                fn plugin_types() -> ::std::vec::Vec<::std::string::String> {
                    ::std::vec![$(::std::string::String::from($pname)),*]
                }
                fn execute(
                    plugin_type: ::std::string::String,
                    context: &__wc::ExecutionContext,
                ) -> ::core::result::Result<(), __wc::PluginError> {
                    // Compared one by one with borrowed names: no list of names is built per call.
                    $(
                        if $pname == plugin_type {
                            return $crate::convert::run::<$plugin>(context);
                        }
                    )*
                    // Used above only when the component holds plug-in types.
                    let _ = context;
                    ::core::result::Result::Err(
                        $crate::PluginError::new(::std::format!(
                            "this component holds no plug-in type \"{plugin_type}\""
                        ))
                        .into(),
                    )
                }
                fn activity_types() -> ::std::vec::Vec<__ww::ActivitySignature> {
                    ::std::vec![$(
                        $crate::convert::activity_signature::<$activity>(::std::string::String::from($aname))
                    ),*]
                }
                fn execute_activity(
                    activity_type: ::std::string::String,
                    context: &__wc::ExecutionContext,
                    workflow: __ww::WorkflowContext,
                    inputs: ::std::vec::Vec<__ww::Argument>,
                ) -> ::core::result::Result<::std::vec::Vec<__ww::Argument>, __wc::PluginError> {
                    $(
                        if $aname == activity_type {
                            return $crate::convert::run_activity::<$activity>(context, workflow, inputs);
                        }
                    )*
                    // Used above only when the component holds activity types.
                    let _ = (context, workflow, inputs);
                    ::core::result::Result::Err(
                        $crate::PluginError::new(::std::format!(
                            "this component holds no activity type \"{activity_type}\""
                        ))
                        .into(),
                    )
                }
            }
            $crate::wit::__export_plugin_world!(__WeftExport with_types_in $crate::wit);
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
        $name
    };
}
