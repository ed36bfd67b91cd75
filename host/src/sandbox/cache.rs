//! The on-disk cache of precompiled components. An entry is keyed by the
//! component's sha256 and a hash of the engine's compatibility settings
//! (wasmtime version, target, tunables), and carries a sha256 of its own bytes
//! in a sidecar file. Deserializing native code is trusted execution, so an
//! entry is used only when that digest matches; a corrupt, truncated or stale
//! entry is recompiled and rewritten, never loaded.

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
        if let Some(component) = Self::verified(engine, &artifact, &digest) {
            return Ok((component, CacheOutcome::Hit));
        }
        let component = Component::new(engine, bytes)?;
        if let Ok(serialized) = component.serialize() {
            let _ = self.store(&artifact, &digest, &serialized);
        }
        let outcome = if existed {
            CacheOutcome::Replaced
        } else {
            CacheOutcome::Compiled
        };
        Ok((component, outcome))
    }

    fn verified(engine: &Engine, artifact: &Path, digest: &Path) -> Option<Component> {
        let expected = std::fs::read_to_string(digest).ok()?;
        let bytes = std::fs::read(artifact).ok()?;
        if sha256_hex(&bytes) != expected.trim() {
            return None;
        }
        // SAFETY: the bytes are exactly what `Component::serialize` wrote for an
        // engine with the same compatibility hash (the digest proves they were not
        // altered since), and `deserialize` still checks the header, version and
        // engine settings before using them.
        #[allow(unsafe_code)]
        unsafe {
            Component::deserialize(engine, &bytes).ok()
        }
    }

    fn store(&self, artifact: &Path, digest: &Path, serialized: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        // Write the artifact first and the digest last, each atomically: a
        // reader sees either no digest or one matching a complete artifact.
        let _ = std::fs::remove_file(digest);
        write_atomically(artifact, serialized)?;
        write_atomically(digest, sha256_hex(serialized).as_bytes())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
