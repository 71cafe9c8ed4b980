//! Compiling components, with an on-disk cache of precompiled artifacts.
//!
//! A precompiled artifact is native code: whoever can write one can run anything in this
//! process, and a component's signature says nothing about it. So each entry carries an
//! HMAC-SHA256, under a key only this host holds, over the component's SHA-256 and the
//! artifact. An entry is read into memory, checked, and only then deserialized; one that
//! fails the check is discarded and the component compiled again. Entries are keyed by
//! the component's SHA-256 and the engine's compatibility hash, and replaced by writing a
//! temporary file and renaming it.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::config::CacheKey;

/// Domain separation for the entry MAC.
const MAC_DOMAIN: &[u8] = b"payloom-plugin-cache-v1\n";
/// Bytes of the MAC that starts every entry.
const MAC_BYTES: usize = 32;

/// Where and under which key entries live.
#[derive(Debug, Clone, Copy)]
pub struct Cache<'a> {
    /// The directory.
    pub dir: &'a Path,
    /// The key entries are authenticated with.
    pub key: &'a CacheKey,
}

/// What became of a cache lookup, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The entry was authentic and loaded.
    Hit,
    /// No entry (or no cache): compiled.
    Miss,
    /// An entry failed its check or would not load: discarded and compiled again.
    Rejected,
}

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

fn mac(key: &CacheKey, component: &[u8], artifact: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes any key length");
    mac.update(MAC_DOMAIN);
    mac.update(&Sha256::digest(component));
    mac.update(artifact);
    mac
}

/// Compiles `component`, reusing or filling the cache.
pub fn compile(
    engine: &Engine,
    component: &[u8],
    cache: Option<Cache<'_>>,
) -> anyhow::Result<(Component, Lookup)> {
    let Some(cache) = cache else {
        return Ok((Component::new(engine, component)?, Lookup::Miss));
    };
    let path = entry_path(engine, component, cache.dir);
    let lookup = match std::fs::read(&path) {
        Ok(entry) => match load(engine, component, cache.key, &entry) {
            Ok(compiled) => return Ok((compiled, Lookup::Hit)),
            Err(err) => {
                tracing::warn!(path = %path.display(), "discarding cache entry: {err:#}");
                Lookup::Rejected
            }
        },
        Err(_) => Lookup::Miss,
    };
    let compiled = Component::new(engine, component)?;
    if let Err(err) = store(&compiled, component, cache, &path) {
        tracing::warn!(path = %path.display(), "could not write cache entry: {err:#}");
    }
    Ok((compiled, lookup))
}

fn load(
    engine: &Engine,
    component: &[u8],
    key: &CacheKey,
    entry: &[u8],
) -> anyhow::Result<Component> {
    anyhow::ensure!(entry.len() > MAC_BYTES, "entry is too short");
    let (tag, artifact) = entry.split_at(MAC_BYTES);
    mac(key, component, artifact)
        .verify_slice(tag)
        .map_err(|_| anyhow::anyhow!("entry is not authentic for this component"))?;
    // SAFETY: the bytes were read into memory, so they cannot change after this check,
    // and their MAC proves this host wrote them from `Component::serialize` of this very
    // component; the engine refuses artifacts of another version or configuration.
    #[allow(unsafe_code)]
    let compiled = unsafe { Component::deserialize(engine, artifact)? };
    Ok(compiled)
}

fn store(
    compiled: &Component,
    component: &[u8],
    cache: Cache<'_>,
    path: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(cache.dir)?;
    let artifact = compiled.serialize()?;
    let tag = mac(cache.key, component, &artifact).finalize().into_bytes();
    let mut entry = Vec::with_capacity(MAC_BYTES + artifact.len());
    entry.extend_from_slice(&tag);
    entry.extend_from_slice(&artifact);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, entry)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
