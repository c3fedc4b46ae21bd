//! Results kept on disk across a stop: a render whose result the API had
//! not taken when the producer's stop gave up on its dispatches is written
//! to a directory (`<state_path>/producer-results`) instead of being lost
//! with the process, and delivered by the next start before anything else,
//! so that a task is not rendered again (nor, on its last attempt, marked
//! failed) because the API was away while the producer stopped.
//!
//! Each result is two files: `<uuid>.png`, the image, then
//! `<uuid>.json`, what to store with it (its update and the creation time
//! of the fractal it was rendered for); the second, written last, makes the
//! pair complete. Both are written aside and renamed into place, synced.

use std::path::{Path, PathBuf};

use faafo_common::api_client::{ApiClient, ApiError, is_fractal_uuid};
use faafo_common::files::{Durability, sweep_partial_files, write_whole_async};
use faafo_common::fractal::FractalUpdate;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// A result as kept on disk, beside its image.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeptResult {
    /// The task.
    uuid: String,
    /// The `created_at` of the fractal it was rendered for (empty: sent
    /// without the precondition).
    created_at: String,
    /// What the API stores with the image (`status=done`, the checksum...).
    update: FractalUpdate,
}

/// Why a result could not be kept.
#[derive(Debug, thiserror::Error)]
#[error("cannot keep the result of task {uuid} in {dir}: {reason}")]
pub struct KeepError {
    uuid: String,
    dir: PathBuf,
    reason: String,
}

/// The directory of results kept across a stop.
#[derive(Debug, Clone)]
pub struct KeptResults {
    dir: PathBuf,
}

/// What one pass over the kept results did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeptReport {
    /// Stored by the API (or found stored already).
    pub delivered: usize,
    /// Dropped: their fractal is gone, or the API refused them for good.
    pub dropped: usize,
    /// Still waiting for the API.
    pub waiting: usize,
}

impl KeptResults {
    /// Results kept in `dir` (created when the first is kept).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps the result of task `uuid`: its PNG and `update`, for the
    /// fractal created at `created_at`.
    pub async fn keep(
        &self,
        uuid: &str,
        created_at: &str,
        update: &FractalUpdate,
        png: Vec<u8>,
    ) -> Result<(), KeepError> {
        let fail = |reason: String| KeepError {
            uuid: uuid.to_string(),
            dir: self.dir.clone(),
            reason,
        };
        // A uuid names the files: only one of the API's form (checked by
        // the dispatch already; a path is never made of anything else).
        if !is_fractal_uuid(uuid) {
            return Err(fail("not a fractal uuid".into()));
        }
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || std::fs::create_dir_all(&dir))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(e.to_string()))?;
        let kept = KeptResult {
            uuid: uuid.to_string(),
            created_at: created_at.to_string(),
            update: update.clone(),
        };
        let json = serde_json::to_vec(&kept).map_err(|e| fail(e.to_string()))?;
        write_whole_async(self.png_path(uuid), png, Durability::Synced)
            .await
            .map_err(|e| fail(e.to_string()))?;
        write_whole_async(self.json_path(uuid), json, Durability::Synced)
            .await
            .map_err(|e| fail(e.to_string()))
    }

    /// Offers every kept result to the API once: a result stored (or one
    /// the API had already: the same image is a no-op) or refused for good
    /// (its fractal deleted, or created again: 404, 412; a conflict or a
    /// bad result: 409, 413, 422) is removed; one the API cannot take now
    /// (unreachable, 5xx, this producer not let in) stays for the next
    /// pass, and so do the ones after it (the API is away for them too:
    /// a pass takes one request's time, not one for each).
    pub async fn deliver(&self, api: &ApiClient) -> KeptReport {
        let mut report = KeptReport::default();
        let dir = self.dir.clone();
        let names = tokio::task::spawn_blocking(move || {
            sweep_partial_files(&dir);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return Vec::new();
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|name| name.strip_suffix(".json").map(str::to_string))
                .filter(|uuid| is_fractal_uuid(uuid))
                .collect();
            names.sort();
            names
        })
        .await
        .unwrap_or_default();
        let total = names.len();
        for (index, uuid) in names.into_iter().enumerate() {
            let (json, png) = (self.json_path(&uuid), self.png_path(&uuid));
            let read = tokio::task::spawn_blocking(move || {
                let json = std::fs::read(&json)?;
                let png = std::fs::read(&png)?;
                Ok::<_, std::io::Error>((json, png))
            })
            .await;
            let (json, png) = match read {
                Ok(Ok(read)) => read,
                Ok(Err(e)) => {
                    warn!(
                        "the result of task {uuid} kept in {}: unreadable ({e}): dropped",
                        self.dir.display()
                    );
                    self.remove(&uuid).await;
                    report.dropped += 1;
                    continue;
                }
                Err(_) => {
                    report.waiting += 1;
                    continue;
                }
            };
            let kept = match serde_json::from_slice::<KeptResult>(&json) {
                Ok(kept) if kept.uuid == uuid => kept,
                Ok(_) | Err(_) => {
                    warn!(
                        "the result of task {uuid} kept in {}: unreadable: dropped",
                        self.dir.display()
                    );
                    self.remove(&uuid).await;
                    report.dropped += 1;
                    continue;
                }
            };
            let stored = if kept.created_at.is_empty() {
                api.store_result(&uuid, png, &kept.update).await
            } else {
                api.store_result_if_created_at(&uuid, &kept.created_at, png, &kept.update)
                    .await
            };
            match stored {
                Ok(_) => {
                    info!("task {uuid}: its result, kept across a stop, is stored");
                    self.remove(&uuid).await;
                    report.delivered += 1;
                }
                Err(e) if waits(&e) => {
                    info!("results kept by an earlier stop wait for the API: {e}");
                    report.waiting += total - index;
                    break;
                }
                Err(e) => {
                    info!("task {uuid}: its result, kept across a stop, is dropped: {e}");
                    self.remove(&uuid).await;
                    report.dropped += 1;
                }
            }
        }
        report
    }

    async fn remove(&self, uuid: &str) {
        let (json, png) = (self.json_path(uuid), self.png_path(uuid));
        let _ = tokio::task::spawn_blocking(move || {
            // The JSON first: a PNG left alone is never read, and is
            // replaced by the next result of that task.
            for path in [json, png] {
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    warn!("cannot remove {}: {e}", path.display());
                }
            }
        })
        .await;
    }

    fn json_path(&self, uuid: &str) -> PathBuf {
        self.dir.join(format!("{uuid}.json"))
    }

    fn png_path(&self, uuid: &str) -> PathBuf {
        self.dir.join(format!("{uuid}.png"))
    }
}

/// Whether a kept result waits for the API rather than being dropped: the
/// API away or failing (as a dispatch's delivery retries), or not letting
/// this producer in (an operator's fix to come).
fn waits(e: &ApiError) -> bool {
    e.is_transient() || e.is_access_refused()
}
