//! Small, careful file operations for providers that keep their world in files.
//!
//! Every write is atomic (a temporary file in the same directory, synced, then renamed over
//! the target), so a crash leaves either the old file or the new one, never half of one.
//! Removing what is already gone succeeds. These functions block: call them through
//! [`blocking`], never directly on the async runtime. Error messages name the file and the
//! cause, never its contents (which may be secret).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use fediversity_engine::ProviderError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Owner read/write only: files that hold secrets.
pub const PRIVATE_FILE: u32 = 0o600;
/// Owner read/write, others read: ordinary files.
pub const PUBLIC_FILE: u32 = 0o644;

/// Runs blocking file work off the async runtime.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ProviderError> + Send + 'static,
) -> Result<T, ProviderError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        ProviderError::transient(format!("internal error: file work ended abnormally: {e}"))
    })?
}

/// A provider error for an I/O failure on `path`: permanent when trying again cannot help
/// (permissions, a read-only file system), transient otherwise.
pub fn io_error(action: &str, path: &Path, error: &io::Error) -> ProviderError {
    let message = format!("cannot {action} {}: {error}", path.display());
    match error.kind() {
        io::ErrorKind::PermissionDenied
        | io::ErrorKind::ReadOnlyFilesystem
        | io::ErrorKind::InvalidInput
        | io::ErrorKind::IsADirectory
        | io::ErrorKind::NotADirectory => ProviderError::permanent(message),
        _ => ProviderError::transient(message),
    }
}

/// Creates `dir` and its parents; `dir` itself gets `mode`, also when it existed (a secrets
/// directory stays private even if someone loosened it).
pub fn create_dir(dir: &Path, mode: u32) -> Result<(), ProviderError> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(|e| io_error("create the directory", dir, &e))?;
    } else if fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o777 == mode) {
        return Ok(());
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(|e| io_error("set the permissions of", dir, &e))
}

/// Replaces `path`'s contents with `bytes` atomically, the new file having `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ProviderError> {
    let dir = path
        .parent()
        .ok_or_else(|| ProviderError::permanent(format!("{} has no directory", path.display())))?;
    if !dir.is_dir() {
        create_dir(dir, 0o755)?;
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(
        ".{file_name}.tmp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(io_error("write", path, &error));
    }
    Ok(())
}

/// Writes `value` as pretty JSON (with a final newline) to `path` atomically.
pub fn write_json(path: &Path, value: &impl Serialize, mode: u32) -> Result<(), ProviderError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| {
        ProviderError::permanent(format!(
            "internal error: cannot serialise {}: {e}",
            path.display()
        ))
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes(), mode)
}

/// The contents of `path`, or `None` when it does not exist.
pub fn read_text(path: &Path) -> Result<Option<String>, ProviderError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, &e)),
    }
}

/// `path` parsed as JSON, or `None` when it does not exist. A file that does not parse is a
/// permanent error that names it: someone edited it by hand and must fix or remove it.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, ProviderError> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        ProviderError::permanent(format!(
            "{} is not what the sandbox wrote ({e}): fix it or remove it",
            path.display()
        ))
    })
}

/// Removes the file at `path`; succeeds when it is already gone.
pub fn remove_file(path: &Path) -> Result<(), ProviderError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove", path, &e)),
    }
}

/// Removes the directory at `path` with everything in it; succeeds when it is already gone.
pub fn remove_dir_all(path: &Path) -> Result<(), ProviderError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove", path, &e)),
    }
}

/// The names of the entries of `dir`, sorted; empty when it does not exist.
pub fn list_dir(dir: &Path) -> Result<Vec<String>, ProviderError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("list", dir, &e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("list", dir, &e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Runs `work` holding an exclusive lock on the file `lock` (created if need be). The lock is
/// an advisory `flock`, so it also keeps out other processes working on the same sandbox.
pub fn with_lock<T>(
    lock: &Path,
    work: impl FnOnce() -> Result<T, ProviderError>,
) -> Result<T, ProviderError> {
    if let Some(dir) = lock.parent().filter(|d| !d.is_dir()) {
        create_dir(dir, 0o755)?;
    }
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock)
        .map_err(|e| io_error("open the lock file", lock, &e))?;
    file.lock().map_err(|e| io_error("lock", lock, &e))?;
    let result = work();
    let _ = file.unlock();
    result
}

/// Checks that `name` is safe as one path component: 1 to 255 characters from `A-Z`, `a-z`,
/// `0-9`, `.`, `_` and `-`, not starting with a dot (no `..`, no hidden files, no `/`).
pub fn check_component(what: &str, name: &str) -> Result<(), ProviderError> {
    let ok = (1..=255).contains(&name.len())
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ProviderError::permanent(format!(
            "{what} `{name}` cannot be used as a file name: use 1 to 255 characters from \
             A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_and_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file.json");
        write_json(&path, &serde_json::json!({"a": 1}), PRIVATE_FILE).unwrap();
        write_json(&path, &serde_json::json!({"a": 2}), PRIVATE_FILE).unwrap();
        let value: serde_json::Value = read_json(&path).unwrap().unwrap();
        assert_eq!(value["a"], 2);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(list_dir(&dir.path().join("sub")).unwrap(), ["file.json"]);
    }

    #[test]
    fn removing_what_is_gone_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        remove_file(&dir.path().join("nothing")).unwrap();
        remove_dir_all(&dir.path().join("nothing")).unwrap();
        assert!(read_text(&dir.path().join("nothing")).unwrap().is_none());
        assert!(list_dir(&dir.path().join("nothing")).unwrap().is_empty());
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in ["", "..", ".hidden", "a/b", "a b", "ä"] {
            assert!(check_component("name", bad).is_err(), "{bad}");
        }
        check_component("name", "fedi-example-org-mastodon").unwrap();
    }

    #[test]
    fn a_hand_broken_file_is_a_permanent_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm.json");
        fs::write(&path, "{ not json").unwrap();
        let error = read_json::<serde_json::Value>(&path).unwrap_err();
        assert_eq!(
            error.kind,
            fediversity_engine::provider::ErrorKind::Permanent
        );
        assert!(error.message.contains("vm.json"), "{}", error.message);
    }
}
