//! The one place that calls `bindgen!`: once per version of the plug-in
//! contract the host runs. Every other module uses these generated types
//! through `crate::sandbox::wit` (0.1.0) and `crate::sandbox::wit2` (0.2.0).
//!
//! 0.2.0's `types` interface is the same as 0.1.0's, so its bindings reuse
//! 0.1.0's Rust types: the services, the pipeline and the stored contexts see
//! one `Entity`, one `Guid`, whichever version a component targets.

#![allow(missing_docs)]

/// `weft:plugin@0.1.0`: the whole context crosses as one record.
pub mod v1 {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit/v0.1",
        imports: { default: trappable },
        // serde: a recorded execution (`crate::replay`) is these types, written as JSON.
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    });
}

/// `weft:plugin@0.2.0`: the context is a host resource read on demand, and one
/// component holds several plug-in types.
pub mod v2 {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit/v0.2",
        imports: { default: trappable },
        additional_derives: [PartialEq],
        with: {
            "weft:plugin/types@0.2.0": super::v1::weft::plugin::types,
            "weft:plugin/context@0.2.0.execution-context": crate::sandbox::state::ContextView,
        },
    });
}
