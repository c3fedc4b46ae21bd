//! Where PNGs are kept: in the database (`fractal_image`) or as files in a
//! directory. Either way the image and the record's flag change together:
//! in one transaction, or file first (written aside and renamed into place,
//! named after its checksum so two uploads never overwrite each other's
//! file) and record second.

use std::path::{Path, PathBuf};

use axum::body::Bytes;
use faafo_common::files::{ABANDONED_AFTER, Durability, sweep_partial_files, write_whole_async};

use crate::db::{Database, DbError};
use crate::domain::{Checksum, FractalId, FractalRecord, PngImage};
use crate::settings::ImageStoreKind;

/// Why an image could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum ImageStoreError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The image directory failed.
    #[error("image file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A done fractal's image is missing.
    #[error("the image of fractal {0} is missing from the store")]
    Missing(FractalId),
}

/// The configured image store.
#[derive(Debug, Clone)]
pub enum ImageStore {
    /// Images in the database.
    Database,
    /// Images as `<uuid>.<sha256>.png` files in a directory.
    Filesystem(PathBuf),
}

impl ImageStore {
    /// Opens the store, creating the directory of a filesystem store.
    pub fn open(kind: &ImageStoreKind) -> Result<Self, ImageStoreError> {
        match kind {
            ImageStoreKind::Database => Ok(Self::Database),
            ImageStoreKind::Filesystem(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| ImageStoreError::Io {
                    path: dir.clone(),
                    source,
                })?;
                sweep_partial_files(dir);
                Ok(Self::Filesystem(dir.clone()))
            }
        }
    }

    /// Stores `png` and replaces `before` by `after` (compare and swap on
    /// the revision); `Ok(false)` if the record changed meanwhile.
    pub async fn store(
        &self,
        db: &Database,
        before: &FractalRecord,
        after: &FractalRecord,
        png: &PngImage,
    ) -> Result<bool, ImageStoreError> {
        match self {
            Self::Database => Ok(db
                .replace_with_image(before, after, Some(png.bytes()))
                .await?),
            Self::Filesystem(dir) => {
                write_file(&file_path(dir, before.uuid, png.checksum()), png).await?;
                Ok(db.replace(before, after).await?)
            }
        }
    }

    /// Writes back the file of `record`'s image, `png`, if it is missing
    /// (filesystem store; the database keeps its images itself).
    pub async fn restore(
        &self,
        db: &Database,
        record: &FractalRecord,
        png: &PngImage,
    ) -> Result<(), ImageStoreError> {
        let Self::Filesystem(dir) = self else {
            return Ok(());
        };
        if !record.has_image || record.checksum.as_ref() != Some(png.checksum()) {
            return Ok(());
        }
        let path = file_path(dir, record.uuid, png.checksum());
        if tokio::fs::try_exists(&path).await.unwrap_or(true) {
            return Ok(());
        }
        tracing::warn!(
            "the image file of fractal {} was missing: written again from this upload",
            record.uuid
        );
        write_file(&path, png).await?;
        // Deleted meanwhile (its file removed before this one was written):
        // not left behind.
        if matches!(db.get(record.uuid).await, Ok(None)) {
            self.discard(record.uuid, png.checksum()).await;
        }
        Ok(())
    }

    /// Removes the file of an image that lost a race (a filesystem store
    /// keeps nothing else aside).
    pub async fn discard(&self, id: FractalId, checksum: &Checksum) {
        if let Self::Filesystem(dir) = self {
            let path = file_path(dir, id, checksum);
            if let Err(e) = tokio::fs::remove_file(&path).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!("cannot remove {}: {e}", path.display());
            }
        }
    }

    /// The PNG of a fractal that has one.
    pub async fn load(
        &self,
        db: &Database,
        record: &FractalRecord,
    ) -> Result<Bytes, ImageStoreError> {
        let missing = || ImageStoreError::Missing(record.uuid);
        let checksum = record.checksum.as_ref().ok_or_else(missing)?;
        match self {
            Self::Database => db
                .image(record.uuid, checksum)
                .await?
                .map(Bytes::from)
                .ok_or_else(missing),
            Self::Filesystem(dir) => {
                let path = file_path(dir, record.uuid, checksum);
                match tokio::fs::read(&path).await {
                    Ok(data) => Ok(Bytes::from(data)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing()),
                    Err(source) => Err(ImageStoreError::Io { path, source }),
                }
            }
        }
    }

    /// Removes the image files that no fractal records (left by a `DELETE`
    /// that raced the upload of a fractal's first image, or by an upload
    /// whose record could not be written) and that are older than
    /// [`ABANDONED_AFTER`] (a younger one may be an upload in progress, here
    /// or on another API server sharing the directory). Run in the
    /// background by [`Self::spawn_orphan_sweeper`]; stops at the first
    /// error of the database. Returns
    /// how many it removed.
    pub async fn sweep_orphans(&self, db: &Database) -> usize {
        let Self::Filesystem(dir) = self else {
            return 0;
        };
        let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
            return 0;
        };
        let mut removed = 0;
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name();
            let Some((id, checksum)) = name.to_str().and_then(image_file_name) else {
                continue;
            };
            let old = entry
                .metadata()
                .await
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| at.elapsed().ok())
                .is_some_and(|age| age >= ABANDONED_AFTER);
            if !old {
                continue;
            }
            let recorded = match db.get(id).await {
                Ok(record) => record.is_some_and(|r| r.has_image && r.checksum == Some(checksum)),
                Err(e) => {
                    tracing::debug!("image files not swept: {e}");
                    return removed;
                }
            };
            if !recorded && tokio::fs::remove_file(entry.path()).await.is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Sweeps the image files no fractal records ([`Self::sweep_orphans`])
    /// now and then every `every` (the API: [`ORPHAN_SWEEP_INTERVAL`]), in a
    /// task of its own the API aborts when it stops, so that a file a race
    /// left behind goes within twenty minutes instead of waiting for the
    /// next start. `None` for images in the database, which leave no such
    /// files.
    pub fn spawn_orphan_sweeper(
        &self,
        db: Database,
        every: std::time::Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let Self::Filesystem(dir) = self else {
            return None;
        };
        let (images, dir) = (self.clone(), dir.clone());
        Some(tokio::spawn(async move {
            loop {
                let removed = images.sweep_orphans(&db).await;
                if removed > 0 {
                    tracing::info!(
                        "removed {removed} image file(s) of {} that no fractal records",
                        dir.display()
                    );
                }
                tokio::time::sleep(every).await;
            }
        }))
    }

    /// Removes the image of a deleted fractal.
    pub async fn remove(&self, record: &FractalRecord) {
        if record.has_image
            && let Some(checksum) = &record.checksum
        {
            self.discard(record.uuid, checksum).await;
        }
    }
}

/// How often a filesystem store looks for image files no fractal records.
pub const ORPHAN_SWEEP_INTERVAL: std::time::Duration = ABANDONED_AFTER;

/// Writes `png` whole to `path` (aside, synced, renamed into place).
async fn write_file(path: &Path, png: &PngImage) -> Result<(), ImageStoreError> {
    write_whole_async(path.to_path_buf(), png.bytes().clone(), Durability::Synced)
        .await
        .map_err(|e| ImageStoreError::Io {
            path: e.path,
            source: e.source,
        })
}

/// The fractal and checksum an image file's name (`<uuid>.<sha256>.png`)
/// says, or `None` for another file.
fn image_file_name(name: &str) -> Option<(FractalId, Checksum)> {
    let (id, checksum) = name.strip_suffix(".png")?.split_once('.')?;
    Some((FractalId::parse(id).ok()?, Checksum::parse(checksum).ok()?))
}

fn file_path(dir: &Path, id: FractalId, checksum: &Checksum) -> PathBuf {
    dir.join(format!("{id}.{checksum}.png"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[tokio::test]
    async fn image_files_nobody_records_are_swept_while_the_api_runs() {
        let state = tempfile::tempdir().expect("a directory");
        let url = format!("sqlite://{}", state.path().join("faafo.db").display());
        let db = Database::connect(&url, &Default::default())
            .await
            .expect("the database");
        let dir = state.path().join("images");
        let images = ImageStore::open(&ImageStoreKind::Filesystem(dir.clone())).expect("the store");
        let sweeper = images
            .spawn_orphan_sweeper(db.clone(), Duration::from_millis(20))
            .expect("a filesystem store sweeps");
        // Left behind after the first sweep, while the API runs.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let orphan = dir.join(format!("{}.{}.png", uuid::Uuid::new_v4(), "cd".repeat(32)));
        std::fs::write(&orphan, b"an image nobody records").expect("an orphan");
        std::fs::File::options()
            .write(true)
            .open(&orphan)
            .and_then(|f| f.set_modified(SystemTime::now() - ABANDONED_AFTER))
            .expect("ten minutes old");
        let young = dir.join(format!("{}.{}.png", uuid::Uuid::new_v4(), "ef".repeat(32)));
        std::fs::write(&young, b"an upload in progress").expect("a young file");
        let mut waited = Duration::ZERO;
        while orphan.exists() && waited < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += Duration::from_millis(20);
        }
        assert!(
            !orphan.exists(),
            "swept by a later round, not only at start"
        );
        assert!(young.exists(), "a young file may be an upload in progress");
        sweeper.abort();
        assert!(
            ImageStore::Database
                .spawn_orphan_sweeper(db.clone(), Duration::from_millis(20))
                .is_none(),
            "images in the database leave no files"
        );
        db.close().await;
    }
}
