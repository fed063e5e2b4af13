//! Keeps the served catalog in step with its files: reloads on demand
//! (SIGHUP, API) and when a file changes, appears or goes away on disk
//! (catalog entries may be directories and glob patterns). Change detection
//! lists the entries and polls each file's metadata (following symlinks)
//! twice a second instead of using inotify: Kubernetes ConfigMaps and many editors replace files through
//! symlink swaps and renames that inotify watches lose track of, and a stat
//! of a few files is nothing. An invalid catalog is refused with its errors
//! logged and the running one stays; agents only hear about valid changes.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use authpulse_proto::catalog::{CatalogErrors, expand_sources, load_files};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::Store;
use crate::{CatalogSnapshot, canonical, warn_retention};

pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

pub struct CatalogReloader {
    pub files: Vec<PathBuf>,
    pub store: Store,
    pub raw_retention: Duration,
    pub catalog_tx: watch::Sender<Arc<CatalogSnapshot>>,
    /// Serializes reloads so versions stay ordered.
    lock: tokio::sync::Mutex<()>,
    /// Every applied or refused reload is recorded, with a diff summary.
    pub audit: crate::audit::AuditLog,
}

/// What the catalog's files looked like at the last check: the configured
/// entries expanded (directories and globs listed again, so a file that
/// appears or goes away is a change), and each file's (modified, length),
/// or None if unreadable. An entry that can't be expanded is its error.
pub type Signature = Result<Vec<(PathBuf, Option<(SystemTime, u64)>)>, String>;

pub fn signature(sources: &[PathBuf]) -> Signature {
    let files = expand_sources(sources).map_err(|e| e.to_string())?;
    Ok(files
        .into_iter()
        .map(|f| {
            let stat = std::fs::metadata(&f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            (f, stat)
        })
        .collect())
}

impl CatalogReloader {
    pub fn new(
        files: Vec<PathBuf>,
        store: Store,
        raw_retention: Duration,
        catalog_tx: watch::Sender<Arc<CatalogSnapshot>>,
    ) -> CatalogReloader {
        CatalogReloader {
            files,
            store,
            raw_retention,
            catalog_tx,
            lock: tokio::sync::Mutex::new(()),
            audit: crate::audit::AuditLog::default(),
        }
    }

    /// Re-reads the files; see [`crate::Running::reload_catalog`].
    pub async fn reload(&self) -> Result<(), CatalogErrors> {
        let _serial = self.lock.lock().await;
        let catalog = match load_files(&self.files) {
            Ok(c) => c,
            Err(errs) => {
                metrics::counter!("authpulse_coordinator_catalog_reloads_total", "result" => "invalid")
                    .increment(1);
                tracing::error!(problems = errs.0.len(), errors = %errs, "catalog reload refused; keeping the running catalog");
                self.audit.append(
                    "catalog_reload",
                    serde_json::json!({
                        "result": "refused",
                        "problems": errs.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                    }),
                );
                return Err(errs);
            }
        };
        let current = self.catalog_tx.borrow().clone();
        let version = match self.store.catalog_version(&canonical(&catalog)).await {
            Ok(v) => v,
            Err(e) => {
                // Still apply the catalog; the version just isn't persisted.
                tracing::warn!(error = %e, "cannot persist the catalog version");
                current.version + 1
            }
        };
        if version == current.version {
            tracing::info!(version, "catalog reloaded: unchanged");
            return Ok(());
        }
        warn_retention(&catalog, self.raw_retention);
        if let Err(e) = crate::slo::sync_store(&self.store, &catalog).await {
            tracing::warn!(error = %e, "cannot update the SLO minute aggregates' thresholds");
        }
        metrics::counter!("authpulse_coordinator_catalog_reloads_total", "result" => "applied")
            .increment(1);
        metrics::gauge!("authpulse_coordinator_catalog_version").set(version as f64);
        tracing::info!(
            version,
            previous = current.version,
            probes = catalog.probes.len(),
            slos = catalog.slos.len(),
            "catalog reloaded; pushing assignments"
        );
        self.audit.append(
            "catalog_reload",
            serde_json::json!({
                "result": "applied",
                "version": version,
                "previous": current.version,
                "diff": crate::audit::catalog_diff(&current.catalog, &catalog),
            }),
        );
        self.catalog_tx.send_replace(Arc::new(CatalogSnapshot {
            catalog: Arc::new(catalog),
            version,
            loaded: current.loaded,
        }));
        Ok(())
    }

    /// Polls the files until `stop`; reloads when they differ from `loaded`,
    /// the signature taken just before the running catalog was read (taken
    /// here instead, a change between that read and this task's first poll
    /// would go unnoticed until the next one).
    pub async fn watch(self: Arc<Self>, loaded: Signature, stop: CancellationToken) {
        if self.files.is_empty() {
            return;
        }
        let mut last = loaded;
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = signature(&self.files);
            if now != last {
                // Remember it even if the reload fails, so a broken file is
                // reported once, not twice a second.
                last = now;
                tracing::info!("catalog files changed on disk; reloading");
                let _ = self.reload().await;
            }
        }
    }
}
