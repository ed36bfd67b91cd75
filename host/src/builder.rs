//! Builds plug-in crates from source into WebAssembly components
//! (`cargo build --release --target wasm32-wasip2`), reporting progress. Used by
//! `weft build`, `weft quickstart` and the integration tests, so all three build
//! plug-ins the same way. Must not load or run what it builds.

use anyhow::{Context as _, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The WebAssembly target plug-ins are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// The repository's plug-in workspace (`plugins/`), as laid out in the source
/// tree this binary was built from.
pub fn default_plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins")
}

/// Where plug-in builds go by default: beside the workspace's own target
/// directory, so one `cargo clean` clears both and builds are reused.
pub fn default_target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins")
}

/// One built component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The crate's package name.
    pub package: String,
    /// The `.wasm` component.
    pub path: PathBuf,
}

/// Whether the standard library for [`TARGET`] is installed for `cargo`'s
/// toolchain.
fn target_installed(plugins_dir: &Path) -> bool {
    let sysroot = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .current_dir(plugins_dir)
        .output();
    match sysroot {
        Ok(out) if out.status.success() => {
            let root = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            Path::new(&root).join("lib/rustlib").join(TARGET).exists()
        }
        // Cannot tell: let cargo report whatever is wrong.
        _ => true,
    }
}

/// Installs [`TARGET`] through rustup when `cargo`'s toolchain lacks it (a
/// toolchain installed before the clone does not pick up `rust-toolchain.toml`'s
/// `targets`), saying so in one `progress` line; one clear error when rustup is absent.
fn ensure_target(plugins_dir: &Path, progress: &mut impl FnMut(&str)) -> anyhow::Result<()> {
    if target_installed(plugins_dir) {
        return Ok(());
    }
    progress(&format!(
        "installing the {TARGET} target with rustup (once per toolchain)"
    ));
    // Run where the build runs, so rustup picks the toolchain the build will use.
    let out = Command::new("rustup")
        .args(["target", "add", TARGET])
        .current_dir(plugins_dir)
        .output();
    match out {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => bail!(
            "`rustup target add {TARGET}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "the {TARGET} target is not installed and rustup is not on the PATH: \
             install it for your toolchain (with rustup: `rustup target add {TARGET}`)"
        ),
        Err(e) => bail!("running `rustup target add {TARGET}`: {e}"),
    }
}

/// Builds `packages` (all of the workspace when empty) of the plug-in workspace
/// at `plugins_dir` into `target_dir`, calling `progress` with a few lines: the
/// target install if one was needed, one line when dependencies start compiling,
/// and one per component (built or already fresh). Returns the components built.
pub fn build(
    plugins_dir: &Path,
    target_dir: &Path,
    packages: &[String],
    mut progress: impl FnMut(&str),
) -> anyhow::Result<Vec<Artifact>> {
    ensure_target(plugins_dir, &mut progress)?;
    let manifest = plugins_dir.join("Cargo.toml");
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .args(["build", "--release", "--target", TARGET])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .args(["--message-format", "json-render-diagnostics"])
        .current_dir(plugins_dir)
        // Flags meant for the outer (native) build must not reach the wasm one.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if packages.is_empty() {
        command.arg("--workspace");
    }
    for package in packages {
        command.args(["--package", package]);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("running cargo to build {}", manifest.display()))?;
    let stderr = child.stderr.take().context("cargo's stderr")?;
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut artifacts = Vec::new();
    let mut dependencies_announced = false;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let package = message["target"]["name"].as_str().unwrap_or("?").to_owned();
        let fresh = message["fresh"].as_bool().unwrap_or(false);
        let wasm = message["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"));
        let Some(path) = wasm else {
            // A dependency: fifty of these lines say nothing a user needs.
            if !fresh && !dependencies_announced {
                dependencies_announced = true;
                progress("compiling dependencies (the first build takes a minute)");
            }
            continue;
        };
        progress(&format!(
            "{} {package}",
            if fresh { "up to date" } else { "built" }
        ));
        artifacts.push(Artifact {
            package: package.replace('_', "-"),
            path: PathBuf::from(path),
        });
    }
    let status = child.wait().context("waiting for cargo")?;
    let stderr = stderr_reader.join().unwrap_or_default();
    if !status.success() {
        if stderr.contains("target may not be installed") {
            bail!("the {TARGET} target is not installed: run `rustup target add {TARGET}`");
        }
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "building the plug-ins in {} failed:\n{}",
            plugins_dir.display(),
            tail.join("\n")
        );
    }
    Ok(artifacts)
}
