//! The generated bindings for `weft:plugin@0.2.0`. Hidden: plug-ins use the
//! typed API; only the export macro reaches in here.

wit_bindgen::generate!({
    world: "plugin",
    path: "../wit/v0.2",
    pub_export_macro: true,
    export_macro_name: "__export_plugin_world",
    default_bindings_module: "weft_sdk::wit",
    generate_all,
});
