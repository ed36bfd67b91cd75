//! The one place that calls `bindgen!` for `weft:plugin@0.1.0`. Every other
//! module uses these generated types through `crate::sandbox::wit`.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
    imports: { default: trappable },
    additional_derives: [PartialEq],
});
