//! Builds every crate of `plugins/` once per test run and hands out paths (and loaded components).

use std::path::PathBuf;
use std::sync::OnceLock;
use weft_host::builder::{self, Artifact};
use weft_host::sandbox::{LoadedPlugin, Sandbox};

static BUILT: OnceLock<Result<Vec<Artifact>, String>> = OnceLock::new();

/// The component built from the plug-in crate `package`.
pub fn component(package: &str) -> PathBuf {
    let built = BUILT.get_or_init(|| {
        builder::build(
            &builder::default_plugins_dir(),
            &builder::default_target_dir(),
            &[],
            |_| {},
        )
        .map_err(|e| format!("{e:#}"))
    });
    match built {
        Ok(artifacts) => artifacts
            .iter()
            .find(|a| a.package == package)
            .unwrap_or_else(|| panic!("no component was built for `{package}`"))
            .path
            .clone(),
        Err(e) => panic!("building the plug-in fixtures failed: {e}"),
    }
}

/// The bytes of that component.
pub fn bytes(package: &str) -> Vec<u8> {
    std::fs::read(component(package)).expect("reading a built component")
}

/// The component built from `package`, loaded into `sandbox`.
pub fn load(sandbox: &Sandbox, package: &str) -> LoadedPlugin {
    sandbox.load_file(package, &component(package)).unwrap()
}
