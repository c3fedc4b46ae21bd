//! Whole-file writes: a file is written aside, in its own directory, then
//! renamed into place, so a reader (the API serving an image, a user opening
//! what `faafo get` saved) never sees half of it, and a failed write (a full
//! disk, a killed process) leaves the old file, or none, and never a
//! truncated one ([`Durability::Synced`]: even across a power cut).
//!
//! The API's filesystem image store, the worker's copy of its PNGs and
//! `faafo get` all write this way. What a crash left aside is recognisable
//! ([`is_partial_file`]) and removed at start by [`sweep_partial_files`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How far a write goes before [`write_whole`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The file and its directory entry are on disk when the write returns:
    /// for a file something durable (a database record) will point at.
    Synced,
    /// The kernel has the file: a killed process never leaves half of it,
    /// but a power cut soon after may leave it empty or missing. For
    /// copies that can be made again.
    Buffered,
}

/// Why a whole-file write failed, with the path it concerned.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct WriteError {
    /// The file that was being written (or its directory, when syncing it).
    pub path: PathBuf,
    /// What the operating system said.
    #[source]
    pub source: std::io::Error,
}

/// Writes `bytes` to `path` whole: into a hidden `.faafo-<random>.tmp` file
/// in the same directory, then renamed over `path`. On error nothing is left
/// aside. A `path` that exists and is not a regular file (`/dev/stdout`, a
/// named pipe) cannot be replaced: it is written in place. A symbolic link
/// to a regular file is replaced by the file, not followed: a link planted
/// in a service's directory (a worker's shared copy directory) must not
/// make it write elsewhere. A command writing where a user asked follows
/// links itself first ([`through_links`]).
/// Blocking: from async code, [`write_whole_async`].
pub fn write_whole(path: &Path, bytes: &[u8], durability: Durability) -> Result<(), WriteError> {
    // The path itself, not what a link there names: a link to a device or
    // a named pipe is replaced too.
    let existing = std::fs::symlink_metadata(path).ok();
    if existing.as_ref().is_some_and(|m| {
        let kind = m.file_type();
        !kind.is_file() && !kind.is_dir() && !kind.is_symlink()
    }) {
        return std::fs::write(path, bytes).map_err(|source| WriteError {
            path: path.to_path_buf(),
            source,
        });
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // Errors name the file asked for (the name written aside means nothing
    // to whoever reads the message), with the system's reason alone
    // (tempfile adds the aside name to it).
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| WriteError {
            path,
            source: system_reason(source),
        }
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(PARTIAL_PREFIX).suffix(PARTIAL_SUFFIX);
    // As any new file: readable by others unless the umask says otherwise
    // (tempfile's default, 0600, would hide a served image from a web
    // server, or a saved PNG from another user).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    // Dropped on error, the temporary file is removed. A directory that
    // takes no new file is named as the one that cannot be written (the
    // file itself may be writable).
    let mut file = builder.tempfile_in(dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            at(dir)(e)
        } else {
            at(path)(e)
        }
    })?;
    // A file replaced keeps its mode (a private one stays private), as
    // one written over in place would.
    if let Some(existing) = existing.filter(std::fs::Metadata::is_file) {
        file.as_file()
            .set_permissions(existing.permissions())
            .map_err(at(path))?;
    }
    file.write_all(bytes).map_err(at(path))?;
    if durability == Durability::Synced {
        file.as_file().sync_data().map_err(at(path))?;
    }
    file.persist(path).map_err(|e| at(path)(e.error))?;
    if durability == Durability::Synced {
        match std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            Ok(()) => {}
            // The file is in place. A directory one may write to but not
            // read (a drop box, mode 0333) cannot be opened to sync, and
            // some file systems do not sync directories: nothing more can
            // be done, and the write is not a failure.
            Err(e)
                if e.kind() == std::io::ErrorKind::PermissionDenied
                    || e.kind() == std::io::ErrorKind::InvalidInput => {}
            Err(e) => return Err(at(dir)(e)),
        }
    }
    Ok(())
}

/// The file `path` names, through symbolic links: the path itself when it
/// is not a link, the link's target otherwise (a dangling link's too: the
/// file is made where it points). What `curl -o` writes to: `faafo get`
/// replaces the file a link names and keeps the link (renamed over, the
/// link would become a file, and `/dev/stdout` a file in `/dev`). Not for
/// a service's own directories ([`write_whole`]).
pub fn through_links(path: &Path) -> PathBuf {
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return path.to_path_buf();
    }
    if let Ok(target) = std::fs::canonicalize(path) {
        return target;
    }
    // Dangling (or a loop, which the write then reports): one step, from
    // the link's own directory.
    match std::fs::read_link(path) {
        Ok(next) => match path.parent() {
            Some(dir) if next.is_relative() => dir.join(next),
            _ => next,
        },
        Err(_) => path.to_path_buf(),
    }
}

/// [`write_whole`] from async code: on a blocking thread, so that a slow
/// disk (or a sync) does not hold up the runtime.
pub async fn write_whole_async(
    path: PathBuf,
    bytes: impl AsRef<[u8]> + Send + 'static,
    durability: Durability,
) -> Result<(), WriteError> {
    let at = path.clone();
    tokio::task::spawn_blocking(move || write_whole(&path, bytes.as_ref(), durability))
        .await
        .unwrap_or_else(|join| {
            Err(WriteError {
                path: at,
                source: std::io::Error::other(join.to_string()),
            })
        })
}

/// `e` without the name of the file written aside, which tempfile appends
/// to the system's message (` at path "..."`) and keeps no other way.
fn system_reason(e: std::io::Error) -> std::io::Error {
    if e.raw_os_error().is_some() {
        return e;
    }
    let text = e.to_string();
    match text.rfind(" at path \"") {
        Some(end) => std::io::Error::new(e.kind(), &text[..end]),
        None => e,
    }
}

/// Hidden, and faafo's: a sweep of a directory the user chose (a worker's
/// `filesystem_store_datadir` may be shared) removes nobody else's files.
const PARTIAL_PREFIX: &str = ".faafo-";
const PARTIAL_SUFFIX: &str = ".tmp";

/// Whether a file name is one [`write_whole`] writes aside.
pub fn is_partial_file(name: &str) -> bool {
    name.len() > PARTIAL_PREFIX.len() + PARTIAL_SUFFIX.len()
        && name.starts_with(PARTIAL_PREFIX)
        && name.ends_with(PARTIAL_SUFFIX)
}

/// How old a file written aside must be for [`sweep_partial_files`] to take
/// it as abandoned: a write takes milliseconds, and a program sharing the
/// directory (two workers on one host, API servers on a shared volume) may
/// be writing one right now.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(600);

/// Removes what writes cut short (a crash, a kill) left aside in `dir` at
/// least [`ABANDONED_AFTER`] ago, and returns how many files it removed.
/// Files it cannot remove are logged and left.
pub fn sweep_partial_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let abandoned = |meta: &std::fs::Metadata| {
        meta.is_file()
            && meta
                .modified()
                .ok()
                .and_then(|at| at.elapsed().ok())
                .is_some_and(|age| age >= ABANDONED_AFTER)
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_str().is_some_and(is_partial_file)
            || !entry.metadata().is_ok_and(|m| abandoned(&m))
        {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!("cannot remove {}: {e}", entry.path().display()),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("the directory")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_whole_write_replaces_the_file_and_leaves_nothing_aside() {
        for durability in [Durability::Synced, Durability::Buffered] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("a.png");
            std::fs::write(&path, b"old").expect("set up");
            write_whole(&path, b"new content", durability).expect("set up");
            assert_eq!(std::fs::read(&path).expect("set up"), b"new content");
            assert_eq!(names(dir.path()), ["a.png"]);
        }
    }

    #[tokio::test]
    async fn the_async_write_is_the_same_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.png");
        write_whole_async(path.clone(), b"content".to_vec(), Durability::Synced)
            .await
            .expect("written");
        assert_eq!(std::fs::read(&path).expect("read"), b"content");
        assert_eq!(names(dir.path()), ["a.png"]);
        let missing = dir.path().join("missing").join("b.png");
        let err = write_whole_async(missing.clone(), Vec::new(), Durability::Buffered)
            .await
            .expect_err("no such directory");
        assert_eq!(err.path, missing);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_nothing_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory cannot be replaced by a file: the rename fails after
        // the content was written aside.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).expect("set up");
        std::fs::write(path.join("inside"), b"x").expect("set up");
        let err = write_whole(&path, b"content", Durability::Synced).expect_err("the write fails");
        assert_eq!(err.path, path);
        assert!(err.to_string().starts_with("cannot write "), "{err}");
        assert!(path.is_dir());
        assert_eq!(names(dir.path()), ["taken"]);
    }

    #[test]
    fn an_error_names_the_file_asked_for_and_the_reason_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("missing").join("a.png");
        let err = write_whole(&target, b"x", Durability::Buffered).expect_err("the write fails");
        assert_eq!(err.path, target);
        assert_eq!(
            err.to_string(),
            format!(
                "cannot write {}: No such file or directory (os error 2)",
                target.display()
            )
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_target_that_is_not_a_regular_file_is_written_in_place() {
        // A character device, as /dev/stdout's target is (followed by a
        // command, as `faafo get` does): written in place, the link stays.
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("out");
        std::os::unix::fs::symlink("/dev/null", &link).expect("a link");
        write_whole(&through_links(&link), b"x", Durability::Synced).expect("written");
        let kind = std::fs::symlink_metadata(&link)
            .expect("metadata")
            .file_type();
        assert!(kind.is_symlink());
        assert_eq!(names(dir.path()), ["out"]);
        // Not followed (a service's own directory): the link is replaced,
        // nothing is written where it points.
        write_whole(&link, b"x", Durability::Synced).expect("written");
        assert!(
            std::fs::symlink_metadata(&link)
                .expect("metadata")
                .is_file()
        );
    }

    /// A link to a file, or to where a file is to be, is followed by
    /// [`through_links`] (as `curl -o` does: the file it names is replaced,
    /// in its own directory, and the link stays); [`write_whole`] alone
    /// replaces a link, and writes nothing where it points (a link planted
    /// in a service's directory).
    #[cfg(unix)]
    #[test]
    fn links_are_followed_only_when_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("archive");
        std::fs::create_dir(&archive).expect("set up");
        let real = archive.join("a.png");
        std::fs::write(&real, b"old").expect("set up");
        let link = dir.path().join("latest.png");
        std::os::unix::fs::symlink(&real, &link).expect("a link");
        write_whole(&through_links(&link), b"new", Durability::Synced).expect("written");
        assert!(
            std::fs::symlink_metadata(&link)
                .expect("metadata")
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&real).expect("read"), b"new");
        assert_eq!(names(dir.path()), ["archive", "latest.png"]);
        assert_eq!(names(&archive), ["a.png"]);
        // Dangling, relative: the file is made where it points.
        let ahead = dir.path().join("next.png");
        std::os::unix::fs::symlink("archive/b.png", &ahead).expect("a link");
        write_whole(&through_links(&ahead), b"b", Durability::Buffered).expect("written");
        assert_eq!(std::fs::read(archive.join("b.png")).expect("read"), b"b");
        // Not asked: the link is replaced, its target untouched.
        write_whole(&link, b"service", Durability::Buffered).expect("written");
        assert!(
            std::fs::symlink_metadata(&link)
                .expect("metadata")
                .is_file()
        );
        assert_eq!(std::fs::read(&real).expect("read"), b"new");
        let planted = dir.path().join("planted.png");
        std::os::unix::fs::symlink("archive/c.png", &planted).expect("a link");
        write_whole(&planted, b"service", Durability::Buffered).expect("written");
        assert!(
            !archive.join("c.png").exists(),
            "written where a planted link points"
        );
    }

    #[cfg(unix)]
    #[test]
    fn new_files_get_the_usual_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.png");
        write_whole(&path, b"x", Durability::Buffered).expect("written");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        // Whatever the umask takes away, as for any file the user makes
        // (tempfile alone would give 0600).
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"x").expect("a plain file");
        let usual = std::fs::metadata(&plain)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, usual & 0o777);
    }

    #[cfg(unix)]
    #[test]
    fn a_replaced_file_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mode_of = |path: &Path| {
            std::fs::metadata(path)
                .expect("metadata")
                .permissions()
                .mode()
                & 0o7777
        };
        for mode in [0o600, 0o640, 0o755] {
            let path = dir.path().join(format!("{mode:o}.png"));
            std::fs::write(&path, b"old").expect("set up");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("set up");
            write_whole(&path, b"new", Durability::Buffered).expect("written");
            assert_eq!(std::fs::read(&path).expect("read"), b"new");
            assert_eq!(mode_of(&path), mode, "{mode:o}");
        }
    }

    /// Writes a file that was last modified `age` ago.
    fn write_aged(path: &Path, age: Duration) {
        std::fs::write(path, b"x").expect("set up");
        let file = std::fs::File::options()
            .write(true)
            .open(path)
            .expect("set up");
        file.set_modified(std::time::SystemTime::now() - age)
            .expect("set up");
    }

    #[test]
    fn the_sweep_removes_only_abandoned_files_written_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = ABANDONED_AFTER + Duration::from_secs(60);
        for name in [
            ".faafo-abc123.tmp",
            ".faafo-x.png.tmp",
            ".other.tmp",
            "a.png",
            ".hidden",
            "b.tmp",
            ".faafo-.tmp",
        ] {
            write_aged(&dir.path().join(name), old);
        }
        // Being written by another program right now.
        write_aged(
            &dir.path().join(".faafo-recent.tmp"),
            Duration::from_secs(5),
        );
        std::fs::create_dir(dir.path().join(".faafo-dir.tmp")).expect("set up");
        assert_eq!(sweep_partial_files(dir.path()), 2);
        assert_eq!(
            names(dir.path()),
            [
                ".faafo-.tmp",
                ".faafo-dir.tmp",
                ".faafo-recent.tmp",
                ".hidden",
                ".other.tmp",
                "a.png",
                "b.tmp"
            ]
        );
        assert_eq!(sweep_partial_files(&dir.path().join("missing")), 0);
    }
}
