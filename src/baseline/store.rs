//! The baseline store: one sled database, owned by this module alone.
//!
//! Layout (schemas 2 and 3): the default tree holds `schema` (u32) and `current`
//! (the [`Meta`] of the live generation); each generation's records live in
//! a tree `gen/N` as path-sorted *chunks* of about [`CHUNK_BYTES`], keyed by
//! the chunk's index (u32, big-endian) and holding, per record, the
//! length-prefixed path and encoded value. Chunking is what makes a baseline
//! of 70,000 files cost a few hundred sled inserts instead of 70,000 (sled's
//! per-item cost dominated `init`); records stay individually encoded, so
//! the digest is over the same (path, value) pairs. A write fills a fresh tree, flushes
//! it, then switches `current` in one insert and flushes again; only then is
//! the old tree dropped. A crash at any point leaves `current` naming a
//! complete, flushed generation (or no baseline at all before the first
//! switch). Loading checks the count and a BLAKE3 digest of every key and
//! value against `current`, so a damaged store is reported, never trusted.
//! A generation may also own a tree `extra/N` of opaque pairs (provenance
//! state: package versions, cached MD5s), written before the same switch
//! and folded into the same digest.
//!
//! Schema 3 is schema 2 with record values that may carry the file's facts
//! (`record::ENCODING_V2`), which a schema-2 build would refuse as corrupt:
//! the first generation written by this build raises the stored schema so
//! such a build says "newer schema" instead. Schema-2 stores are still read
//! (their values are V1: no facts), and each generation's header keeps the
//! schema it was written (and signed) with.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::record::Record;

/// The schema this build writes and understands.
pub const SCHEMA: u32 = 3;
/// The oldest schema this build still reads (same layout, no facts).
pub const MIN_SCHEMA: u32 = 2;
const KEY_SCHEMA: &[u8] = b"schema";
const KEY_CURRENT: &[u8] = b"current";
/// How long to wait for another libwarden's lock (or a killed one's to be
/// released) before saying the baseline is locked.
const LOCK_WAIT: Duration = Duration::from_secs(3);
/// Target size of one stored chunk of records. Well under a quarter of
/// sled's segment size (512 KiB), so chunks stay inline in the log rather
/// than becoming one blob file each.
pub const CHUNK_BYTES: usize = 32 << 10;
/// Chunks per sled batch.
const BATCH: usize = 64;

/// Facts about one generation, stored with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The schema the generation was written with (part of what is signed).
    pub schema: u32,
    pub generation: u64,
    /// Random, fixed at `init`: tells one baseline from another.
    pub baseline_id: [u8; 16],
    /// Seconds since the epoch when the generation was written.
    pub written: i64,
    pub count: u64,
    /// BLAKE3 over every (key, value) in order, length-prefixed.
    pub digest: [u8; 32],
    /// The host path the baseline was built for (`--root`).
    pub root: Vec<u8>,
    /// Ed25519 (public key, signature) over [`Meta::signed_bytes`].
    pub signature: Option<([u8; 32], [u8; 64])>,
}

impl Meta {
    /// What a signature covers: every field but the signature, which
    /// includes the digest over all records, the baseline id, the
    /// generation and its time.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut v = b"libwarden-generation-v1\0".to_vec();
        v.extend_from_slice(&self.encode_unsigned());
        v
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = self.encode_unsigned();
        match &self.signature {
            Some((k, sig)) => {
                v.push(1);
                v.extend_from_slice(k);
                v.extend_from_slice(sig);
            }
            None => v.push(0),
        }
        v
    }

    fn encode_unsigned(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(192 + self.root.len());
        v.extend_from_slice(&self.schema.to_le_bytes());
        v.extend_from_slice(&self.generation.to_le_bytes());
        v.extend_from_slice(&self.baseline_id);
        v.extend_from_slice(&self.written.to_le_bytes());
        v.extend_from_slice(&self.count.to_le_bytes());
        v.extend_from_slice(&self.digest);
        v.extend_from_slice(&(self.root.len() as u32).to_le_bytes());
        v.extend_from_slice(&self.root);
        v
    }

    fn decode(v: &[u8]) -> Option<Meta> {
        let take = |o: usize, n: usize| v.get(o..o + n);
        let schema = u32::from_le_bytes(take(0, 4)?.try_into().ok()?);
        if !(MIN_SCHEMA..=SCHEMA).contains(&schema) {
            return None;
        }
        let generation = u64::from_le_bytes(take(4, 8)?.try_into().ok()?);
        let baseline_id = take(12, 16)?.try_into().ok()?;
        let written = i64::from_le_bytes(take(28, 8)?.try_into().ok()?);
        let count = u64::from_le_bytes(take(36, 8)?.try_into().ok()?);
        let digest = take(44, 32)?.try_into().ok()?;
        let n = u32::from_le_bytes(take(76, 4)?.try_into().ok()?) as usize;
        let root = take(80, n)?.to_vec();
        let signature = match *v.get(80 + n)? {
            0 if v.len() == 81 + n => None,
            1 if v.len() == 81 + n + 96 => {
                let k = take(81 + n, 32)?.try_into().ok()?;
                let sig = take(81 + n + 32, 64)?.try_into().ok()?;
                Some((k, sig))
            }
            _ => return None,
        };
        Some(Meta {
            schema,
            generation,
            baseline_id,
            written,
            count,
            digest,
            root,
            signature,
        })
    }
}

/// An open baseline database. Hold it briefly: sled allows one process.
pub struct Store {
    db: sled::Db,
    path: PathBuf,
}

impl Store {
    /// Opens an existing baseline; [`Error::NoBaseline`] when there is none.
    pub fn open(path: &Path) -> Result<Store> {
        if !path.join("conf").exists() && !path.join("db").exists() {
            return Err(Error::NoBaseline(path.to_path_buf()));
        }
        let store = Store::open_db(path)?;
        store.check_schema()?;
        Ok(store)
    }

    /// Opens or creates the database for `init`. Refuses to touch one that
    /// holds a baseline unless `force`.
    pub fn create(path: &Path, force: bool) -> Result<Store> {
        std::fs::create_dir_all(path).map_err(|e| Error::io("create baseline dir", path, e))?;
        restrict_dir(path);
        let store = Store::open_db(path)?;
        store.check_schema()?;
        if !force && store.current_meta()?.is_some() {
            return Err(Error::BaselineExists(path.to_path_buf()));
        }
        store
            .db
            .insert(KEY_SCHEMA, &SCHEMA.to_le_bytes())
            .map_err(|e| store.sled_err(e))?;
        Ok(store)
    }

    fn open_db(path: &Path) -> Result<Store> {
        let start = Instant::now();
        loop {
            let cfg = sled::Config::new()
                .path(path)
                // The records are read once per run: a large page cache
                // would only raise peak memory.
                .cache_capacity(8 << 20)
                .mode(sled::Mode::HighThroughput)
                .flush_every_ms(None);
            // sled has panicked on damaged files; a damaged baseline must be
            // an error, not a crash.
            let opened = quiet_catch(|| cfg.open());
            match opened {
                Ok(Ok(db)) => {
                    return Ok(Store {
                        db,
                        path: path.to_path_buf(),
                    })
                }
                Ok(Err(sled::Error::Io(e)))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.to_string().contains("lock") =>
                {
                    if start.elapsed() > LOCK_WAIT {
                        return Err(Error::Locked {
                            path: path.to_path_buf(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(Err(sled::Error::Io(e))) => return Err(Error::io("open baseline", path, e)),
                Ok(Err(e)) => {
                    return Err(Error::CorruptBaseline {
                        path: path.to_path_buf(),
                        msg: e.to_string(),
                    })
                }
                Err(msg) => {
                    return Err(Error::CorruptBaseline {
                        path: path.to_path_buf(),
                        msg: format!("the database could not be opened ({msg})"),
                    })
                }
            }
        }
    }

    fn sled_err(&self, e: sled::Error) -> Error {
        match e {
            sled::Error::Io(io) => Error::io("baseline", &self.path, io),
            other => Error::CorruptBaseline {
                path: self.path.clone(),
                msg: other.to_string(),
            },
        }
    }

    fn corrupt(&self, msg: impl Into<String>) -> Error {
        Error::CorruptBaseline {
            path: self.path.clone(),
            msg: msg.into(),
        }
    }

    fn check_schema(&self) -> Result<()> {
        match self.db.get(KEY_SCHEMA).map_err(|e| self.sled_err(e))? {
            None => Ok(()),
            Some(v) => {
                let found = u32::from_le_bytes(
                    v.as_ref()
                        .try_into()
                        .map_err(|_| self.corrupt("unreadable schema version"))?,
                );
                if found > SCHEMA {
                    Err(Error::NewerSchema {
                        path: self.path.clone(),
                        found,
                        supported: SCHEMA,
                    })
                } else if found < MIN_SCHEMA {
                    Err(self.corrupt(format!("schema {found} is older than any this build reads")))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The live generation's facts, if a generation was ever completed.
    pub fn current_meta(&self) -> Result<Option<Meta>> {
        match self.db.get(KEY_CURRENT).map_err(|e| self.sled_err(e))? {
            None => Ok(None),
            Some(v) => Meta::decode(&v)
                .map(Some)
                .ok_or_else(|| self.corrupt("unreadable generation header")),
        }
    }

    /// Loads the live generation, sorted by path, after verifying it.
    pub fn load(&self) -> Result<(Meta, Vec<Record>)> {
        self.load_with_extra().map(|(m, r, _)| (m, r))
    }

    /// Like [`Store::load`], plus the generation's extra pairs (the
    /// `extra/N` tree, e.g. provenance state), covered by the same digest.
    #[allow(clippy::type_complexity)]
    pub fn load_with_extra(&self) -> Result<(Meta, Vec<Record>, Vec<(Vec<u8>, Vec<u8>)>)> {
        let meta = self
            .current_meta()?
            .ok_or_else(|| Error::NoBaseline(self.path.clone()))?;
        let tree = self
            .db
            .open_tree(gen_name(meta.generation))
            .map_err(|e| self.sled_err(e))?;
        let mut records = Vec::with_capacity(meta.count.min(1 << 24) as usize);
        let mut hasher = blake3::Hasher::new();
        for (expect, item) in tree.iter().enumerate() {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            if k.as_ref() != (expect as u32).to_be_bytes() {
                return Err(self.corrupt(format!(
                    "generation {} has a missing or foreign chunk",
                    meta.generation
                )));
            }
            let mut rest: &[u8] = &v;
            while !rest.is_empty() {
                let (path, value, tail) = split_pair(rest).ok_or_else(|| {
                    self.corrupt(format!(
                        "generation {} holds a truncated chunk",
                        meta.generation
                    ))
                })?;
                rest = tail;
                digest_pair(&mut hasher, path, value);
                let r = Record::decode_value(path, value).ok_or_else(|| {
                    self.corrupt(format!(
                        "undecodable record for {}",
                        crate::escape::for_terminal(path)
                    ))
                })?;
                records.push(r);
            }
        }
        // The extra tree is hashed after the records, behind a separator,
        // only when it holds anything: generations written without one keep
        // their digest, and deleting or adding one breaks it.
        let mut extra = Vec::new();
        let extra_name = extra_name(meta.generation);
        if self
            .db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == extra_name.as_bytes())
        {
            let tree = self
                .db
                .open_tree(&extra_name)
                .map_err(|e| self.sled_err(e))?;
            for item in tree.iter() {
                let (k, v) = item.map_err(|e| self.sled_err(e))?;
                extra.push((k.to_vec(), v.to_vec()));
            }
        }
        if !extra.is_empty() {
            hasher.update(EXTRA_SEPARATOR);
            for (k, v) in &extra {
                digest_pair(&mut hasher, k, v);
            }
        }
        if records.len() as u64 != meta.count {
            return Err(self.corrupt(format!(
                "generation {} should hold {} records but holds {}",
                meta.generation,
                meta.count,
                records.len()
            )));
        }
        if *hasher.finalize().as_bytes() != meta.digest {
            return Err(self.corrupt(format!(
                "generation {} does not match its digest: records were altered",
                meta.generation
            )));
        }
        if records.windows(2).any(|w| w[0].path >= w[1].path) {
            return Err(self.corrupt(format!(
                "generation {} is not sorted by path",
                meta.generation
            )));
        }
        Ok((meta, records, extra))
    }

    /// Writes `records` (sorted, unique paths) as a new generation and
    /// switches to it atomically. Returns the new generation's facts.
    pub fn write_generation(
        &self,
        records: &[Record],
        root: &[u8],
        signer: Option<&ed25519_dalek::SigningKey>,
    ) -> Result<Meta> {
        self.write_generation_with_extra(records, &[], root, signer)
    }

    /// Like [`Store::write_generation`], with extra (key, value) pairs
    /// (sorted, unique keys) kept in tree `extra/N` of the same generation,
    /// written and flushed before the switch and covered by its digest.
    pub fn write_generation_with_extra(
        &self,
        records: &[Record],
        extra: &[(Vec<u8>, Vec<u8>)],
        root: &[u8],
        signer: Option<&ed25519_dalek::SigningKey>,
    ) -> Result<Meta> {
        let old = self.current_meta()?;
        let generation = old.as_ref().map_or(1, |m| m.generation + 1);
        // Before any value of this schema is written (and flushed with the
        // records, before the switch): a build that cannot read them must
        // see a newer schema, not a corrupt store.
        self.db
            .insert(KEY_SCHEMA, &SCHEMA.to_le_bytes())
            .map_err(|e| self.sled_err(e))?;
        let name = gen_name(generation);
        // A tree of this name can only be left over from a write that never
        // switched (a crash): start it afresh.
        self.db.drop_tree(&name).map_err(|e| self.sled_err(e))?;
        let tree = self.db.open_tree(&name).map_err(|e| self.sled_err(e))?;
        let mut enc = Encoder::default();
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for r in records {
            if let Some((key, chunk)) = enc.push(r) {
                batch.insert(&key, chunk);
                in_batch += 1;
                if in_batch == BATCH {
                    tree.apply_batch(std::mem::take(&mut batch))
                        .map_err(|e| self.sled_err(e))?;
                    in_batch = 0;
                }
            }
        }
        let (tail, count, mut hasher) = enc.finish_open();
        if let Some((key, chunk)) = tail {
            batch.insert(&key, chunk);
        }
        tree.apply_batch(batch).map_err(|e| self.sled_err(e))?;
        let xname = extra_name(generation);
        self.db.drop_tree(&xname).map_err(|e| self.sled_err(e))?;
        if !extra.is_empty() {
            let xtree = self.db.open_tree(&xname).map_err(|e| self.sled_err(e))?;
            hasher.update(EXTRA_SEPARATOR);
            let mut batch = sled::Batch::default();
            for (k, v) in extra {
                digest_pair(&mut hasher, k, v);
                batch.insert(k.as_slice(), v.as_slice());
            }
            xtree.apply_batch(batch).map_err(|e| self.sled_err(e))?;
        }
        let digest = *hasher.finalize().as_bytes();
        self.flush()?;
        let mut meta = Meta {
            schema: SCHEMA,
            generation,
            baseline_id: old.as_ref().map_or_else(new_id, |m| m.baseline_id),
            written: now_secs(),
            count,
            digest,
            root: root.to_vec(),
            signature: None,
        };
        // Signed inside the same insert that switches generations: a
        // crash cannot leave a generation without its signature.
        if let Some(key) = signer {
            meta.signature = Some(crate::baseline::signing::sign(key, &meta.signed_bytes()));
        }
        self.db
            .insert(KEY_CURRENT, meta.encode())
            .map_err(|e| self.sled_err(e))?;
        self.flush()?;
        self.drop_stale(generation)?;
        Ok(meta)
    }

    /// Drops every generation tree but `keep` (old ones and leftovers of
    /// interrupted writes).
    fn drop_stale(&self, keep: u64) -> Result<()> {
        let (keep, keep_extra) = (gen_name(keep), extra_name(keep));
        for name in self.db.tree_names() {
            let stale_gen = name.starts_with(b"gen/") && name.as_ref() != keep.as_bytes();
            let stale_extra = name.starts_with(b"extra/") && name.as_ref() != keep_extra.as_bytes();
            if stale_gen || stale_extra {
                self.db.drop_tree(&name).map_err(|e| self.sled_err(e))?;
            }
        }
        self.flush()
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.sled_err(e)).map(|_| ())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn gen_name(g: u64) -> String {
    format!("gen/{g:020}")
}

fn extra_name(g: u64) -> String {
    format!("extra/{g:020}")
}

/// Separates the records from the extra pairs in a generation's digest
/// (no record key is empty, so this cannot collide with a record pair).
const EXTRA_SEPARATOR: &[u8] = b"\0\0\0\0\0\0\0\0libwarden-extra";

/// A stored chunk: its key and its bytes.
pub type Chunk = ([u8; 4], Vec<u8>);

/// Turns sorted records into stored chunks and keeps the generation's
/// digest and count as it goes: exactly the work of a write minus sled, so
/// `bench` can time the store phase without touching a baseline.
#[derive(Default)]
pub struct Encoder {
    hasher: blake3::Hasher,
    chunk: Vec<u8>,
    value: Vec<u8>,
    next_key: u32,
    count: u64,
}

impl Encoder {
    /// Adds one record; returns a full chunk (key, bytes) when one is ready.
    pub fn push(&mut self, r: &Record) -> Option<Chunk> {
        self.value.clear();
        r.encode_value(&mut self.value);
        digest_pair(&mut self.hasher, &r.path, &self.value);
        if self.chunk.capacity() == 0 {
            self.chunk.reserve(CHUNK_BYTES + 512);
        }
        push_pair(&mut self.chunk, &r.path, &self.value);
        self.count += 1;
        if self.chunk.len() >= CHUNK_BYTES {
            self.take()
        } else {
            None
        }
    }

    /// The last, partial chunk (if any), the record count and the digest.
    pub fn finish(self) -> (Option<Chunk>, u64, [u8; 32]) {
        let (tail, count, hasher) = self.finish_open();
        (tail, count, *hasher.finalize().as_bytes())
    }

    /// Like [`Encoder::finish`], with the digest still open for what the
    /// generation stores beside its records.
    fn finish_open(mut self) -> (Option<Chunk>, u64, blake3::Hasher) {
        let tail = if self.chunk.is_empty() {
            None
        } else {
            self.take()
        };
        (tail, self.count, self.hasher)
    }

    fn take(&mut self) -> Option<Chunk> {
        let key = self.next_key.to_be_bytes();
        self.next_key += 1;
        Some((key, std::mem::take(&mut self.chunk)))
    }
}

fn push_pair(out: &mut Vec<u8>, k: &[u8], v: &[u8]) {
    out.extend_from_slice(&(k.len() as u32).to_le_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(v);
}

/// One (path, value) pair off the front of a chunk, and the rest.
fn split_pair(b: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    fn field(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let n = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let body = b.get(4..4usize.checked_add(n)?)?;
        Some((body, &b[4 + n..]))
    }
    let (k, b) = field(b)?;
    let (v, b) = field(b)?;
    Some((k, v, b))
}

fn digest_pair(h: &mut blake3::Hasher, k: &[u8], v: &[u8]) {
    h.update(&(k.len() as u64).to_le_bytes());
    h.update(k);
    h.update(&(v.len() as u64).to_le_bytes());
    h.update(v);
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Fills `buf` from the operating system's random source.
pub use crate::sys::fill_random;

/// 16 random bytes: the baseline id.
fn new_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if fill_random(&mut id).is_err() {
        // Unique enough as a fallback: time and pid.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        id = (t ^ ((std::process::id() as u128) << 64)).to_le_bytes();
    }
    id
}

/// The baseline directory holds what the host trusts: keep others out.
fn restrict_dir(path: &Path) {
    crate::sys::restrict_dir(path)
}

/// Runs `f`, turning a panic into an error message without printing the
/// default panic report.
fn quiet_catch<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    r.map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FileClass, FileType};

    fn rec(p: &str, h: u8) -> Record {
        Record {
            path: p.as_bytes().to_vec(),
            ftype: FileType::File,
            size: 1,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            dev: 1,
            inode: 2,
            nlink: 1,
            mtime: (1, 0),
            ctime: (1, 0),
            blake3: Some([h; 32]),
            unhashed: None,
            target: None,
            class: FileClass::Other,
            facts: None,
        }
    }

    #[test]
    fn generations_switch_and_old_ones_go() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("db");
        assert!(matches!(Store::open(&p), Err(Error::NoBaseline(_))));
        let s = Store::create(&p, false).unwrap();
        let m1 = s
            .write_generation(&[rec("/a", 1), rec("/b", 2)], b"/", None)
            .unwrap();
        let m2 = s.write_generation(&[rec("/a", 3)], b"/", None).unwrap();
        assert_eq!((m1.generation, m2.generation), (1, 2));
        assert_eq!(m1.baseline_id, m2.baseline_id);
        let (m, recs) = s.load().unwrap();
        assert_eq!(m, m2);
        assert_eq!(recs, vec![rec("/a", 3)]);
        assert_eq!(
            s.db.tree_names()
                .iter()
                .filter(|n| n.starts_with(b"gen/"))
                .count(),
            1
        );
        drop(s);
        assert!(matches!(
            Store::create(&p, false),
            Err(Error::BaselineExists(_))
        ));
    }

    #[test]
    fn altered_record_is_detected() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::create(t.path(), false).unwrap();
        let m = s.write_generation(&[rec("/a", 1)], b"/", None).unwrap();
        let tree = s.db.open_tree(gen_name(m.generation)).unwrap();
        let mut v = Vec::new();
        rec("/a", 9).encode_value(&mut v);
        let mut chunk = Vec::new();
        push_pair(&mut chunk, b"/a", &v);
        tree.insert(0u32.to_be_bytes(), chunk).unwrap();
        assert!(matches!(s.load(), Err(Error::CorruptBaseline { .. })));
    }

    #[test]
    fn many_records_round_trip_and_a_lost_chunk_is_detected() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::create(t.path(), false).unwrap();
        let recs: Vec<Record> = (0..5000)
            .map(|i| rec(&format!("/usr/lib/lib{i:06}.so"), i as u8))
            .collect();
        let m = s.write_generation(&recs, b"/", None).unwrap();
        assert_eq!(m.count, 5000);
        let (_, back) = s.load().unwrap();
        assert_eq!(back, recs);
        let tree = s.db.open_tree(gen_name(m.generation)).unwrap();
        assert!(tree.len() > 2, "5000 records must span several chunks");
        tree.remove(1u32.to_be_bytes()).unwrap();
        assert!(matches!(s.load(), Err(Error::CorruptBaseline { .. })));
    }

    #[test]
    fn newer_schema_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::create(t.path(), false).unwrap();
        s.db.insert(KEY_SCHEMA, &(SCHEMA + 1).to_le_bytes())
            .unwrap();
        s.db.flush().unwrap();
        drop(s);
        assert!(matches!(
            Store::open(t.path()),
            Err(Error::NewerSchema { .. })
        ));
    }

    #[test]
    fn schema_2_stores_are_read_and_raised_by_the_next_write() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::create(t.path(), false).unwrap();
        // What a schema-2 build wrote: V1 values under a signed schema-2
        // header.
        let r = rec("/a", 1);
        let mut v = Vec::new();
        r.encode_value(&mut v);
        assert_eq!(v.pop(), Some(0), "no facts");
        v[0] = crate::record::ENCODING_V1;
        let mut chunk = Vec::new();
        push_pair(&mut chunk, b"/a", &v);
        let mut h = blake3::Hasher::new();
        digest_pair(&mut h, b"/a", &v);
        s.db.open_tree(gen_name(1))
            .unwrap()
            .insert(0u32.to_be_bytes(), chunk)
            .unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let mut meta = Meta {
            schema: 2,
            generation: 1,
            baseline_id: [5; 16],
            written: 7,
            count: 1,
            digest: *h.finalize().as_bytes(),
            root: b"/".to_vec(),
            signature: None,
        };
        meta.signature = Some(crate::baseline::signing::sign(&key, &meta.signed_bytes()));
        s.db.insert(KEY_SCHEMA, &2u32.to_le_bytes()).unwrap();
        s.db.insert(KEY_CURRENT, meta.encode()).unwrap();
        s.db.flush().unwrap();
        drop(s);

        let s = Store::open(t.path()).unwrap();
        let (m, recs) = s.load().unwrap();
        assert_eq!(m, meta);
        assert_eq!(recs, vec![r]);
        assert!(crate::baseline::signing::verify(
            &key.verifying_key(),
            m.signature.as_ref(),
            &m.signed_bytes()
        )
        .is_ok());
        // The next generation is this schema, and so is the store: an older
        // build now refuses it as newer instead of misreading it.
        let m2 = s.write_generation(&recs, b"/", None).unwrap();
        assert_eq!(m2.schema, SCHEMA);
        let stored = s.db.get(KEY_SCHEMA).unwrap().unwrap();
        assert_eq!(stored.as_ref(), SCHEMA.to_le_bytes());
        assert_eq!(s.load().unwrap().1, recs);
    }

    #[test]
    fn schemas_older_than_2_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::create(t.path(), false).unwrap();
        s.db.insert(KEY_SCHEMA, &1u32.to_le_bytes()).unwrap();
        s.db.flush().unwrap();
        drop(s);
        assert!(matches!(
            Store::open(t.path()),
            Err(Error::CorruptBaseline { .. })
        ));
    }

    #[test]
    fn extra_pairs_round_trip_and_are_covered_by_the_digest() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::create(t.path(), false).unwrap();
        let extra = vec![(b"v\0libc6".to_vec(), b"2.36".to_vec())];
        let m = s
            .write_generation_with_extra(&[], &extra, b"/", None)
            .unwrap();
        let (_, _, got) = s.load_with_extra().unwrap();
        assert_eq!(got, extra);
        let x = s.db.open_tree(extra_name(m.generation)).unwrap();
        x.insert(b"v\0libc6", b"9.99".to_vec()).unwrap();
        assert!(s.load().is_err(), "altered extra pairs must be detected");
        x.clear().unwrap();
        assert!(s.load().is_err(), "removed extra pairs must be detected");
        // A later generation without extra pairs drops the old tree.
        s.write_generation(&[], b"/", None).unwrap();
        assert!(s.load_with_extra().unwrap().2.is_empty());
        assert!(!s.db.tree_names().iter().any(|n| n.starts_with(b"extra/")));
    }
}
