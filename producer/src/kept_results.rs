//! Results kept on disk across a stop: a render whose result the API had
//! not taken when the producer's stop gave up on its dispatches is written
//! to a directory (`<state_path>/producer-results`) instead of being lost
//! with the process, and delivered by the next start, its task claimed
//! meanwhile (not dispatched again), so that a task is not rendered again
//! (nor, on its last attempt, marked failed) because the API was away
//! while the producer stopped.
//!
//! Each result is two files: `<uuid>.png`, the image, then
//! `<uuid>.json`, what to store with it (its update, the creation time of
//! the fractal it was rendered for, and the API it was for); the second,
//! written last, makes the pair complete. Both are written aside and
//! renamed into place, synced.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use faafo_common::api_client::{ApiClient, ApiError, is_fractal_uuid};
use faafo_common::files::{ABANDONED_AFTER, Durability, sweep_partial_files, write_whole_async};
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
    /// The API hosts of the producer that kept it: another deployment's
    /// producer sharing the directory leaves it alone.
    #[serde(default)]
    endpoints: Vec<String>,
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

/// What became of a kept result offered to the API.
#[derive(Debug)]
pub enum KeptOutcome {
    /// Stored (or found stored already: the same image is a no-op).
    Delivered,
    /// Dropped: its fractal is gone or created again (404, 412), the API
    /// refused it for good (409, 413, 422), or its files are unreadable.
    Dropped,
    /// Kept for other API hosts (another deployment's producer sharing the
    /// directory), whose fractal this API does not have: left alone.
    Elsewhere,
    /// The API cannot take it now (unreachable, 5xx, this producer not
    /// let in): kept for a later try, for this reason.
    Waiting(String),
}

/// The directory of results kept across a stop.
#[derive(Debug, Clone)]
pub struct KeptResults {
    dir: PathBuf,
    /// The API hosts of this producer.
    endpoints: Vec<String>,
}

impl KeptResults {
    /// Results kept in `dir` (created when the first is kept) by a
    /// producer of the API at `endpoints`.
    pub fn new(dir: PathBuf, endpoints: &[String]) -> Self {
        Self {
            dir,
            endpoints: endpoints.to_vec(),
        }
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
        png: Arc<[u8]>,
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
            endpoints: self.endpoints.clone(),
            update: update.clone(),
        };
        let json = serde_json::to_vec(&kept).map_err(|e| fail(e.to_string()))?;
        write_whole_async(self.png_path(uuid), png, Durability::Synced)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if let Err(e) = write_whole_async(self.json_path(uuid), json, Durability::Synced).await {
            // A PNG alone is never read: not left behind.
            self.remove(uuid).await;
            return Err(fail(e.to_string()));
        }
        Ok(())
    }

    /// The tasks whose results are kept, in uuid order. What interrupted
    /// writes left is swept first: files written aside, and PNGs without
    /// their JSON, once [`ABANDONED_AFTER`] old.
    pub async fn list(&self) -> Vec<String> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            sweep_partial_files(&dir);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return Vec::new();
            };
            let names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            let has = |name: &str| names.iter().any(|n| n == name);
            for name in &names {
                if let Some(uuid) = name.strip_suffix(".png")
                    && is_fractal_uuid(uuid)
                    && !has(&format!("{uuid}.json"))
                {
                    let path = dir.join(name);
                    let old = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age >= ABANDONED_AFTER);
                    if old {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            let mut uuids: Vec<String> = names
                .iter()
                .filter_map(|name| name.strip_suffix(".json"))
                .filter(|uuid| is_fractal_uuid(uuid))
                .map(str::to_string)
                .collect();
            uuids.sort();
            uuids
        })
        .await
        .unwrap_or_default()
    }

    /// Offers the result kept for task `uuid` to the API once, and
    /// removes it unless it waits (see [`KeptOutcome`]).
    pub async fn deliver(&self, api: &ApiClient, uuid: &str) -> KeptOutcome {
        let (json, png) = (self.json_path(uuid), self.png_path(uuid));
        let read = tokio::task::spawn_blocking(move || {
            let json = std::fs::read(&json)?;
            let png = std::fs::read(&png)?;
            Ok::<_, std::io::Error>((json, png))
        })
        .await;
        let read = match read {
            Ok(read) => read,
            // The blocking pool is gone (the runtime stops): later.
            Err(e) => return KeptOutcome::Waiting(e.to_string()),
        };
        let kept = read.map_err(|e| e.to_string()).and_then(|(json, png)| {
            match serde_json::from_slice::<KeptResult>(&json) {
                Ok(kept) if kept.uuid == uuid => Ok((kept, png)),
                Ok(_) => Err("it names another task".to_string()),
                Err(e) => Err(e.to_string()),
            }
        });
        let (kept, png) = match kept {
            Ok(kept) => kept,
            Err(reason) => {
                warn!(
                    "the result of task {uuid} kept in {}: unreadable ({reason}): dropped",
                    self.dir.display()
                );
                self.remove(uuid).await;
                return KeptOutcome::Dropped;
            }
        };
        // Kept by a producer of other API hosts: another deployment's
        // sharing the directory, or this one's API at a new address. Offered
        // all the same (the creation time it names keeps it off any other
        // fractal); a fractal this API does not have is left alone.
        let elsewhere = !kept.endpoints.is_empty()
            && !kept.endpoints.iter().any(|e| self.endpoints.contains(e));
        let stored = if kept.created_at.is_empty() {
            api.store_result(uuid, png, &kept.update).await
        } else {
            api.store_result_if_created_at(uuid, &kept.created_at, png, &kept.update)
                .await
        };
        match stored {
            Ok(_) => {
                info!("task {uuid}: its result, kept across a stop, is stored");
                self.remove(uuid).await;
                KeptOutcome::Delivered
            }
            Err(e) if waits(&e) => KeptOutcome::Waiting(e.to_string()),
            Err(e) if elsewhere && (e.is_not_found() || e.is_stale()) => KeptOutcome::Elsewhere,
            Err(e) => {
                info!("task {uuid}: its result, kept across a stop, is dropped: {e}");
                self.remove(uuid).await;
                KeptOutcome::Dropped
            }
        }
    }

    async fn remove(&self, uuid: &str) {
        let (json, png) = (self.json_path(uuid), self.png_path(uuid));
        let _ = tokio::task::spawn_blocking(move || {
            // The JSON first: a PNG left alone is never read, and is swept.
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
