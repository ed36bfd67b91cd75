//! `weft plugin new NAME [--dir DIR]`: a plug-in project of one's own, outside any weft checkout.
//!
//! The project carries the plug-in SDK and the WIT contract of exactly this binary's version (embedded
//! here at compile time), so it builds with only rustup, this binary and the crates registry: no
//! checkout, no git. Its `Cargo.lock` is the one weft's own plug-ins are built with, so the SDK's
//! dependencies resolve to the versions weft was tested with. Owns the templates and the embedded file
//! list; must not build or run anything.

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};

/// The SDK's sources, as `weft-sdk/<path>` in the new project. `embedded_files_cover_the_sdk_and_wit`
/// (tests below) fails when a file is added to `guest-sdk/src` or `wit/` without being listed here.
const SDK_SOURCES: &[(&str, &str)] = &[
    (
        "src/activity.rs",
        include_str!("../../../guest-sdk/src/activity.rs"),
    ),
    (
        "src/arena.rs",
        include_str!("../../../guest-sdk/src/arena.rs"),
    ),
    (
        "src/context.rs",
        include_str!("../../../guest-sdk/src/context.rs"),
    ),
    (
        "src/convert.rs",
        include_str!("../../../guest-sdk/src/convert.rs"),
    ),
    (
        "src/error.rs",
        include_str!("../../../guest-sdk/src/error.rs"),
    ),
    (
        "src/guid.rs",
        include_str!("../../../guest-sdk/src/guid.rs"),
    ),
    (
        "src/http.rs",
        include_str!("../../../guest-sdk/src/http.rs"),
    ),
    ("src/lib.rs", include_str!("../../../guest-sdk/src/lib.rs")),
    (
        "src/packed.rs",
        include_str!("../../../guest-sdk/src/packed.rs"),
    ),
    (
        "src/services.rs",
        include_str!("../../../guest-sdk/src/services.rs"),
    ),
    (
        "src/stdio.rs",
        include_str!("../../../guest-sdk/src/stdio.rs"),
    ),
    (
        "src/testing.rs",
        include_str!("../../../guest-sdk/src/testing.rs"),
    ),
    (
        "src/value.rs",
        include_str!("../../../guest-sdk/src/value.rs"),
    ),
    ("src/wit.rs", include_str!("../../../guest-sdk/src/wit.rs")),
];

/// The plug-in contract the SDK builds against (weft:plugin@0.2.0), as `wit/v0.2/<file>` (the SDK's
/// bindings read `../wit/v0.2`).
const WIT_FILES: &[(&str, &str)] = &[
    (
        "configuration.wit",
        include_str!("../../../wit/v0.2/configuration.wit"),
    ),
    ("context.wit", include_str!("../../../wit/v0.2/context.wit")),
    (
        "notification-service.wit",
        include_str!("../../../wit/v0.2/notification-service.wit"),
    ),
    (
        "organization-service.wit",
        include_str!("../../../wit/v0.2/organization-service.wit"),
    ),
    ("tracing.wit", include_str!("../../../wit/v0.2/tracing.wit")),
    ("types.wit", include_str!("../../../wit/v0.2/types.wit")),
    (
        "workflow.wit",
        include_str!("../../../wit/v0.2/workflow.wit"),
    ),
    ("world.wit", include_str!("../../../wit/v0.2/world.wit")),
];

/// The lock file weft's example plug-ins build with: pins wit-bindgen and its dependencies.
const PLUGINS_LOCK: &str = include_str!("../../../plugins/Cargo.lock");
/// The workspace manifest: the SDK's wit-bindgen requirement is read from it, so it cannot drift.
const WORKSPACE_MANIFEST: &str = include_str!("../../../Cargo.toml");
/// The SDK's manifest: its `wasip2` requirement (outbound HTTP) and its features are read from it, so they
/// cannot drift.
const SDK_MANIFEST: &str = include_str!("../../../guest-sdk/Cargo.toml");

const LIB_RS: &str = include_str!("scaffold/lib.rs.tmpl");
const WEFT_TOML: &str = include_str!("scaffold/weft.toml.tmpl");
const README: &str = include_str!("scaffold/README.md.tmpl");

/// The `wit-bindgen = …` requirement of the workspace manifest.
fn wit_bindgen_requirement() -> anyhow::Result<String> {
    let manifest: toml::Table = toml::from_str(WORKSPACE_MANIFEST)?;
    let dep = manifest
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(|d| d.get("wit-bindgen"))
        .context("the workspace manifest names no wit-bindgen")?;
    Ok(toml::Value::to_string(dep))
}

/// The SDK's `wasip2 = …` requirement (a wasm32-only dependency).
fn wasip2_requirement() -> anyhow::Result<String> {
    let manifest: toml::Table = toml::from_str(SDK_MANIFEST)?;
    let dep = manifest
        .get("target")
        .and_then(|t| t.get("cfg(target_arch = \"wasm32\")"))
        .and_then(|t| t.get("dependencies"))
        .and_then(|d| d.get("wasip2"))
        .context("the SDK's manifest names no wasip2")?;
    Ok(toml::Value::to_string(dep))
}

/// The SDK's `[features]` table, as TOML lines.
fn sdk_features() -> anyhow::Result<String> {
    let manifest: toml::Table = toml::from_str(SDK_MANIFEST)?;
    let features = manifest
        .get("features")
        .context("the SDK's manifest has no features")?;
    Ok(toml::to_string(features)?)
}

/// A crate name is what Cargo accepts: ASCII letters, digits, `-` and `_`, starting with a letter.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!(
            "`{name}` is not a plug-in name: use ASCII letters, digits, `-` and `_`, starting with a letter"
        );
    }
    if name == "weft-sdk" || name == "weft_sdk" || name == "test" {
        bail!("`{name}` is reserved: choose another plug-in name");
    }
    Ok(())
}

/// `tidy-names` → `TidyNames`: the plug-in's type name.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

fn render(template: &str, pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .fold(template.to_owned(), |text, (key, value)| {
            text.replace(&format!("{{{{{key}}}}}"), value)
        })
}

/// A random key for the project's own local bus (base64 of 32 random bytes, as Azure's keys).
fn new_key() -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = (0..2)
        .flat_map(|_| uuid::Uuid::new_v4().into_bytes())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// What [`create`] wrote.
pub struct Created {
    /// The project directory.
    pub dir: PathBuf,
    /// The component path `weft build` will write, relative to `dir`.
    pub component: String,
}

/// Writes the project `name` into `dir` (which must not exist or be empty).
pub fn create(name: &str, dir: &Path) -> anyhow::Result<Created> {
    check_name(name)?;
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty: choose another --dir",
            dir.display()
        );
    }
    let file = name.replace('-', "_");
    let version = env!("CARGO_PKG_VERSION");
    let ty = type_name(name);
    let key = new_key();
    let sdk_manifest = format!(
        "# The weft plug-in SDK of weft {version}, written by `weft plugin new`: it matches that host's\n\
         # contract (the project's wit/ folder). Replace both together when you move to another weft version.\n\
         [package]\nname = \"weft-sdk\"\nversion = \"{version}\"\nedition = \"2024\"\npublish = false\n\
         description = \"The guest SDK for weft plug-ins\"\n\n[dependencies]\nwit-bindgen = {}\n\n\
         # arena: the first 64 KiB a component allocates are bumped out of an arena (src/arena.rs); a plug-in\n\
         # with its own #[global_allocator] turns it off with default-features = false.\n\
         [features]\n{}\n\
         # Outbound HTTP (weft_sdk::http) on wasi:http.\n\
         [target.'cfg(target_arch = \"wasm32\")'.dependencies]\nwasip2 = {}\n",
        wit_bindgen_requirement()?,
        sdk_features()?,
        wasip2_requirement()?
    );
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [lib]\n# cdylib: the WebAssembly component; rlib: native unit tests.\n\
         crate-type = [\"cdylib\", \"rlib\"]\n\n[dependencies]\nweft-sdk = {{ path = \"weft-sdk\" }}\n\n\
         # Its own workspace, wherever it is put.\n[workspace]\n\n\
         # Release components keep the name section, so guest backtraces show function names.\n\
         [profile.release]\nopt-level = 3\ncodegen-units = 1\npanic = \"abort\"\nstrip = \"none\"\ndebug = false\n"
    );
    let table = crate::registration::EXAMPLE_ACCOUNT_TABLE;
    let pairs = [
        ("name", name),
        ("Type", ty.as_str()),
        ("file", file.as_str()),
        ("version", version),
        ("key", key.as_str()),
        ("table", table),
    ];
    let mut files: Vec<(PathBuf, String)> = vec![
        ("Cargo.toml".into(), manifest),
        ("Cargo.lock".into(), PLUGINS_LOCK.to_owned()),
        ("src/lib.rs".into(), render(LIB_RS, &pairs)),
        ("weft.toml".into(), render(WEFT_TOML, &pairs)),
        ("README.md".into(), render(README, &pairs)),
        (".gitignore".into(), "/target\n/.weft\n".to_owned()),
        ("weft-sdk/Cargo.toml".into(), sdk_manifest),
    ];
    files.extend(
        SDK_SOURCES
            .iter()
            .map(|(path, text)| (Path::new("weft-sdk").join(path), (*text).to_owned())),
    );
    files.extend(
        WIT_FILES
            .iter()
            .map(|(path, text)| (Path::new("wit/v0.2").join(path), (*text).to_owned())),
    );
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Created {
        dir: dir.to_owned(),
        component: format!("target/wasm32-wasip2/release/{file}.wasm"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(dir: &str, prefix: &str) -> Vec<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut names: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| format!("{prefix}{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        names.sort();
        names
    }

    /// Every SDK source and WIT file is embedded: a file added to either without
    /// being listed would make generated projects fail to build.
    #[test]
    fn embedded_files_cover_the_sdk_and_wit() {
        let sdk: Vec<String> = SDK_SOURCES.iter().map(|(p, _)| (*p).to_owned()).collect();
        assert_eq!(sdk, listed("../guest-sdk/src", "src/"));
        let wit: Vec<String> = WIT_FILES.iter().map(|(p, _)| (*p).to_owned()).collect();
        assert_eq!(wit, listed("../wit/v0.2", ""));
    }

    #[test]
    fn names_are_checked_and_typed() {
        assert_eq!(type_name("tidy-names"), "TidyNames");
        assert_eq!(type_name("demo"), "Demo");
        for bad in ["", "1x", "a b", "ünï", "weft-sdk", "../x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(wit_bindgen_requirement().unwrap().contains("version"));
    }

    /// A non-empty directory is never written into.
    #[test]
    fn refuses_a_non_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let err = create("demo", dir.path()).err().unwrap().to_string();
        assert!(err.contains("not empty"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
            "mine"
        );
    }
}
