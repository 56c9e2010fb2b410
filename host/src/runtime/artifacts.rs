//! The artifact directory on local disk: compiled components named by digest
//! and engine compatibility (`DIGEST-COMPAT.cwasm`), how they are written,
//! listed and pruned. Every command that loads components on this machine
//! (`serve`, `run`, `template push`, `bench`) shares one directory, so a
//! component is compiled once per machine and elihu build.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::model::Digest;

/// One compiled artifact in the artifact directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The digest of the component it was compiled from.
    pub digest: Digest,
    /// Its file.
    pub path: PathBuf,
    /// Its size on disk.
    pub bytes: u64,
    /// When it was last compiled or loaded.
    pub last_used: SystemTime,
    /// Whether this build of elihu can load it (same wasmtime version and
    /// compiler settings); others are recompiled and can be pruned.
    pub current: bool,
}

/// The file name of a component's compiled artifact for engine `compat`.
pub(crate) fn file_name(digest: &Digest, compat: &str) -> String {
    format!("{digest}-{compat}.cwasm")
}

/// Reads an artifact file name back: the digest and engine compatibility.
fn parse_file_name(name: &str) -> Option<(Digest, &str)> {
    let stem = name.strip_suffix(".cwasm")?;
    let (digest, compat) = stem.split_once('-')?;
    Some((Digest::parse(digest)?, compat))
}

/// Writes an artifact atomically (a temp file renamed into place), so a
/// reader never sees half a file and two writers never collide.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| std::io::Error::other("an artifact path has a parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Marks an artifact as used now, so pruning by age keeps what is in use.
pub(crate) fn touch(path: &Path) {
    let touched = std::fs::File::options().write(true).open(path).and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(e) = touched {
        tracing::debug!(path = %path.display(), error = %e, "could not update an artifact's last use");
    }
}

/// Every artifact in `dir` (none when it does not exist), newest use first;
/// `compat` tells the current ones from those of other builds.
pub(crate) fn list(dir: &Path, compat: &str) -> std::io::Result<Vec<Artifact>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut artifacts = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some((digest, artifact_compat)) = parse_file_name(&name.to_string_lossy()).map(|(d, c)| (d, c.to_string()))
        else {
            continue;
        };
        let meta = entry.metadata()?;
        artifacts.push(Artifact {
            digest,
            path: entry.path(),
            bytes: meta.len(),
            last_used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            current: artifact_compat == compat,
        });
    }
    artifacts.sort_by(|a, b| b.last_used.cmp(&a.last_used).then_with(|| a.digest.cmp(&b.digest)));
    Ok(artifacts)
}

/// Leftover temp files of writers that died, older than an hour.
pub(crate) fn stale_temp_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let hour_ago = SystemTime::now() - std::time::Duration::from_secs(3600);
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with('.') && name.ends_with(".tmp")
        })
        .filter(|e| e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < hour_ago))
        .map(|e| e.path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        let digest = Digest::of(b"x");
        let name = file_name(&digest, "00ff00ff00ff00ff");
        assert_eq!(parse_file_name(&name), Some((digest, "00ff00ff00ff00ff")));
        assert_eq!(parse_file_name("notes.txt"), None);
        assert_eq!(parse_file_name("abc-00ff.cwasm"), None);
    }

    #[test]
    fn listing_tells_current_from_stale_and_skips_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        write(&dir.path().join(file_name(&a, "current")), b"12345").unwrap();
        write(&dir.path().join(file_name(&b, "older")), b"1").unwrap();
        std::fs::write(dir.path().join("README"), b"not an artifact").unwrap();
        let mut listed = list(dir.path(), "current").unwrap();
        listed.sort_by_key(|a| a.bytes);
        let seen: Vec<(&Digest, u64, bool)> = listed.iter().map(|a| (&a.digest, a.bytes, a.current)).collect();
        assert_eq!(seen, [(&b, 1, false), (&a, 5, true)]);
        assert!(list(&dir.path().join("missing"), "current").unwrap().is_empty());
    }
}
