//! Result files, written atomically: a reader sees the old file or the new one, never half.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_with(path, |w| Ok(w.write_all(bytes)?))
}

/// [`write_atomic`] of what `write` writes (buffered), for files too large to build in memory.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        write(&mut w).with_context(|| format!("cannot write {}", path.display()))?;
        w.flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    // a temporary file is private (0600); results are shared like any file the user writes
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.as_file().sync_all().ok();
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Writes `records` as JSON lines (without their generated text unless `with_text`) to
/// `path`, atomically, one record at a time.
pub fn write_records(
    path: &Path,
    records: &loadgen::RecordStore,
    with_text: bool,
) -> anyhow::Result<()> {
    use loadgen::Records;
    write_atomic_with(path, |w| {
        for r in records.each() {
            if with_text || r.text.is_empty() {
                serde_json::to_writer(&mut *w, &*r)?;
            } else {
                let r = loadgen::RequestRecord {
                    text: String::new(),
                    ..r.into_owned()
                };
                serde_json::to_writer(&mut *w, &r)?;
            }
            w.write_all(b"\n")?;
        }
        Ok(())
    })?;
    records
        .check()
        .with_context(|| format!("writing {}", path.display()))
}

/// The per-request JSONL written beside a result file: `result.json` → `result.requests.jsonl`.
pub fn records_path(result: &Path) -> PathBuf {
    let stem = result
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "result".into());
    result.with_file_name(format!("{stem}.requests.jsonl"))
}

/// Adds the keys of `keys` (a struct or map) to the result object `json`.
pub fn add_keys(json: &mut serde_json::Value, keys: &impl serde::Serialize) {
    let serde_json::Value::Object(keys) = serde_json::json!(keys) else {
        unreachable!("a struct serializes to an object")
    };
    json.as_object_mut()
        .expect("the result is an object")
        .extend(keys);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_and_records_path() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/r.json");
        write_atomic(&p, b"{}").unwrap();
        write_atomic(&p, b"[1]").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"[1]");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "readable by others, as a file the user writes");
        assert_eq!(records_path(&p), d.path().join("sub/r.requests.jsonl"));
        assert_eq!(
            std::fs::read_dir(d.path().join("sub")).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
