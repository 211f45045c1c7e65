//! The baseline store, owned by this module alone: sled (0.34) contained
//! so that none of its failure modes reaches the live generation.
//!
//! Layout: the baseline path is a directory holding
//!
//! - `gen-<N>/`, one sled database per generation, holding only that
//!   generation (see [`super::sleddb`]: records as path-sorted *chunks* of
//!   about [`CHUNK_BYTES`], which makes a baseline of 70,000 files cost a
//!   few hundred sled inserts instead of 70,000; its extra pairs; its
//!   [`Meta`] as `current`);
//! - `CURRENT`, the pointer naming the live generation's directory and
//!   holding its [`Meta`] ([`super::pointer`]);
//! - `lock`, the writers' lock ([`super::lock`]).
//!
//! A write takes the lock, fills a fresh `gen-<N+1>/` (the records encoded
//! once, as they stream in, the header's count, digest and signature taken
//! from the bytes stored), flushes and closes it, opens it again twice,
//! the first time reading it all back against its digest (sled finishes
//! its own recovery bookkeeping, a snapshot and consolidated pages, on the
//! first opens after a write: done here, by the writer, so that a reader's
//! open finds nothing left to write), syncs the
//! directories, and only then renames a new `CURRENT` into place. A
//! failed, killed or hung writer therefore never touches the live
//! generation, and a reader never opens a database a writer holds or
//! one that was not closed cleanly; generation N−1 is kept until the next
//! write, which removes it (and any unfinished directory) once N has been
//! current. Every sled call runs under [`super::watchdog`]: a panic is an
//! error (reading: "corrupt"; writing: the write failed), and a writer
//! stuck in sled ends the run with exit 74 instead of hanging. A write
//! that clearly cannot fit in the free space ([`super::space`]) is refused
//! before it starts.
//!
//! Loading checks the count and a BLAKE3 digest of every key and value
//! against the generation's [`Meta`] (the one in `CURRENT` must equal the
//! one in the database), so a damaged store is reported, never trusted; a
//! store that exists but cannot be read says so (exit 74), and one that
//! is damaged says "corrupt" (exit 65), never "no baseline".
//!
//! The old layout (schemas 2 and 3: one sled database at the baseline path
//! holding `schema`, `current` and the live `gen/N` tree) is still read;
//! the next write puts its generation in the new layout and the old files
//! stay, as generation N−1, until the write after that.
//!
//! Schema 3 is schema 2 with record values that may carry the file's facts
//! (`record::ENCODING_V2`), which a schema-2 build would refuse as corrupt.
//! Schema-2 stores are still read (their values are V1: no facts), and each
//! generation's header keeps the schema it was written (and signed) with.
//!
//! Schema 4 is schema 3 with acknowledged findings among the extra pairs
//! (keys under [`ACK_PREFIX`], `crate::acknowledge`). Only a generation
//! that holds acknowledgements is written as schema 4: a schema-3 build
//! would ignore them and report what the operator acknowledged, so it must
//! refuse the generation (a newer schema, exit 65) rather than misjudge.
//! A generation without any is written as schema 3, byte for byte what the
//! previous build wrote, signed and verified the same way.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::lock::{self, WriterLock};
use super::pointer::{self, Pointer};
pub use super::sleddb::Pairs;
use super::sleddb::{Loaded, SledDb};
use super::watchdog::{self, Outcome};
use crate::error::{Error, Result};
use crate::record::Record;

/// The newest schema this build writes and understands.
pub const SCHEMA: u32 = 4;
/// The schema of a generation without acknowledgements.
pub const PLAIN_SCHEMA: u32 = 3;
/// Extra pairs under this key prefix are acknowledged findings; a
/// generation holding any is [`SCHEMA`] 4.
pub const ACK_PREFIX: &[u8] = b"a\0";
/// Extra pairs under this key prefix are the package owners of the
/// monitored paths (`provenance::State`): tens of thousands of paths,
/// needed only to explain files a package transaction removed, so a
/// `check` loads them only then ([`Store::extra_of`]).
pub const OWNER_PREFIX: &[u8] = b"o\0";
/// The directory inside a baseline path that holds the baselines of
/// container images (`crate::baseline::Location::for_image`), one store
/// each; the host's store never reads, counts or prunes it.
pub const IMAGES_DIR: &str = "images";
/// The oldest schema this build still reads (same layout, no facts).
pub use super::sleddb::MIN_SCHEMA;
/// How long to wait for another libwarden's lock (or a killed one's to be
/// released) before saying the baseline is locked.
const LOCK_WAIT: Duration = Duration::from_secs(3);
/// Target size of one stored chunk of records. Well under a quarter of
/// sled's segment size (512 KiB), so chunks stay inline in the log rather
/// than becoming one blob file each.
pub const CHUNK_BYTES: usize = 32 << 10;
/// The least time a store job gets before the watchdog gives up on it; it
/// grows by a second per MiB the job moves.
const STORE_LIMIT: Duration = Duration::from_secs(30);

/// What the baseline path holds.
#[derive(Clone, Debug, PartialEq)]
enum Found {
    Nothing,
    /// The old layout: one sled database at the path.
    Legacy,
    Current(Box<Pointer>),
}

/// A baseline store. Opened with [`Store::open`] it only reads; from
/// [`Store::open_for_write`] or [`Store::create`] it holds the writers'
/// lock until dropped.
pub struct Store {
    path: PathBuf,
    lock: Option<WriterLock>,
}

impl Store {
    /// Opens an existing baseline; [`Error::NoBaseline`] when there is
    /// none, [`Error::CorruptBaseline`] when what is there is damaged,
    /// [`Error::UnreadableBaseline`] when this user may not read it.
    pub fn open(path: &Path) -> Result<Store> {
        match survey(path)? {
            Found::Nothing => Err(Error::NoBaseline(path.to_path_buf())),
            _ => Ok(Store {
                path: path.to_path_buf(),
                lock: None,
            }),
        }
    }

    /// Like [`Store::open`], holding the writers' lock: a concurrent
    /// `update` cannot interleave with the generation this one writes.
    pub fn open_for_write(path: &Path) -> Result<Store> {
        let mut store = Store::open(path)?;
        store.lock = Some(lock::acquire(path, LOCK_WAIT)?);
        Ok(store)
    }

    /// Takes the store for `init`. Unless `force`, refuses anything at the
    /// path: a baseline, a damaged one, a file, any directory that is not
    /// empty (bar the lock of an `init` that never wrote).
    pub fn create(path: &Path, force: bool) -> Result<Store> {
        if !force {
            refuse_existing(path)?;
        }
        match std::fs::metadata(path) {
            Ok(m) if !m.is_dir() => {
                std::fs::remove_file(path).map_err(|e| io_or_unreadable(path, "replace", e))?
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_or_unreadable(path, "read baseline", e)),
        }
        // An image's store sits in `<db>/images/`: that directory (and the
        // baseline directory, when this creates it) is as private as each
        // store, or the image names would be listed to every user.
        let images = path
            .parent()
            .filter(|p| p.file_name().is_some_and(|n| n == IMAGES_DIR));
        let db_new = images
            .and_then(|i| i.parent())
            .filter(|d| !d.as_os_str().is_empty() && !d.exists());
        std::fs::create_dir_all(path).map_err(|e| Error::io("create baseline dir", path, e))?;
        restrict_dir(path);
        if let Some(i) = images {
            restrict_dir(i);
        }
        if let Some(d) = db_new {
            restrict_dir(d);
        }
        let lock = lock::acquire(path, LOCK_WAIT)?;
        if !force {
            // Another init may have finished while this one waited.
            refuse_existing(path)?;
        }
        Ok(Store {
            path: path.to_path_buf(),
            lock: Some(lock),
        })
    }

    /// The live generation's facts, if a generation was ever completed.
    pub fn current_meta(&self) -> Result<Option<Meta>> {
        match survey(&self.path)? {
            Found::Nothing => Ok(None),
            Found::Current(p) => Ok(Some(p.meta)),
            Found::Legacy => {
                let path = self.path.clone();
                read_job(&self.path, 0, move || {
                    let db = SledDb::open_read(&path, LOCK_WAIT)?;
                    let r = db.check_schema().and_then(|()| db.current_meta());
                    finish_read(db, r)
                })
            }
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
        self.load_keeping(Pairs::All)
    }

    /// Like [`Store::load_with_extra`], keeping only the extra pairs `keep`
    /// selects (all are checked against the digest).
    #[allow(clippy::type_complexity)]
    pub fn load_keeping(
        &self,
        keep: Pairs,
    ) -> Result<(Meta, Vec<Record>, Vec<(Vec<u8>, Vec<u8>)>)> {
        let found = survey(&self.path)?;
        match self.load_found(&found, keep, true) {
            // A writer switched generations while this read the old one:
            // read the new one.
            Err(e @ (Error::CorruptBaseline { .. } | Error::Io { .. })) => {
                match survey(&self.path) {
                    Ok(now) if now != found => self.load_found(&now, keep, true),
                    _ => Err(e),
                }
            }
            other => other,
        }
    }

    /// The extra pairs `keep` selects of the live generation, read again
    /// (and checked against its digest) without decoding its records;
    /// refused unless the live generation is still `want` (same number,
    /// count and digest), so they are the pairs of the generation judged.
    pub fn extra_of(&self, want: &Meta, keep: Pairs) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let found = survey(&self.path)?;
        let (meta, _, extra) = self.load_found(&found, keep, false)?;
        if &meta != want {
            return Err(corrupt(
                &self.path,
                format!(
                    "generation {} was replaced by generation {} while it was judged",
                    want.generation, meta.generation
                ),
            ));
        }
        Ok(extra)
    }

    fn load_found(&self, found: &Found, keep: Pairs, decode: bool) -> Result<Loaded> {
        let read = move |raw: super::sleddb::Raw| -> Result<Loaded> {
            if decode {
                let loaded = raw.decode_keeping(keep);
                // The chunks were freed between the decoded records: their
                // pages go back now, not after the walk that follows (where
                // a check's memory peaks).
                crate::sys::release_free_memory();
                loaded
            } else {
                raw.check_keeping(keep).map(|(m, x)| (m, Vec::new(), x))
            }
        };
        match found {
            Found::Nothing => Err(Error::NoBaseline(self.path.clone())),
            Found::Legacy => {
                let path = self.path.clone();
                read_job(&self.path, 0, move || {
                    let db = SledDb::open_read(&path, LOCK_WAIT)?;
                    let r = db.check_schema().and_then(|()| db.load_raw());
                    read(finish_read(db, r)?)
                })
            }
            Found::Current(p) => {
                let dir = self.path.join(&p.dir);
                let want = p.meta.clone();
                let at = dir.clone();
                read_job(&at, want.count, move || {
                    match std::fs::metadata(dir.join("db")) {
                        Ok(m) if m.is_file() => {}
                        Ok(_) => return Err(corrupt(&dir, "its data file is missing")),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            return Err(corrupt(
                                &dir,
                                "the current generation's directory or data file is missing",
                            ))
                        }
                        Err(e) => return Err(io_or_unreadable(&dir, "read baseline", e)),
                    }
                    let db = SledDb::open_read(&dir, LOCK_WAIT)?;
                    let r = db.check_schema().and_then(|()| db.load_raw());
                    // Decoded once the database is closed (see `Raw`).
                    let loaded = read(finish_read(db, r)?)?;
                    if loaded.0 != want {
                        return Err(corrupt(
                            &dir,
                            format!(
                                "generation {} does not match the header its pointer holds",
                                want.generation
                            ),
                        ));
                    }
                    Ok(loaded)
                })
            }
        }
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
        self.write_generation_from(records.to_vec(), extra.to_vec(), root, signer)
    }

    /// [`Store::write_generation_with_extra`], consuming what it writes:
    /// each record is dropped once encoded and each extra pair once sled
    /// has it, so the generation is never held whole beside sled's copy
    /// of it (a record shared with a finding stays, held by the finding).
    pub fn write_generation_from(
        &self,
        records: Vec<Record>,
        extra: Vec<(Vec<u8>, Vec<u8>)>,
        root: &[u8],
        signer: Option<&ed25519_dalek::SigningKey>,
    ) -> Result<Meta> {
        // A store opened only to read takes the lock for the write.
        let _held = match self.lock {
            Some(_) => None,
            None => Some(lock::acquire(&self.path, LOCK_WAIT)?),
        };
        // A store too damaged to survey (an `init --force` replacing it)
        // starts a new baseline.
        let found = survey(&self.path).unwrap_or(Found::Nothing);
        let old = match &found {
            Found::Current(p) => Some(p.meta.clone()),
            Found::Legacy => self.current_meta().ok().flatten(),
            Found::Nothing => None,
        };
        let generation = old.as_ref().map_or(1, |m| m.generation + 1);
        let kept = match &old {
            Some(m) => format!("generation {} is intact", m.generation),
            None => "no generation was written".to_string(),
        };
        prune(&self.path, &found);
        // What the judges freed, before sled's pages are allocated.
        crate::sys::release_free_memory();

        // The records are encoded once, as they are written: the space
        // check takes the least they can encode to (`least_encoded`), an
        // underestimate like the rest of it (`space::needed`).
        let payload: u64 = records.iter().map(least_encoded).sum::<u64>()
            + extra
                .iter()
                .map(|(k, v)| (8 + k.len() + v.len()) as u64)
                .sum::<u64>();
        let need = super::space::needed(payload);
        if let Some(free) = super::space::available(&self.path) {
            if free < need {
                return Err(Error::StoreWrite {
                    path: self.path.clone(),
                    msg: format!(
                        "not enough free space for generation {generation}: it needs about {}, {} are free; {kept}",
                        mib(need),
                        mib(free)
                    ),
                });
            }
        }
        let schema = if extra.iter().any(|(k, _)| k.starts_with(ACK_PREFIX)) {
            SCHEMA
        } else {
            PLAIN_SCHEMA
        };
        // The header but for what the write finds: the count and digest
        // (and so the signature) come from the same bytes sled stores.
        let header = Meta {
            schema,
            generation,
            baseline_id: old.as_ref().map_or_else(new_id, |m| m.baseline_id),
            written: now_secs(),
            count: 0,
            digest: [0; 32],
            root: root.to_vec(),
            signature: None,
        };

        let dir_name = pointer::gen_dir(generation);
        let dir = self.path.join(&dir_name);
        let limit = limit_for(3 * payload);
        let (pieces_tx, pieces) = crossbeam_channel::bounded::<Piece>(STREAM_CHUNKS);
        let job = {
            let (dir, base, signer) = (dir.clone(), self.path.clone(), signer.cloned());
            move || {
                write_job(
                    &base,
                    &dir,
                    pieces.into_iter(),
                    extra,
                    header,
                    signer.as_ref(),
                )
            }
        };
        // A failed write removes what it wrote (space on a full disk, and
        // no half generation for a reader to mistake for damage).
        let failed = |msg: String| {
            let _ = std::fs::remove_dir_all(&dir);
            Error::StoreWrite {
                path: self.path.clone(),
                msg,
            }
        };
        let deadline = std::time::Instant::now() + limit;
        let outcome = std::thread::scope(|s| {
            s.spawn(move || encode_into(records, &pieces_tx, deadline));
            watchdog::run(limit, job)
        });
        let meta = match outcome {
            Outcome::Done(Ok(meta)) => meta,
            Outcome::Done(Err(e)) => {
                return Err(match e {
                    Error::Io { op, path, source } => {
                        failed(format!("{op} {}: {source}; {kept}", path.display()))
                    }
                    Error::CorruptBaseline { msg, .. } => failed(format!(
                        "generation {generation} did not read back intact ({msg}); {kept}"
                    )),
                    other => {
                        let _ = std::fs::remove_dir_all(&dir);
                        other
                    }
                })
            }
            Outcome::Panicked(msg) => {
                return Err(failed(format!(
                    "the store failed while writing generation {generation} ({msg}); {kept}"
                )))
            }
            Outcome::TimedOut => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(stuck(&self.path, limit, &kept));
            }
        };
        match pointer::write(&self.path, &dir_name, &meta) {
            Ok(()) => Ok(meta),
            Err(pointer::WriteError::Before(e)) => Err(failed(format!(
                "cannot make generation {generation} current: {e}; {kept}"
            ))),
            // The rename happened: the generation stays.
            Err(pointer::WriteError::After(e)) => Err(Error::StoreWrite {
                path: self.path.clone(),
                msg: format!(
                    "generation {generation} is current, but syncing its switch failed: {e}"
                ),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The error for a writer the watchdog gave up on (exit 74).
fn stuck(path: &Path, limit: Duration, kept: &str) -> Error {
    Error::StoreWrite {
        path: path.to_path_buf(),
        msg: format!(
            "the baseline store did not finish writing within {}s (disk full?); {kept}",
            limit.as_secs()
        ),
    }
}

/// Chunks in flight between the encoder and the store thread: about a
/// sled batch, so the encoder runs ahead of sled by at most one.
const STREAM_CHUNKS: usize = 64;

/// What the encoder hands the store thread: the chunks in order, then the
/// count and the digest so far (the extra pairs and the header are the
/// store thread's). A stream without its end is a write that failed.
pub(super) enum Piece {
    /// A chunk as sled keeps it: made on the encoder's thread, so that
    /// the copy into sled's buffer is not the store thread's work (the
    /// store thread is the write's critical path).
    Chunk([u8; 4], sled::IVec),
    End(u64, Box<StreamHasher>),
}

impl Piece {
    pub(super) fn chunk((key, bytes): Chunk) -> Piece {
        Piece::Chunk(key, sled::IVec::from(bytes))
    }
}

/// The fewest bytes `r` encodes to in a chunk: the pair's lengths, its
/// path and the fixed fields of its value (the facts, a digest or a link
/// target only add to it).
fn least_encoded(r: &Record) -> u64 {
    8 + r.path.len() as u64 + crate::record::VALUE_MIN_LEN as u64
}

/// Encodes `records` into `tx` for the store thread, a chunk at a time,
/// each record dropped once encoded. Stops when the store thread stops
/// taking them (its write failed: it dropped the receiver) or at the
/// watchdog's deadline (it is stuck), so the caller never waits on a store
/// thread it has given up on.
fn encode_into(
    records: Vec<Record>,
    tx: &crossbeam_channel::Sender<Piece>,
    deadline: std::time::Instant,
) {
    let mut enc = Encoder::default();
    for r in records {
        if let Some(c) = enc.push(&r) {
            if tx.send_deadline(Piece::chunk(c), deadline).is_err() {
                return;
            }
        }
    }
    let (tail, count, hasher) = enc.finish_open();
    if let Some(c) = tail {
        if tx.send_deadline(Piece::chunk(c), deadline).is_err() {
            return;
        }
    }
    let _ = tx.send_deadline(Piece::End(count, Box::new(hasher)), deadline);
}

/// The watchdog's job for a write: a fresh database in `dir`, written
/// (the chunks as they come, then the extra pairs, each dropped once
/// stored), its header completed with the count and digest of what was
/// stored and signed, closed, read back twice and synced. Returns the
/// header. The read-back checks what sled holds against it.
fn write_job(
    base: &Path,
    dir: &Path,
    pieces: impl Iterator<Item = Piece>,
    extra: Vec<(Vec<u8>, Vec<u8>)>,
    header: Meta,
    signer: Option<&ed25519_dalek::SigningKey>,
) -> Result<Meta> {
    // Left over from a write of this generation that never switched.
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io("remove unfinished generation", dir, e))
        }
        _ => {}
    }
    std::fs::create_dir(dir).map_err(|e| Error::io("create generation dir", dir, e))?;
    restrict_dir(dir);
    let db = SledDb::open(dir, LOCK_WAIT)?;
    let meta = match write_into(&db, pieces, extra, header, signer) {
        Ok(meta) => meta,
        Err(e) => {
            // Its Drop would flush again, which after ENOSPC may never return.
            db.abandon();
            return Err(e);
        }
    };
    drop(db);
    // sled's pages of the whole generation go back before it is read.
    release_sled();
    // sled writes a snapshot and consolidated pages on the first opens
    // after a write: let the writer do that, on a generation nobody reads
    // yet, so a reader's open has nothing left to write. The first open
    // reads every pair back against the header; the second only opens
    // (what it writes, it writes on opening) and checks the header, which
    // saves a read of the whole generation.
    for pass in 0..2 {
        let db = SledDb::open_read(dir, LOCK_WAIT)?;
        let read = if pass == 0 {
            db.verify()
        } else {
            db.current_meta()
                .and_then(|m| m.ok_or_else(|| corrupt(dir, "its header is gone")))
        };
        match read {
            Ok(m) if m == meta => drop(db),
            Ok(_) => {
                db.abandon();
                return Err(corrupt(dir, "its header changed"));
            }
            Err(e) => {
                db.abandon();
                return Err(e);
            }
        }
        release_sled();
    }
    let sync = |d: &Path| crate::sys::sync_dir(d).map_err(|e| Error::io("sync", d, e));
    sync(&dir.join("blobs"))?;
    sync(dir)?;
    sync(base)?;
    Ok(meta)
}

/// The generation into `db`: schema, chunks, extra pairs, then the header
/// (count, digest, signature of exactly what was stored).
fn write_into(
    db: &SledDb,
    pieces: impl Iterator<Item = Piece>,
    extra: Vec<(Vec<u8>, Vec<u8>)>,
    mut meta: Meta,
    signer: Option<&ed25519_dalek::SigningKey>,
) -> Result<Meta> {
    db.begin(meta.schema)?;
    let mut end = None;
    db.write_chunks(
        meta.generation,
        pieces.map_while(|p| match p {
            Piece::Chunk(key, bytes) => Some((key, bytes)),
            Piece::End(count, hasher) => {
                end = Some((count, hasher));
                None
            }
        }),
    )?;
    // The encoder stopped short (the watchdog's deadline): nothing may
    // make this a generation.
    let Some((count, mut hasher)) = end else {
        return Err(Error::io(
            "write baseline",
            db.path(),
            std::io::Error::other("the records stopped before the last one"),
        ));
    };
    // The extra tree is hashed after the records, behind a separator, only
    // when it holds anything (see `Raw::scan`).
    if !extra.is_empty() {
        hasher.update(EXTRA_SEPARATOR);
    }
    db.write_extra(meta.generation, extra, |k, v| {
        digest_pair(&mut hasher, k, v)
    })?;
    meta.count = count;
    meta.digest = hasher.finalize();
    // Signed before the header is stored: it is stored whole, signature
    // included, and the pointer's copy is the same.
    if let Some(key) = signer {
        meta.signature = Some(crate::baseline::signing::sign(key, &meta.signed_bytes()));
    }
    db.finish(&meta)?;
    Ok(meta)
}

/// Gives back what a closed sled database left: the frees sled deferred
/// and the heap pages they leave empty.
fn release_sled() {
    super::sleddb::release_deferred();
    crate::sys::release_free_memory();
}

/// Runs a read of the store under the watchdog. A panic in sled while
/// reading is a damaged store.
fn read_job<T: Send + 'static>(
    at: &Path,
    count: u64,
    job: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let limit = limit_for(count.saturating_mul(512)) + LOCK_WAIT;
    match watchdog::run(limit, job) {
        Outcome::Done(r) => r,
        Outcome::Panicked(msg) => Err(corrupt(
            at,
            format!("the store failed while reading it ({msg})"),
        )),
        Outcome::TimedOut => Err(Error::io(
            "read baseline",
            at,
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the store did not answer within {}s", limit.as_secs()),
            ),
        )),
    }
}

/// Closes a database a reader opened, whatever the read found. (Not
/// abandoned on failure: that would keep its sled lock for the life of the
/// process, a `watch`; a reader's close has nothing to flush, and a close
/// that blocked anyway is the watchdog's.)
fn finish_read<T>(db: SledDb, r: Result<T>) -> Result<T> {
    drop(db);
    super::sleddb::release_deferred();
    // sled's pages and blobs were freed between the decoded records.
    crate::sys::release_free_memory();
    r
}

fn limit_for(bytes: u64) -> Duration {
    STORE_LIMIT + Duration::from_secs(bytes >> 20)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

/// What the baseline path holds; never creates anything.
fn survey(path: &Path) -> Result<Found> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(e) => return Err(io_or_unreadable(path, "read baseline", e)),
        Ok(m) if !m.is_dir() => return Err(corrupt(path, "it is not a directory")),
        Ok(_) => {}
    }
    if let Some(p) = pointer::read(path)? {
        return Ok(Found::Current(Box::new(p)));
    }
    let rd = std::fs::read_dir(path).map_err(|e| io_or_unreadable(path, "read baseline", e))?;
    let (mut legacy, mut other) = (false, false);
    for e in rd {
        let e = e.map_err(|e| io_or_unreadable(path, "read baseline", e))?;
        match e.file_name().to_str() {
            Some(lock::NAME) | Some(pointer::TMP) | Some(IMAGES_DIR) => {}
            Some("db") => legacy = true,
            _ => other = true,
        }
    }
    if legacy {
        Ok(Found::Legacy)
    } else if other {
        Err(corrupt(
            path,
            "it holds files but no pointer to a current generation (an interrupted first \
             `init`, or damage); `libwarden init --force` starts a new baseline",
        ))
    } else {
        Ok(Found::Nothing)
    }
}

/// Refuses to let `init` replace anything at `path` (bar the lock file of
/// an `init` that stopped before writing).
fn refuse_existing(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_or_unreadable(path, "read baseline", e)),
        Ok(m) if !m.is_dir() => return Err(Error::BaselineExists(path.to_path_buf())),
        Ok(_) => {}
    }
    let rd = std::fs::read_dir(path).map_err(|e| io_or_unreadable(path, "read baseline", e))?;
    for e in rd {
        let e = e.map_err(|e| io_or_unreadable(path, "read baseline", e))?;
        if e.file_name() != lock::NAME && e.file_name() != IMAGES_DIR {
            return Err(Error::BaselineExists(path.to_path_buf()));
        }
    }
    Ok(())
}

/// Removes what no reader can need any more: every generation directory
/// but the live one (N−1, kept by the last write, and unfinished ones), a
/// stray pointer temp file and, once a generation of the new layout is
/// live, the old layout's files. Failures are left for the next write.
fn prune(path: &Path, found: &Found) {
    let keep = match found {
        Found::Current(p) => Some(p.dir.as_str()),
        _ => None,
    };
    let Ok(rd) = std::fs::read_dir(path) else {
        return;
    };
    let legacy_file = |n: &str| n == "db" || n == "conf" || n.starts_with("snap.");
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        let p = e.path();
        if pointer::is_gen_dir(n) && Some(n) != keep {
            let _ = std::fs::remove_dir_all(&p);
        } else if n == pointer::TMP || (keep.is_some() && legacy_file(n)) {
            let _ = std::fs::remove_file(&p);
        } else if keep.is_some() && n == "blobs" {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

fn corrupt(path: &Path, msg: impl Into<String>) -> Error {
    Error::CorruptBaseline {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn io_or_unreadable(path: &Path, op: &'static str, e: std::io::Error) -> Error {
    Error::baseline_io(op, path, path, e)
}

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

    pub(super) fn encode(&self) -> Vec<u8> {
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

    pub(super) fn decode(v: &[u8]) -> Option<Meta> {
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

/// Separates the records from the extra pairs in a generation's digest
/// (no record key is empty, so this cannot collide with a record pair).
pub(super) const EXTRA_SEPARATOR: &[u8] = b"\0\0\0\0\0\0\0\0libwarden-extra";

/// A stored chunk: its key and its bytes.
pub type Chunk = ([u8; 4], Vec<u8>);

/// Turns sorted records into stored chunks and keeps the generation's
/// digest and count as it goes: exactly the work of a write minus sled, so
/// `bench` can time the store phase without touching a baseline.
#[derive(Default)]
pub struct Encoder {
    hasher: StreamHasher,
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
        (tail, count, hasher.finalize())
    }

    /// Like [`Encoder::finish`], with the digest still open for what the
    /// generation stores beside its records.
    pub(super) fn finish_open(mut self) -> (Option<Chunk>, u64, StreamHasher) {
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
pub(super) fn split_pair(b: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    fn field(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let n = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let body = b.get(4..4usize.checked_add(n)?)?;
        Some((body, &b[4 + n..]))
    }
    let (k, b) = field(b)?;
    let (v, b) = field(b)?;
    Some((k, v, b))
}

pub(super) fn digest_pair(h: &mut StreamHasher, k: &[u8], v: &[u8]) {
    h.update(&(k.len() as u64).to_le_bytes());
    h.update(k);
    h.update(&(v.len() as u64).to_le_bytes());
    h.update(v);
}

/// The generation's BLAKE3, fed in large pieces. A record is four short
/// updates (two lengths, a path, a value); BLAKE3 hashes what fits in one
/// 1 KiB chunk a 64-byte block at a time, and several chunks side by side
/// (SIMD) only when one update holds them: short updates ran at a sixth
/// of its speed (a tenth of a store write, on its one thread). The digest
/// is of the same bytes, in the same order: the same digest.
#[derive(Default)]
pub(super) struct StreamHasher {
    hasher: blake3::Hasher,
    pending: Vec<u8>,
}

/// Bytes gathered before they are hashed.
const HASH_BATCH: usize = 64 << 10;

impl StreamHasher {
    pub(super) fn update(&mut self, data: &[u8]) {
        if self.pending.len() + data.len() > HASH_BATCH {
            self.flush();
        }
        if data.len() >= HASH_BATCH {
            self.hasher.update(data);
        } else {
            if self.pending.capacity() == 0 {
                self.pending.reserve_exact(HASH_BATCH);
            }
            self.pending.extend_from_slice(data);
        }
    }

    fn flush(&mut self) {
        self.hasher.update(&self.pending);
        self.pending.clear();
    }

    pub(super) fn finalize(mut self) -> [u8; 32] {
        self.flush();
        *self.hasher.finalize().as_bytes()
    }
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

#[cfg(test)]
mod tests {
    use super::super::sleddb::{extra_name, gen_name};
    use super::*;

    #[test]
    fn the_stream_hasher_gives_blake3_of_the_bytes_however_they_are_split() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let want = *blake3::hash(&data).as_bytes();
        // Pieces of every size class: tiny, around the batch, larger.
        for sizes in [
            &[1usize, 7, 64][..],
            &[1000, 65_535, 3],
            &[HASH_BATCH],
            &[HASH_BATCH + 1, 5],
            &[200_000],
        ] {
            let mut h = StreamHasher::default();
            let (mut at, mut k) = (0, 0);
            while at < data.len() {
                let n = sizes[k % sizes.len()].min(data.len() - at);
                h.update(&data[at..at + n]);
                at += n;
                k += 1;
            }
            assert_eq!(h.finalize(), want, "{sizes:?}");
        }
        assert_eq!(
            StreamHasher::default().finalize(),
            *blake3::hash(b"").as_bytes()
        );
    }

    fn rec(p: &str, h: u8) -> Record {
        Record::test_file(p, h)
    }

    /// The live generation's own database, opened raw (an attacker's view).
    fn live_db(path: &Path) -> SledDb {
        let p = pointer::read(path).unwrap().unwrap();
        SledDb::open(&path.join(p.dir), LOCK_WAIT).unwrap()
    }

    fn gen_dirs(path: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(path)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| pointer::is_gen_dir(n))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn generations_switch_and_only_n_minus_1_is_kept() {
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
        assert_eq!(gen_dirs(&p), [pointer::gen_dir(1), pointer::gen_dir(2)]);
        let m3 = s.write_generation(&[rec("/a", 4)], b"/", None).unwrap();
        assert_eq!(gen_dirs(&p), [pointer::gen_dir(2), pointer::gen_dir(3)]);
        assert_eq!(s.current_meta().unwrap(), Some(m3));
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
        {
            let db = live_db(t.path());
            let tree = db.raw().open_tree(gen_name(m.generation)).unwrap();
            let mut v = Vec::new();
            rec("/a", 9).encode_value(&mut v);
            let mut chunk = Vec::new();
            push_pair(&mut chunk, b"/a", &v);
            tree.insert(0u32.to_be_bytes(), chunk).unwrap();
            db.raw().flush().unwrap();
        }
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
        {
            let db = live_db(t.path());
            let tree = db.raw().open_tree(gen_name(m.generation)).unwrap();
            assert!(tree.len() > 2, "5000 records must span several chunks");
            tree.remove(1u32.to_be_bytes()).unwrap();
            db.raw().flush().unwrap();
        }
        assert!(matches!(s.load(), Err(Error::CorruptBaseline { .. })));
    }

    #[test]
    fn records_of_many_batches_stream_into_the_store() {
        // More chunks than the encoder may run ahead of the store thread,
        // and than one sled batch: the stream must block, resume and end.
        let t = tempfile::tempdir().unwrap();
        let s = Store::create(t.path(), false).unwrap();
        let recs: Vec<Record> = (0..40_000)
            .map(|i| {
                rec(
                    &format!("/usr/lib/x86_64-linux-gnu/lib{i:06}.so.1"),
                    i as u8,
                )
            })
            .collect();
        let m = s.write_generation(&recs, b"/", None).unwrap();
        assert_eq!(m.count, 40_000);
        let (_, back) = s.load().unwrap();
        assert_eq!(back, recs);
        let db = live_db(t.path());
        let tree = db.raw().open_tree(gen_name(m.generation)).unwrap();
        assert!(
            tree.len() > 2 * STREAM_CHUNKS,
            "{} chunks: not enough to test the stream",
            tree.len()
        );
        // Each chunk as sled keeps it (made on the encoder's thread) is
        // byte for byte the encoder's chunk, under its index, and the
        // header's digest is the encoder's over the same bytes.
        let mut enc = Encoder::default();
        let mut made: Vec<Chunk> = recs.iter().filter_map(|r| enc.push(r)).collect();
        let (tail, count, digest) = enc.finish();
        made.extend(tail);
        assert_eq!(count, 40_000);
        assert_eq!(digest, m.digest, "no extra pairs: the records' digest");
        let stored: Vec<(Vec<u8>, Vec<u8>)> = tree
            .iter()
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect();
        let made: Vec<(Vec<u8>, Vec<u8>)> =
            made.into_iter().map(|(k, v)| (k.to_vec(), v)).collect();
        assert!(stored == made, "the stored chunks are not the encoder's");
    }

    #[test]
    fn a_stream_that_ends_early_fails_the_write() {
        // A chunk lost between the encoder and sled: what was stored is
        // short of the count and digest the encoder saw, and the writer's
        // read-back refuses it. A stream without its end (the encoder
        // stopped at the watchdog's deadline) is refused before any header
        // is written.
        let t = tempfile::tempdir().unwrap();
        let recs: Vec<Record> = (0..3000)
            .map(|i| rec(&format!("/usr/lib/lib{i:06}.so"), i as u8))
            .collect();
        let mut enc = Encoder::default();
        let mut chunks: Vec<Chunk> = recs.iter().filter_map(|r| enc.push(r)).collect();
        let (tail, count, hasher) = enc.finish_open();
        chunks.extend(tail);
        assert!(chunks.len() > 2);
        let header = Meta {
            schema: PLAIN_SCHEMA,
            generation: 1,
            baseline_id: [1; 16],
            written: 0,
            count: 0,
            digest: [0; 32],
            root: b"/".to_vec(),
            signature: None,
        };
        let dir = t.path().join(pointer::gen_dir(1));
        let lost_one = chunks
            .iter()
            .skip(1)
            .cloned()
            .map(Piece::chunk)
            .chain([Piece::End(count, Box::new(hasher))]);
        let r = write_job(t.path(), &dir, lost_one, vec![], header.clone(), None);
        assert!(matches!(r, Err(Error::CorruptBaseline { .. })), "{r:?}");
        let no_end = chunks.into_iter().map(Piece::chunk);
        let r = write_job(t.path(), &dir, no_end, vec![], header, None);
        assert!(
            matches!(&r, Err(Error::Io { source, .. }) if source.to_string().contains("stopped")),
            "{r:?}"
        );
    }

    #[test]
    fn a_header_that_disagrees_with_the_pointer_is_corrupt() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::create(t.path(), false).unwrap();
        let m = s.write_generation(&[rec("/a", 1)], b"/", None).unwrap();
        let mut other = m.clone();
        other.written += 1;
        pointer::write(t.path(), &pointer::gen_dir(m.generation), &other).unwrap();
        assert!(matches!(s.load(), Err(Error::CorruptBaseline { .. })));
    }

    #[test]
    fn a_readers_open_of_a_live_generation_changes_none_of_its_bytes() {
        // What makes a check on a full disk harmless: sled finishes its
        // recovery writes on the writer's read-backs, so a reader's open
        // rewrites nothing (at most zeros over zeros).
        let t = tempfile::tempdir().unwrap();
        let s = Store::create(t.path(), false).unwrap();
        let recs: Vec<Record> = (0..20_000)
            .map(|i| rec(&format!("/usr/lib/x/lib{i:06}.so"), i as u8))
            .collect();
        let m = s.write_generation(&recs, b"/", None).unwrap();
        let dir = t.path().join(pointer::gen_dir(m.generation));
        let image = |d: &Path| {
            let mut v = Vec::new();
            let mut stack = vec![d.to_path_buf()];
            while let Some(p) = stack.pop() {
                for e in std::fs::read_dir(&p).unwrap().flatten() {
                    if e.file_type().unwrap().is_dir() {
                        stack.push(e.path());
                    } else {
                        v.push((e.path(), std::fs::read(e.path()).unwrap()));
                    }
                }
            }
            v.sort();
            v
        };
        let before = image(&dir);
        for _ in 0..3 {
            assert_eq!(s.load().unwrap().1.len(), recs.len());
        }
        assert!(image(&dir) == before, "a reader changed the generation");
    }

    #[test]
    fn a_failed_write_leaves_the_live_generation() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::create(t.path(), false).unwrap();
        let m1 = s.write_generation(&[rec("/a", 1)], b"/", None).unwrap();
        // Generation 2's directory cannot be made: a file is in the way.
        std::fs::write(t.path().join(pointer::gen_dir(2)), b"x").unwrap();
        let e = s.write_generation(&[rec("/a", 2)], b"/", None).unwrap_err();
        assert!(matches!(e, Error::StoreWrite { .. }), "{e}");
        assert!(e.to_string().contains("generation 1 is intact"), "{e}");
        assert_eq!(e.exit_code(), crate::error::code::IO);
        let (m, recs) = s.load().unwrap();
        assert_eq!((m, recs), (m1, vec![rec("/a", 1)]));
    }

    #[test]
    fn a_writer_stuck_in_sled_ends_with_exit_74_and_says_what_is_intact() {
        let (_never, rx) = std::sync::mpsc::channel::<()>();
        // A job that never returns, as sled's flush after ENOSPC.
        let limit = Duration::from_millis(300);
        let out = watchdog::run(limit, move || {
            let _ = rx.recv();
        });
        assert!(matches!(out, Outcome::TimedOut));
        let e = stuck(
            Path::new("/var/lib/libwarden"),
            Duration::from_secs(45),
            "generation 3 is intact",
        );
        assert_eq!(e.exit_code(), crate::error::code::IO);
        assert_eq!(
            e.to_string(),
            "cannot write the baseline at /var/lib/libwarden: the baseline store did not \
             finish writing within 45s (disk full?); generation 3 is intact"
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::create(t.path(), false).unwrap();
        let mut m = s.write_generation(&[], b"/", None).unwrap();
        m.schema = SCHEMA + 1;
        pointer::write(t.path(), &pointer::gen_dir(m.generation), &m).unwrap();
        assert!(matches!(
            Store::open(t.path()).and_then(|s| s.load()),
            Err(Error::NewerSchema { .. })
        ));
        // The same in the old layout.
        let t = tempfile::tempdir().unwrap();
        let db = SledDb::open(t.path(), LOCK_WAIT).unwrap();
        db.raw()
            .insert(b"schema", &(SCHEMA + 1).to_le_bytes())
            .unwrap();
        db.raw().flush().unwrap();
        drop(db);
        assert!(matches!(
            Store::open(t.path()).and_then(|s| s.load()),
            Err(Error::NewerSchema { .. })
        ));
    }

    /// A store as a schema-2 build wrote it: one sled database at the path,
    /// V1 values under a signed schema-2 header.
    fn legacy_store(path: &Path, key: &ed25519_dalek::SigningKey) -> (Meta, Record) {
        let db = SledDb::open(path, LOCK_WAIT).unwrap();
        let r = rec("/a", 1);
        let mut v = Vec::new();
        r.encode_value(&mut v);
        assert_eq!(v.pop(), Some(0), "no facts");
        v[0] = crate::record::ENCODING_V1;
        let mut chunk = Vec::new();
        push_pair(&mut chunk, b"/a", &v);
        let mut h = StreamHasher::default();
        digest_pair(&mut h, b"/a", &v);
        db.raw()
            .open_tree(gen_name(1))
            .unwrap()
            .insert(0u32.to_be_bytes(), chunk)
            .unwrap();
        let mut meta = Meta {
            schema: 2,
            generation: 1,
            baseline_id: [5; 16],
            written: 7,
            count: 1,
            digest: h.finalize(),
            root: b"/".to_vec(),
            signature: None,
        };
        meta.signature = Some(crate::baseline::signing::sign(key, &meta.signed_bytes()));
        db.raw().insert(b"schema", &2u32.to_le_bytes()).unwrap();
        db.raw().insert(b"current", meta.encode()).unwrap();
        db.raw().flush().unwrap();
        (meta, r)
    }

    #[test]
    fn schema_2_stores_of_the_old_layout_are_read_and_migrated_by_the_next_write() {
        let t = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let (meta, r) = legacy_store(t.path(), &key);

        let s = Store::open_for_write(t.path()).unwrap();
        assert_eq!(s.current_meta().unwrap(), Some(meta.clone()));
        let (m, recs) = s.load().unwrap();
        assert_eq!(m, meta);
        assert_eq!(recs, vec![r]);
        assert!(crate::baseline::signing::verify(
            &key.verifying_key(),
            m.signature.as_ref(),
            &m.signed_bytes()
        )
        .is_ok());
        // The next generation is this schema, in the new layout; the old
        // files stay (generation N−1) until the write after.
        let m2 = s.write_generation(&recs, b"/", None).unwrap();
        // (Schema 3: it holds no acknowledgement.)
        assert_eq!((m2.schema, m2.generation), (PLAIN_SCHEMA, 2));
        assert_eq!(m2.baseline_id, meta.baseline_id);
        assert_eq!(s.load().unwrap().1, recs);
        assert!(t.path().join("db").exists() && t.path().join("conf").exists());
        let m3 = s.write_generation(&recs, b"/", None).unwrap();
        assert_eq!(m3.generation, 3);
        assert!(!t.path().join("db").exists() && !t.path().join("conf").exists());
        assert!(!t.path().join("blobs").exists());
        assert_eq!(
            gen_dirs(t.path()),
            [pointer::gen_dir(2), pointer::gen_dir(3)]
        );
        assert_eq!(s.load().unwrap().1, recs);
    }

    #[test]
    fn schemas_older_than_2_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let db = SledDb::open(t.path(), LOCK_WAIT).unwrap();
        db.raw().insert(b"schema", &1u32.to_le_bytes()).unwrap();
        db.raw().flush().unwrap();
        drop(db);
        assert!(matches!(
            Store::open(t.path()).and_then(|s| s.load()),
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
        {
            let db = live_db(t.path());
            let x = db.raw().open_tree(extra_name(m.generation)).unwrap();
            x.insert(b"v\0libc6", b"9.99".to_vec()).unwrap();
            db.raw().flush().unwrap();
        }
        assert!(s.load().is_err(), "altered extra pairs must be detected");
        {
            let db = live_db(t.path());
            db.raw()
                .open_tree(extra_name(m.generation))
                .unwrap()
                .clear()
                .unwrap();
            db.raw().flush().unwrap();
        }
        assert!(s.load().is_err(), "removed extra pairs must be detected");
        // A later generation without extra pairs has none.
        s.write_generation(&[], b"/", None).unwrap();
        assert!(s.load_with_extra().unwrap().2.is_empty());
    }

    #[test]
    fn extra_pairs_of_many_batches_round_trip_in_order_under_the_digest() {
        // More bytes than several sled batches of extra pairs, and values
        // as large as the owners' chunks.
        let t = tempfile::tempdir().unwrap();
        let s = Store::create(t.path(), false).unwrap();
        let mut extra: Vec<(Vec<u8>, Vec<u8>)> = (0..3000u32)
            .map(|i| {
                (
                    format!("m\0/usr/lib/l{i:05}").into_bytes(),
                    vec![i as u8; 48],
                )
            })
            .collect();
        extra.extend((0..12u32).map(|i| {
            let mut k = b"o\0pkg\0".to_vec();
            k.extend_from_slice(&i.to_be_bytes());
            (k, vec![b'/'; 32 << 10])
        }));
        extra.sort();
        let recs: Vec<Record> = (0..2000)
            .map(|i| rec(&format!("/usr/lib/l{i:05}"), i as u8))
            .collect();
        let m = s
            .write_generation_from(recs.clone(), extra.clone(), b"/", None)
            .unwrap();
        // The header's digest is the one the encoder gives for the same
        // records and pairs.
        let mut enc = Encoder::default();
        recs.iter().for_each(|r| drop(enc.push(r)));
        let (_, count, mut h) = enc.finish_open();
        h.update(EXTRA_SEPARATOR);
        extra.iter().for_each(|(k, v)| digest_pair(&mut h, k, v));
        assert_eq!((m.count, m.digest), (count, h.finalize()));
        let (_, back, got) = s.load_with_extra().unwrap();
        assert_eq!((back, got), (recs, extra));
    }

    #[test]
    fn only_a_generation_holding_acknowledgements_is_schema_4() {
        let t = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let s = Store::create(t.path(), false).unwrap();
        let plain = vec![(b"v\0libc6".to_vec(), b"2.36".to_vec())];
        let m = s
            .write_generation_with_extra(&[rec("/a", 1)], &plain, b"/", Some(&key))
            .unwrap();
        // What a schema-3 build writes and reads, signed the same way.
        assert_eq!(m.schema, PLAIN_SCHEMA);
        assert!(crate::baseline::signing::verify(
            &key.verifying_key(),
            m.signature.as_ref(),
            &m.signed_bytes()
        )
        .is_ok());
        assert!(std::fs::read_to_string(t.path().join("CURRENT"))
            .unwrap()
            .contains("schema 3\n"));
        let mut acked = plain.clone();
        acked.insert(0, (b"a\0rpath\0/a\0detail:x".to_vec(), vec![0; 8]));
        let m = s
            .write_generation_with_extra(&[rec("/a", 1)], &acked, b"/", Some(&key))
            .unwrap();
        assert_eq!(m.schema, SCHEMA);
        assert_eq!(s.load_with_extra().unwrap().2, acked);
        // The database itself says so too: a schema-3 build opening it
        // sees a newer schema (exit 65), not damage.
        let db = live_db(t.path());
        let v = db.raw().get(b"schema").unwrap().unwrap();
        assert_eq!(v.as_ref(), &SCHEMA.to_le_bytes());
    }

    #[test]
    fn missing_damaged_and_foreign_paths_are_told_apart() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("db");
        assert!(matches!(Store::open(&p), Err(Error::NoBaseline(_))));
        std::fs::create_dir(&p).unwrap();
        assert!(matches!(Store::open(&p), Err(Error::NoBaseline(_))));
        std::fs::write(p.join("stray"), b"x").unwrap();
        assert!(matches!(
            Store::open(&p),
            Err(Error::CorruptBaseline { .. })
        ));
        assert!(matches!(
            Store::create(&p, false),
            Err(Error::BaselineExists(_))
        ));
        let f = t.path().join("file");
        std::fs::write(&f, b"x").unwrap();
        assert!(matches!(
            Store::open(&f),
            Err(Error::CorruptBaseline { .. })
        ));
        assert!(matches!(
            Store::create(&f, false),
            Err(Error::BaselineExists(_))
        ));
        // --force replaces the file with a baseline.
        let s = Store::create(&f, true).unwrap();
        s.write_generation(&[rec("/a", 1)], b"/", None).unwrap();
        assert_eq!(s.load().unwrap().1, vec![rec("/a", 1)]);
    }
}
