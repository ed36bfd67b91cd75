//! `weft up --watch`: hot-replaces a plug-in when its component file (the `path` weft.toml gives it)
//! changes, exactly as `weft plugin push` and the API's `PATCH pluginassemblies(…)` do — checked by the
//! sandbox first, a bad component refused with its load error while the old one keeps serving.
//!
//! Owns the polling and the "is this a finished, new file" rules; must not know how a replacement is done
//! (that is [`crate::pipeline::Pipeline::replace_plugin`]'s).
//!
//! Why polling rather than inotify: one `stat` per plug-in every [`POLL`] costs nothing, works on every
//! platform and file system (network mounts, editors that replace files by rename), and needs no
//! dependency. A file is read only once its size and modification time held still for one poll, so a
//! component cargo is still writing is not loaded half-written; it is replaced only when its sha256
//! differs from what runs, so touching a file does nothing.

use crate::runtime::Runtime;
use crate::sandbox::sha256_hex;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the component files are looked at.
pub const POLL: Duration = Duration::from_millis(400);

/// One watched component file.
struct Watched {
    plugin: String,
    path: PathBuf,
    /// The (size, modified) of the last poll, to tell a file still being written from a finished one.
    seen: Option<(u64, SystemTime)>,
    /// The (size, modified) whose content was last looked at (at start: the file as it was).
    checked: Option<(u64, SystemTime)>,
    /// sha256 of the content last tried (loaded or refused), lowercase hex: the same content is not tried
    /// twice.
    tried: String,
    /// sha256 of what runs now.
    running: String,
}

/// `(size, modified)` of `path`, or `None` while it is missing (a build may delete it first).
fn stamp(path: &std::path::Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Watches every declared plug-in's component file until the task is dropped, printing one line (stderr)
/// per replacement or refusal.
pub async fn watch(runtime: Arc<Runtime>) {
    let running: std::collections::HashMap<String, String> = runtime
        .pipeline
        .assemblies()
        .into_iter()
        .map(|a| (a.name, a.sha256.unwrap_or_default()))
        .collect();
    let mut files: Vec<Watched> = runtime
        .registration
        .plugins
        .iter()
        .map(|p| {
            let running = running
                .get(&p.assembly.name)
                .cloned()
                .unwrap_or_else(|| p.file_sha256.clone());
            Watched {
                plugin: p.assembly.name.clone(),
                path: p.path.clone(),
                seen: stamp(&p.path),
                checked: stamp(&p.path),
                tried: running.clone(),
                running,
            }
        })
        .collect();
    for file in &files {
        eprintln!(
            "watching {} for plug-in \"{}\"",
            file.path.display(),
            file.plugin
        );
    }
    loop {
        tokio::time::sleep(POLL).await;
        for file in &mut files {
            let now = stamp(&file.path);
            if now.is_none() || now != file.seen {
                // Missing or still changing: look again next poll.
                file.seen = now;
                continue;
            }
            if now == file.checked {
                continue;
            }
            file.checked = now;
            if let Some(line) = check(&runtime, file).await {
                eprintln!("{line}");
            }
        }
    }
}

/// Reads a settled file and replaces the plug-in when its content is new; the line to print, if anything
/// happened.
async fn check(runtime: &Arc<Runtime>, file: &mut Watched) -> Option<String> {
    let bytes = match std::fs::read(&file.path) {
        Ok(bytes) => bytes,
        Err(e) => return Some(format!("watch: reading {}: {e}", file.path.display())),
    };
    let sha = sha256_hex(&bytes);
    if sha == file.tried {
        return None;
    }
    file.tried = sha.clone();
    // Compiling a component takes a while: off the async threads.
    let rt = Arc::clone(runtime);
    let name = file.plugin.clone();
    let replaced =
        tokio::task::spawn_blocking(move || rt.pipeline.replace_plugin(&name, &bytes)).await;
    Some(match replaced {
        Ok(Ok(_)) => {
            file.running = sha;
            format!(
                "watch: plug-in \"{}\" now runs sha256 {} ({})",
                file.plugin,
                file.running,
                file.path.display()
            )
        }
        Ok(Err(e)) => format!(
            "watch: {} refused, plug-in \"{}\" keeps running sha256 {}: {e}",
            file.path.display(),
            file.plugin,
            file.running
        ),
        Err(e) => format!("watch: replacing plug-in \"{}\": {e}", file.plugin),
    })
}
