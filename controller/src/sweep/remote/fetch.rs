//! `FetchSweep`: a sweep's result directory sent file by file from the controller's disk, and
//! written into a local directory by the client (`benchctl compare ID …`, `benchctl sweep fetch
//! ID`).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use tokio::sync::mpsc;

/// The most bytes of a file in one message (gRPC's default limit is 4 MiB).
const PIECE: usize = 1 << 20;

type Tx = mpsc::Sender<Result<proto::FetchSweepResponse, tonic::Status>>;

/// Sends every regular file under `dir` (blocking: run it on a blocking thread), then `done`
/// with `status`. Symbolic links are not followed, and the temporary files of writes in
/// progress (`.tmp*`) and files that vanish before they are read are skipped. Stops when the
/// client goes away.
pub(super) fn send(dir: &Path, status: String, tx: &Tx) {
    let mut files = 0u64;
    let mut bytes = 0u64;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(read) = std::fs::read_dir(dir.join(&rel)) else {
            continue;
        };
        let mut names: Vec<_> = read.flatten().collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name();
            let Some(n) = name.to_str() else { continue };
            if n.starts_with(".tmp") {
                continue;
            }
            let Ok(kind) = e.file_type() else { continue };
            let path = rel.join(n);
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                match send_file(dir, &path, tx) {
                    Ok(Some(n)) => {
                        files += 1;
                        bytes += n;
                    }
                    Ok(None) => {}
                    Err(()) => return,
                }
            }
        }
    }
    let done = proto::FetchSweepResponse {
        part: Some(proto::fetch_sweep_response::Part::Done(
            proto::SweepFetched {
                status,
                files,
                bytes,
            },
        )),
    };
    let _ = tx.blocking_send(Ok(done));
}

/// One file's pieces: `Ok(Some(bytes))` sent, `Ok(None)` could not be opened (gone), `Err` the
/// client went away.
fn send_file(dir: &Path, rel: &Path, tx: &Tx) -> Result<Option<u64>, ()> {
    let Ok(mut f) = std::fs::File::open(dir.join(rel)) else {
        return Ok(None);
    };
    let path = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    let mut sent = 0u64;
    let mut buf = vec![0u8; PIECE];
    loop {
        let mut n = 0;
        // fill the piece (a read may return less), so only the last piece is short
        while n < PIECE {
            match f.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let why = format!("cannot read {}: {e}", dir.join(rel).display());
                    let _ = tx.blocking_send(Err(tonic::Status::internal(why)));
                    return Err(());
                }
            }
        }
        let eof = n < PIECE;
        let chunk = proto::FetchSweepResponse {
            part: Some(proto::fetch_sweep_response::Part::Chunk(
                proto::SweepFileChunk {
                    path: path.clone(),
                    data: buf[..n].to_vec(),
                    eof,
                },
            )),
        };
        tx.blocking_send(Ok(chunk)).map_err(|_| ())?;
        sent += n as u64;
        if eof {
            return Ok(Some(sent));
        }
    }
}

/// What a fetch wrote.
#[derive(Debug)]
pub struct Fetched {
    /// The sweep's directory here.
    pub dir: PathBuf,
    /// The sweep's status on the controller when it was sent.
    pub status: String,
    pub files: u64,
    pub bytes: u64,
}

/// A path the controller sent, checked: relative, no `..`, no root, not empty.
fn local_path(path: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(path);
    if path.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("the controller sent a file outside the sweep's directory: {path:?}");
    }
    Ok(p.to_path_buf())
}

/// Writes the stream into `dest` (which must not exist yet: it is made through a sibling
/// `.partial` directory, renamed once the stream is complete, so a cut stream leaves no
/// half-fetched sweep behind).
pub async fn receive(
    mut stream: tonic::Streaming<proto::FetchSweepResponse>,
    dest: &Path,
) -> anyhow::Result<Fetched> {
    use std::io::Write;
    let name = dest
        .file_name()
        .context("the destination has no name")?
        .to_string_lossy()
        .into_owned();
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let partial = parent.join(format!(".{name}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("cannot remove {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut open: Option<(String, std::io::BufWriter<std::fs::File>)> = None;
    let mut written = (0u64, 0u64);
    let done = loop {
        let Some(msg) = stream.message().await? else {
            bail!(
                "the controller's stream ended before the sweep was sent whole ({} files so far)",
                written.0
            );
        };
        match msg.part {
            Some(proto::fetch_sweep_response::Part::Chunk(c)) => {
                if open.as_ref().is_none_or(|(p, _)| *p != c.path) {
                    if open.is_some() {
                        bail!(
                            "the controller sent {:?} before the end of the file before it",
                            c.path
                        );
                    }
                    let path = partial.join(local_path(&c.path)?);
                    if let Some(d) = path.parent() {
                        std::fs::create_dir_all(d)
                            .with_context(|| format!("cannot create {}", d.display()))?;
                    }
                    let f = std::fs::File::create_new(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    open = Some((c.path.clone(), std::io::BufWriter::new(f)));
                }
                let (p, w) = open.as_mut().expect("opened above");
                w.write_all(&c.data)
                    .with_context(|| format!("cannot write {}", partial.join(&*p).display()))?;
                written.1 += c.data.len() as u64;
                if c.eof {
                    let (p, w) = open.take().expect("open");
                    w.into_inner()
                        .map_err(|e| e.into_error())
                        .with_context(|| format!("cannot write {}", partial.join(p).display()))?;
                    written.0 += 1;
                }
            }
            Some(proto::fetch_sweep_response::Part::Done(d)) => break d,
            None => {}
        }
    };
    if open.is_some() || written != (done.files, done.bytes) {
        bail!(
            "the controller said it sent {} files ({} bytes), {} arrived ({} bytes)",
            done.files,
            done.bytes,
            written.0,
            written.1
        );
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest)
            .with_context(|| format!("cannot replace {}", dest.display()))?;
    }
    std::fs::rename(&partial, dest)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), dest.display()))?;
    Ok(Fetched {
        dir: dest.to_path_buf(),
        status: done.status,
        files: done.files,
        bytes: done.bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_directory_are_refused() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a"] {
            assert!(local_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            local_path("requests/c2.jsonl").unwrap(),
            Path::new("requests/c2.jsonl")
        );
    }

    /// A directory sent by [`send`] and cut into pieces: every file arrives in order, the
    /// temporary and linked files do not, and a file of several pieces is whole.
    #[test]
    fn send_walks_regular_files_in_pieces() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("requests")).unwrap();
        std::fs::write(d.path().join("a.json"), b"{}").unwrap();
        let big: Vec<u8> = (0..PIECE * 2 + 7).map(|i| (i % 251) as u8).collect();
        std::fs::write(d.path().join("requests/big.jsonl"), &big).unwrap();
        std::fs::write(d.path().join(".tmpXYZ"), b"half").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.path().join("link")).unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let dir = d.path().to_path_buf();
        let t = std::thread::spawn(move || send(&dir, "done".into(), &tx));
        let mut got: Vec<(String, usize, bool)> = vec![];
        let mut data = vec![];
        let mut fetched = None;
        while let Some(m) = rx.blocking_recv() {
            match m.unwrap().part.unwrap() {
                proto::fetch_sweep_response::Part::Chunk(c) => {
                    if c.path == "requests/big.jsonl" {
                        data.extend_from_slice(&c.data);
                    }
                    got.push((c.path, c.data.len(), c.eof));
                }
                proto::fetch_sweep_response::Part::Done(d) => fetched = Some(d),
            }
        }
        t.join().unwrap();
        assert_eq!(
            got,
            vec![
                ("a.json".into(), 2, true),
                ("requests/big.jsonl".into(), PIECE, false),
                ("requests/big.jsonl".into(), PIECE, false),
                ("requests/big.jsonl".into(), 7, true),
            ]
        );
        assert_eq!(data, big);
        let f = fetched.unwrap();
        assert_eq!(
            (f.status.as_str(), f.files, f.bytes),
            ("done", 2, 2 + big.len() as u64)
        );
    }
}
