//! The on-disk cache of precompiled components. An entry is keyed by the
//! component's sha256 and a hash of the engine's compatibility settings
//! (wasmtime version, target, tunables), and carries in a sidecar file a sha256
//! binding its own bytes to the component they were compiled from (see
//! [`entry_digest`]). Deserializing native code is trusted execution, so an
//! entry is used only when that digest matches: a corrupt, truncated or stale
//! entry, or one moved (with its sidecar) under another component's name, is
//! recompiled and rewritten, never loaded.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Lower-case hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a byte string, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The sidecar's digest of an entry: sha256 over the component's sha256 and the
/// compiled bytes. An entry's digest alone would also match when an entry and
/// its sidecar are copied under another component's name, and that other
/// component's code would run; binding the source makes such an entry fail.
fn entry_digest(component_sha256: &str, artifact: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"weft-cwasm-v2\0");
    hasher.update(component_sha256.as_bytes());
    hasher.update(b"\0");
    hasher.update(artifact);
    hex(&hasher.finalize())
}

/// Where the cache lives and which engine it serves.
pub struct ComponentCache {
    dir: PathBuf,
    engine_key: String,
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a verified cache entry.
    Hit,
    /// Compiled (no entry) and stored.
    Compiled,
    /// An entry existed but failed verification; compiled and replaced.
    Replaced,
}

impl ComponentCache {
    /// A cache in `dir` for components compiled by `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> ComponentCache {
        // DefaultHasher is stable for a given Rust release, and the toolchain
        // is pinned; a hash change only costs a recompilation.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn paths(&self, component_sha256: &str) -> (PathBuf, PathBuf) {
        let stem = format!("{component_sha256}-{}", self.engine_key);
        (
            self.dir.join(format!("{stem}.cwasm")),
            self.dir.join(format!("{stem}.sha256")),
        )
    }

    /// The component for `bytes`: from a verified entry, or compiled and stored.
    /// Failing to write the cache is not an error (the component still loads).
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        component_sha256: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let (artifact, digest) = self.paths(component_sha256);
        let existed = artifact.exists();
        if let Some(component) = Self::verified(engine, component_sha256, &artifact, &digest) {
            return Ok((component, CacheOutcome::Hit));
        }
        let component = Component::new(engine, bytes)?;
        if let Ok(serialized) = component.serialize() {
            let _ = self.store(component_sha256, &artifact, &digest, &serialized);
        }
        let outcome = if existed {
            CacheOutcome::Replaced
        } else {
            CacheOutcome::Compiled
        };
        Ok((component, outcome))
    }

    fn verified(
        engine: &Engine,
        component_sha256: &str,
        artifact: &Path,
        digest: &Path,
    ) -> Option<Component> {
        let expected = std::fs::read_to_string(digest).ok()?;
        let bytes = std::fs::read(artifact).ok()?;
        if entry_digest(component_sha256, &bytes) != expected.trim() {
            return None;
        }
        // SAFETY: the bytes are exactly what `Component::serialize` wrote, for this
        // component, for an engine with the same compatibility hash (the digest
        // proves they were not altered or moved since), and `deserialize` still
        // checks the header, version and engine settings before using them.
        #[allow(unsafe_code)]
        unsafe {
            Component::deserialize(engine, &bytes).ok()
        }
    }

    fn store(
        &self,
        component_sha256: &str,
        artifact: &Path,
        digest: &Path,
        serialized: &[u8],
    ) -> std::io::Result<()> {
        create_private_dir(&self.dir)?;
        // Write the artifact first and the digest last, each atomically: a
        // reader sees either no digest or one matching a complete artifact.
        let _ = std::fs::remove_file(digest);
        write_atomically(artifact, serialized)?;
        write_atomically(
            digest,
            entry_digest(component_sha256, serialized).as_bytes(),
        )
    }
}

/// Creates the cache directory owner-only (0700 on Unix): it holds code the host
/// will run.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes through a temporary file created owner-only (0600 on Unix), then
/// renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, path)
}
