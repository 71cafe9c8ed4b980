//! Compiling components, with an on-disk cache of precompiled artifacts.
//!
//! Entries are keyed by the component's SHA-256 and the engine's compatibility hash, are
//! written only by this host, and are replaced by writing a temporary file and renaming
//! it (a mapped artifact must never change under a running instance).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Path of the cache entry for `component` under this engine.
pub fn entry_path(engine: &Engine, component: &[u8], dir: &Path) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    dir.join(format!(
        "{}-{:016x}.cwasm",
        hex::encode(Sha256::digest(component)),
        hasher.finish()
    ))
}

/// Compiles `component`, reusing or filling the cache in `dir`.
pub fn compile(engine: &Engine, component: &[u8], dir: Option<&Path>) -> anyhow::Result<Component> {
    let Some(dir) = dir else {
        return Ok(Component::new(engine, component)?);
    };
    let path = entry_path(engine, component, dir);
    if path.exists() {
        // SAFETY: files in the cache directory are written only by `store` below, from
        // `Component::serialize` of this engine configuration (the file name carries the
        // compatibility hash), and are never modified in place.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(compiled) => return Ok(compiled),
            Err(err) => {
                tracing::warn!(path = %path.display(), "ignoring unusable cache entry: {err:#}")
            }
        }
    }
    let compiled = Component::new(engine, component)?;
    if let Err(err) = store(&compiled, dir, &path) {
        tracing::warn!(path = %path.display(), "could not write cache entry: {err:#}");
    }
    Ok(compiled)
}

fn store(compiled: &Component, dir: &Path, path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = compiled.serialize()?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
