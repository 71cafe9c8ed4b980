//! Hot reload from a directory: `<name>.wasm` + `<name>.toml` (+ `<name>.sig`).
//!
//! A debounced watcher feeds the same install pipeline as the admin API. Each set of
//! file contents is tried once: a bad file is reported once, not on every file event,
//! and never replaces the serving version.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::{DebounceEventResult, new_debouncer};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc};

use crate::registry::{Installed, Registry};

/// Where a watched folder's components go: straight into this node's [`Registry`], or
/// through something that checks and records them first (the plugin registry service).
#[async_trait::async_trait]
pub trait Installer: Send + Sync {
    /// Checks and activates one component; any failure leaves what serves alone.
    async fn install(
        &self,
        component: &[u8],
        manifest: &str,
        signature: Option<&str>,
    ) -> anyhow::Result<Installed>;
}

#[async_trait::async_trait]
impl Installer for Registry {
    async fn install(
        &self,
        component: &[u8],
        manifest: &str,
        signature: Option<&str>,
    ) -> anyhow::Result<Installed> {
        Registry::install(self, component, manifest, signature).await
    }
}

/// What the watcher did with a plugin file set.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// A version went live.
    Installed(Installed),
    /// A file set was refused; the serving version (if any) keeps serving.
    Rejected {
        /// The component path.
        path: PathBuf,
        /// Why.
        error: String,
    },
}

/// Debounce window: editors and `cp` produce bursts of events for one change.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Events kept for slow subscribers.
const EVENTS_BUFFERED_MAX: usize = 256;

/// A running watcher; dropping it stops watching.
pub struct Watcher {
    events: broadcast::Sender<WatchEvent>,
    _debouncer: notify_debouncer_mini::Debouncer<notify::RecommendedWatcher>,
    _task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    /// Loads every plugin in `dir` through `installer`, then watches it. Must run inside a
    /// tokio runtime.
    pub async fn start(installer: Arc<dyn Installer>, dir: &Path) -> anyhow::Result<Self> {
        let (events, _) = broadcast::channel(EVENTS_BUFFERED_MAX);
        let mut state = DirState {
            installer,
            dir: dir.to_owned(),
            seen: HashMap::new(),
            events: events.clone(),
        };
        state.scan().await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut debouncer = new_debouncer(DEBOUNCE, move |result: DebounceEventResult| {
            if let Ok(changes) = result {
                let _ = tx.send(changes.into_iter().map(|c| c.path).collect::<Vec<_>>());
            }
        })?;
        debouncer
            .watcher()
            .watch(dir, notify::RecursiveMode::NonRecursive)?;
        let task = tokio::spawn(async move {
            while let Some(paths) = rx.recv().await {
                let mut stems: Vec<PathBuf> = paths.iter().filter_map(|p| plugin_stem(p)).collect();
                stems.sort();
                stems.dedup();
                for stem in stems {
                    state.consider(&stem).await;
                }
            }
        });
        Ok(Self {
            events,
            _debouncer: debouncer,
            _task: task,
        })
    }

    /// Subscribes to install and rejection events.
    pub fn subscribe(&self) -> broadcast::Receiver<WatchEvent> {
        self.events.subscribe()
    }
}

/// `dir/name` for `dir/name.{wasm,toml,sig}`.
fn plugin_stem(path: &Path) -> Option<PathBuf> {
    let ext = path.extension()?.to_str()?;
    matches!(ext, "wasm" | "toml" | "sig").then(|| path.with_extension(""))
}

struct DirState {
    installer: Arc<dyn Installer>,
    dir: PathBuf,
    /// Digest of the last file set tried per stem.
    seen: HashMap<PathBuf, [u8; 32]>,
    events: broadcast::Sender<WatchEvent>,
}

impl DirState {
    async fn scan(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut stems: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
            .filter_map(|p| plugin_stem(&p))
            .collect();
        stems.sort();
        for stem in stems {
            self.consider(&stem).await;
        }
    }

    async fn consider(&mut self, stem: &Path) {
        let wasm_path = stem.with_extension("wasm");
        let (Ok(component), Ok(manifest)) = (
            std::fs::read(&wasm_path),
            std::fs::read_to_string(stem.with_extension("toml")),
        ) else {
            return; // half a pair (still being copied, or removed): wait for the rest
        };
        if component.is_empty() || manifest.is_empty() {
            // A rewrite truncates before it writes: an empty file is one caught between
            // the two, and its next event brings the content.
            return;
        }
        let signature = std::fs::read_to_string(stem.with_extension("sig")).ok();
        let mut hasher = Sha256::new();
        hasher.update(&component);
        hasher.update(manifest.as_bytes());
        hasher.update(signature.as_deref().unwrap_or("").as_bytes());
        let digest: [u8; 32] = hasher.finalize().into();
        if self.seen.insert(stem.to_owned(), digest) == Some(digest) {
            return;
        }
        let event = match self
            .installer
            .install(&component, &manifest, signature.as_deref())
            .await
        {
            Ok(installed) => {
                tracing::info!(plugin = %installed.id, version = %installed.version, "plugin installed from {}", wasm_path.display());
                WatchEvent::Installed(installed)
            }
            Err(err) => {
                tracing::error!(path = %wasm_path.display(), "plugin rejected: {err:#}");
                WatchEvent::Rejected {
                    path: wasm_path,
                    error: format!("{err:#}"),
                }
            }
        };
        let _ = self.events.send(event);
    }
}
