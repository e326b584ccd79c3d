//! A run's records under a memory budget (`--max-memory`): records are kept in memory while
//! they fit, and the rest go to a spill file (the wire format of [`proto::RequestRecord`],
//! length-prefixed) that every pass over the records reads back. Metrics computed over a
//! [`Records`] source see every record either way, so they are the same with or without a
//! budget.
//!
//! The spill file is created unlinked ([`tempfile::tempfile_in`]): it has no name to leave
//! behind, and its space is freed when the store is dropped, even if the process dies.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use prost::Message;

use crate::record::RequestRecord;

/// Records to compute metrics from: a slice, a vector or a [`RecordStore`]. Each call of
/// [`Records::each`] is one pass over all of them.
pub trait Records {
    /// Every record, once (a [`RecordStore`]'s in index order).
    fn each(&self) -> Box<dyn Iterator<Item = Cow<'_, RequestRecord>> + '_>;
}

impl Records for [RequestRecord] {
    fn each(&self) -> Box<dyn Iterator<Item = Cow<'_, RequestRecord>> + '_> {
        Box::new(self.iter().map(Cow::Borrowed))
    }
}

impl<const N: usize> Records for [RequestRecord; N] {
    fn each(&self) -> Box<dyn Iterator<Item = Cow<'_, RequestRecord>> + '_> {
        self.as_slice().each()
    }
}

impl Records for Vec<RequestRecord> {
    fn each(&self) -> Box<dyn Iterator<Item = Cow<'_, RequestRecord>> + '_> {
        self.as_slice().each()
    }
}

/// The heap and inline bytes one record holds in memory (what the budget counts).
pub fn record_bytes(r: &RequestRecord) -> u64 {
    let strings = r.request_id.capacity()
        + r.text.capacity()
        + r.finish_reason.as_ref().map_or(0, String::capacity)
        + r.error.as_ref().map_or(0, |e| e.message.capacity());
    (std::mem::size_of::<RequestRecord>()
        + strings
        + r.chunks.capacity() * std::mem::size_of::<crate::record::ContentChunk>()
        + r.hidden_text.capacity() * 8
        + r.read_lags_us.capacity() * 4) as u64
}

/// Parses a size: a number, optionally with a fraction, then a unit: `B` (or none), `KB`,
/// `MB`, `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024); `K`, `M`,
/// `G`, `T` alone are the binary units (as `ulimit` and `docker --memory` read them). Case and
/// a space before the unit do not matter.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (expected e.g. 512MiB, 2GB, 1048576)"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000_u64.pow(2),
        "gb" => 1000_u64.pow(3),
        "tb" => 1000_u64.pow(4),
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

/// `1536` → "1.5 KiB", `536870912` → "512.0 MiB".
pub fn format_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A change applied to every record as it is read: `(slot, record)`, where `slot` is the
/// number given to [`RecordStore::push`] (the controller's worker).
pub type Fix = Arc<dyn Fn(u32, &mut RequestRecord) + Send + Sync>;

/// Where a spilled record lies in the spill file.
#[derive(Clone, Copy, Debug)]
struct Spilled {
    index: u64,
    slot: u32,
    offset: u64,
    len: u32,
}

struct SpillFile {
    out: BufWriter<File>,
    bytes: u64,
    at: Vec<Spilled>,
}

/// What a store did with memory: for the result (`records_bytes_peak`,
/// `records_spilled_bytes`, `records_spilled`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// The most bytes of records held in memory at once (the record being spilled included).
    pub peak_bytes: u64,
    /// Bytes written to the spill file (0: nothing spilled).
    pub spilled_bytes: u64,
    /// Records in the spill file.
    pub spilled: usize,
    /// The budget (`None`: no budget, every record in memory).
    pub budget: Option<u64>,
}

/// How much memory a run's records may take, and where the rest goes (`--max-memory`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Bytes of records kept in memory at most (`None`: no limit).
    pub max_bytes: Option<u64>,
    /// Where a spill file is created (the result directory, else `$TMPDIR`).
    pub spill_dir: PathBuf,
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget {
            max_bytes: None,
            spill_dir: std::env::temp_dir(),
        }
    }
}

impl MemoryBudget {
    /// An empty store under this budget.
    pub fn store(&self) -> RecordStore {
        RecordStore::new(self.max_bytes, self.spill_dir.clone())
    }
}

/// A run's records: in memory up to a budget, then in an unlinked spill file.
pub struct RecordStore {
    budget: Option<u64>,
    dir: PathBuf,
    mem: Vec<(u32, RequestRecord)>,
    mem_bytes: u64,
    peak_bytes: u64,
    spill: Option<SpillFile>,
    fix: Option<Fix>,
    /// The first error reading the spill file back (a pass stops there).
    read_error: OnceLock<String>,
}

impl std::fmt::Debug for RecordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStore")
            .field("len", &self.len())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for RecordStore {
    fn default() -> Self {
        RecordStore::new(None, std::env::temp_dir())
    }
}

impl From<Vec<RequestRecord>> for RecordStore {
    /// Records already in memory, with no budget.
    fn from(records: Vec<RequestRecord>) -> Self {
        let mut s = RecordStore::default();
        for r in records {
            s.push(0, r).expect("no budget: nothing is written");
        }
        s
    }
}

impl RecordStore {
    /// A store keeping at most `budget` bytes of records in memory (`None`: all of them), its
    /// spill file (if one is needed) in `dir`.
    pub fn new(budget: Option<u64>, dir: PathBuf) -> RecordStore {
        RecordStore {
            budget,
            dir,
            mem: Vec::new(),
            mem_bytes: 0,
            peak_bytes: 0,
            spill: None,
            fix: None,
            read_error: OnceLock::new(),
        }
    }

    /// An empty store with this one's budget and directory.
    pub fn empty_like(&self) -> RecordStore {
        RecordStore::new(self.budget, self.dir.clone())
    }

    /// Where a spill file goes.
    pub fn spill_dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn len(&self) -> usize {
        self.mem.len() + self.spill.as_ref().map_or(0, |s| s.at.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            peak_bytes: self.peak_bytes,
            spilled_bytes: self.spill.as_ref().map_or(0, |s| s.bytes),
            spilled: self.spill.as_ref().map_or(0, |s| s.at.len()),
            budget: self.budget,
        }
    }

    /// Keeps `r` (from `slot`): in memory if it fits the budget, else in the spill file.
    /// Returns true when this record started the spilling.
    pub fn push(&mut self, slot: u32, r: RequestRecord) -> std::io::Result<bool> {
        let size = record_bytes(&r);
        self.peak_bytes = self.peak_bytes.max(self.mem_bytes + size);
        if self.budget.is_none_or(|b| self.mem_bytes + size <= b) {
            self.mem_bytes += size;
            self.mem.push((slot, r));
            return Ok(false);
        }
        let started = self.spill.is_none();
        if started {
            let file = tempfile::tempfile_in(&self.dir).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot create a spill file in {}: {e}", self.dir.display()),
                )
            })?;
            self.spill = Some(SpillFile {
                out: BufWriter::with_capacity(1 << 20, file),
                bytes: 0,
                at: Vec::new(),
            });
        }
        let s = self.spill.as_mut().expect("created above");
        let index = r.index;
        let buf = proto::RequestRecord::from(r).encode_to_vec();
        s.out.write_all(&buf)?;
        s.at.push(Spilled {
            index,
            slot,
            offset: s.bytes,
            len: buf.len() as u32,
        });
        s.bytes += buf.len() as u64;
        Ok(started)
    }

    /// Applies `fix` to every record: now to those in memory, as they are read to the spilled
    /// ones. `fix` must map equal indexes to equal indexes (it is applied to a record holding
    /// only the index to sort the spilled ones). Replaces an earlier fix.
    pub fn fix(&mut self, fix: Fix) {
        for (slot, r) in &mut self.mem {
            fix(*slot, r);
        }
        if let Some(s) = &mut self.spill {
            for e in &mut s.at {
                let mut probe = RequestRecord {
                    index: e.index,
                    ..Default::default()
                };
                fix(e.slot, &mut probe);
                e.index = probe.index;
            }
        }
        self.fix = Some(fix);
    }

    /// Sorts the records by index and makes the spill file readable; call it once every record
    /// has been pushed. Returns the first index held twice, if one is.
    pub fn finish(&mut self) -> std::io::Result<Option<u64>> {
        self.mem.sort_by_key(|(_, r)| r.index);
        if let Some(s) = &mut self.spill {
            s.out.flush()?;
            s.at.sort_by_key(|e| e.index);
        }
        let mut last = None;
        for i in self.indexes() {
            if last == Some(i) {
                return Ok(Some(i));
            }
            last = Some(i);
        }
        Ok(None)
    }

    /// The records' indexes in order (memory and spill file merged).
    fn indexes(&self) -> impl Iterator<Item = u64> + '_ {
        let mut m = self.mem.iter().map(|(_, r)| r.index).peekable();
        let mut s = self
            .spill
            .iter()
            .flat_map(|s| s.at.iter().map(|e| e.index))
            .peekable();
        std::iter::from_fn(move || match (m.peek(), s.peek()) {
            (Some(a), Some(b)) if a <= b => m.next(),
            (Some(_), Some(_)) | (None, Some(_)) => s.next(),
            (Some(_), None) => m.next(),
            (None, None) => None,
        })
    }

    /// The first error a pass met reading the spill file (it stopped there): a metric computed
    /// in that pass is incomplete, so callers check this after computing.
    pub fn check(&self) -> std::io::Result<()> {
        match self.read_error.get() {
            Some(e) => Err(std::io::Error::other(e.clone())),
            None => Ok(()),
        }
    }

    fn read(&self, e: &Spilled) -> Option<RequestRecord> {
        let s = self.spill.as_ref()?;
        let mut buf = vec![0u8; e.len as usize];
        let got = s
            .out
            .get_ref()
            .read_exact_at(&mut buf, e.offset)
            .map_err(|err| err.to_string())
            .and_then(|()| proto::RequestRecord::decode(buf.as_slice()).map_err(|e| e.to_string()))
            .and_then(|p| RequestRecord::try_from(p).map_err(|e| e.to_string()));
        match got {
            Ok(mut r) => {
                if let Some(f) = &self.fix {
                    f(e.slot, &mut r);
                }
                Some(r)
            }
            Err(why) => {
                let _ = self
                    .read_error
                    .set(format!("reading spilled record {} back: {why}", e.index));
                None
            }
        }
    }

    /// Applies `f` to every record (counting tokens after a run): in place in memory, and the
    /// spilled ones read, changed and written to a new spill file one at a time. `f` must not
    /// change a record's index.
    pub fn update(&mut self, mut f: impl FnMut(&mut RequestRecord)) -> std::io::Result<()> {
        for (_, r) in &mut self.mem {
            f(r);
        }
        let Some(old) = self.spill.take() else {
            return Ok(());
        };
        let file = tempfile::tempfile_in(&self.dir)?;
        let mut new = SpillFile {
            out: BufWriter::with_capacity(1 << 20, file),
            bytes: 0,
            at: Vec::with_capacity(old.at.len()),
        };
        let reader = RecordStore {
            spill: Some(old),
            fix: self.fix.take(),
            ..RecordStore::new(self.budget, self.dir.clone())
        };
        for e in &reader.spill.as_ref().expect("set above").at {
            let Some(mut r) = reader.read(e) else {
                reader.check()?;
                unreachable!("a failed read is recorded");
            };
            f(&mut r);
            let buf = proto::RequestRecord::from(r).encode_to_vec();
            new.out.write_all(&buf)?;
            new.at.push(Spilled {
                offset: new.bytes,
                len: buf.len() as u32,
                ..*e
            });
            new.bytes += buf.len() as u64;
        }
        new.out.flush()?;
        self.spill = Some(new);
        Ok(())
    }

    /// Every record, owned, in index order; the store is consumed (its spill file freed at
    /// the end).
    pub fn into_records(self) -> impl Iterator<Item = std::io::Result<RequestRecord>> {
        let RecordStore {
            mem,
            spill,
            fix,
            budget,
            dir,
            ..
        } = self;
        let at = spill.as_ref().map(|s| s.at.clone()).unwrap_or_default();
        let reader = RecordStore {
            spill,
            fix,
            ..RecordStore::new(budget, dir)
        };
        let mut m = mem.into_iter().map(|(_, r)| r).peekable();
        let mut s = at.into_iter().peekable();
        std::iter::from_fn(move || {
            let from_mem = match (m.peek(), s.peek()) {
                (Some(a), Some(b)) => a.index <= b.index,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => return None,
            };
            if from_mem {
                return m.next().map(Ok);
            }
            let e = s.next()?;
            Some(reader.read(&e).ok_or_else(|| {
                std::io::Error::other(reader.read_error.get().cloned().unwrap_or_default())
            }))
        })
    }

    /// Every record in memory, or the first error reading the spilled ones.
    pub fn into_vec(self) -> std::io::Result<Vec<RequestRecord>> {
        self.into_records().collect()
    }
}

impl RecordStore {
    /// Every record in index order ([`Records::each`]).
    pub fn iter(&self) -> Box<dyn Iterator<Item = Cow<'_, RequestRecord>> + '_> {
        self.each()
    }
}

impl<'a> IntoIterator for &'a RecordStore {
    type Item = Cow<'a, RequestRecord>;
    type IntoIter = Box<dyn Iterator<Item = Cow<'a, RequestRecord>> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.each()
    }
}

impl Records for RecordStore {
    fn each(&self) -> Box<dyn Iterator<Item = Cow<'_, RequestRecord>> + '_> {
        let mut m = self.mem.iter().map(|(_, r)| r).peekable();
        let mut s = self.spill.iter().flat_map(|s| s.at.iter()).peekable();
        Box::new(std::iter::from_fn(move || {
            let from_mem = match (m.peek(), s.peek()) {
                (Some(a), Some(b)) => a.index <= b.index,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => return None,
            };
            if from_mem {
                m.next().map(Cow::Borrowed)
            } else {
                s.next().and_then(|e| self.read(e)).map(Cow::Owned)
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ContentChunk;

    fn rec(index: u64, chunks: usize) -> RequestRecord {
        RequestRecord {
            index,
            request_id: format!("r{index}"),
            send_ns: 1000 + index,
            chunks: (0..chunks as u64)
                .map(|k| ContentChunk {
                    t_ns: 2000 + index * 10 + k,
                    text_end: k as u32 + 1,
                    tokens: 1,
                })
                .collect(),
            text: "x".repeat(chunks),
            end_ns: 5000 + index,
            ..Default::default()
        }
    }

    /// The ITL of a spilled store, past the held samples (replayed from the spill file five
    /// more times), equals the ITL of the same records in a Vec.
    #[test]
    fn chunk_metrics_replayed_from_a_spilled_store_are_exact() {
        use crate::report::{Metric, summarize, summarize_holding};
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<RequestRecord> = (0..30u64)
            .map(|i| {
                let mut r = rec(i, 40);
                for (k, c) in r.chunks.iter_mut().enumerate() {
                    let k = k as u64;
                    c.t_ns = 2000 + i * 10 + k * k * (i % 7 + 1);
                }
                r.end_ns = r.chunks.last().unwrap().t_ns + 1;
                r
            })
            .collect();
        let mut s = RecordStore::new(Some(3 * record_bytes(&recs[0])), dir.path().into());
        for r in recs.iter().rev() {
            s.push(0, r.clone()).unwrap();
        }
        assert_eq!(s.finish().unwrap(), None);
        assert!(s.stats().spilled > 20);
        let pct = [50.0, 99.0, 99.9];
        let want = summarize(&recs, &pct, &[]);
        let got = summarize_holding(&s, &pct, &[], 50);
        assert_eq!(s.check().ok(), Some(()));
        for m in [Metric::Itl, Metric::ItlPerToken] {
            let (a, b) = (&want.metrics[&m], &got.metrics[&m]);
            assert_eq!(
                (a.count, &a.percentiles, a.min, a.max),
                (b.count, &b.percentiles, b.min, b.max)
            );
        }
    }

    #[test]
    fn over_the_budget_records_spill_and_come_back_in_index_order() {
        let dir = tempfile::tempdir().unwrap();
        let one = record_bytes(&rec(0, 100));
        let mut s = RecordStore::new(Some(3 * one), dir.path().into());
        let mut started = vec![];
        // arrive out of order, as requests finish
        for i in [4u64, 0, 7, 1, 9, 2, 8, 3, 6, 5] {
            started.push(s.push(0, rec(i, 100)).unwrap());
        }
        assert_eq!(started.iter().filter(|b| **b).count(), 1, "said once");
        assert_eq!(s.finish().unwrap(), None);
        let st = s.stats();
        assert_eq!(st.spilled, 7);
        assert!(st.spilled_bytes > 0);
        assert!(st.peak_bytes <= 3 * one + one, "{st:?}");
        let back: Vec<RequestRecord> = s.each().map(Cow::into_owned).collect();
        s.check().unwrap();
        assert_eq!(back, (0..10).map(|i| rec(i, 100)).collect::<Vec<_>>());
        assert_eq!(s.into_vec().unwrap(), back);
        // the spill file has no name: nothing is left in the directory
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_fix_applies_to_memory_now_and_to_spilled_records_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let one = record_bytes(&rec(0, 10));
        let mut s = RecordStore::new(Some(one), dir.path().into());
        for (slot, i) in [(0u32, 0u64), (1, 0), (0, 1), (1, 1)] {
            s.push(slot, rec(i, 10)).unwrap();
        }
        // two workers' shares: index k + l·2, times moved by 1 µs
        s.fix(Arc::new(|slot, r| {
            r.index = r.index * 2 + u64::from(slot);
            crate::wire::map_times(r, |t| t + 1000);
        }));
        assert_eq!(s.finish().unwrap(), None);
        let back: Vec<(u64, u64)> = s.each().map(|r| (r.index, r.send_ns)).collect();
        assert_eq!(back, vec![(0, 2000), (1, 2000), (2, 2001), (3, 2001)]);
        assert_eq!(s.stats().spilled, 3);
    }

    #[test]
    fn update_changes_spilled_records_too() {
        let dir = tempfile::tempdir().unwrap();
        let one = record_bytes(&rec(0, 10));
        let mut s = RecordStore::new(Some(2 * one), dir.path().into());
        for i in 0..6 {
            s.push(0, rec(i, 10)).unwrap();
        }
        s.finish().unwrap();
        s.update(|r| r.output_tokens_client = Some(r.index as u32 * 3))
            .unwrap();
        let got: Vec<_> = s.each().map(|r| r.output_tokens_client).collect();
        assert_eq!(got, (0..6).map(|i| Some(i * 3)).collect::<Vec<_>>());
        assert_eq!(s.stats().spilled, 4);
    }

    #[test]
    fn an_index_held_twice_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RecordStore::new(Some(1), dir.path().into());
        s.push(0, rec(3, 1)).unwrap();
        s.push(1, rec(3, 1)).unwrap();
        assert_eq!(s.finish().unwrap(), Some(3));
    }

    #[test]
    fn sizes_parse_in_decimal_and_binary_units() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1.5 KiB"), Ok(1536));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("4g"), Ok(4 << 30));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert!(
            parse_size("lots")
                .unwrap_err()
                .contains("\"lots\" is not a size")
        );
        assert!(
            parse_size("3 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_size("").is_err());
        assert!(parse_size("-1MiB").is_err());
        assert!(parse_size("1e30TB").is_err());
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(512 << 20), "512.0 MiB");
        assert_eq!(format_bytes(7), "7 B");
    }

    #[test]
    fn without_a_budget_nothing_is_written() {
        let mut s = RecordStore::new(None, "/nonexistent".into());
        for i in 0..100 {
            assert!(!s.push(0, rec(i, 50)).unwrap());
        }
        s.finish().unwrap();
        assert_eq!(s.stats().spilled_bytes, 0);
        assert_eq!(s.each().count(), 100);
    }
}
