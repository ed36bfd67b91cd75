//! The one place that calls `bindgen!` for `weft:plugin@0.1.0`. Every other
//! module uses these generated types through `crate::sandbox::wit`.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
    imports: { default: trappable },
    // serde: a recorded execution (`crate::replay`) is these types, written as JSON.
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
});
