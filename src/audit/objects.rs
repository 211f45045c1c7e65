//! The ELF objects the audit reads: every ELF file the scan found in the
//! search paths (by its record's class) and every ELF file directly in the
//! configured executable dirs. Those of the scan come from their records'
//! facts, parsed by the inspection from the descriptor it hashed (nothing is
//! opened again); those of the executable dirs, which have no records, are
//! opened inside the root without following a final symlink and without
//! blocking, and parsed with [`crate::formats::elf`] through bounded `pread`s.
//! Nothing is mapped, loaded or executed.

use crate::sys::MetadataExt;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

use super::{bytes, Context};
use crate::facts::ElfFact;
use crate::formats::elf::{self, ElfError, ElfInfo};
use crate::record::{FileClass, FileType, Record};
use crate::rootfs::Root;

/// At most this many files are read from one executable dir.
const MAX_EXEC_FILES: usize = 100_000;

/// One parsed ELF file.
#[derive(Clone, Debug)]
pub struct Object {
    /// Logical path inside the root.
    pub path: PathBuf,
    pub mode: u32,
    pub uid: u32,
    /// Found by the scan of the search paths (not an executable dir).
    pub in_search_path: bool,
    /// Shared with the record's facts.
    pub info: Arc<ElfInfo>,
}

impl Object {
    pub fn setid(&self) -> bool {
        self.mode & 0o6000 != 0
    }
}

/// Every ELF object; counts those that could not be read or parsed.
pub fn collect(cx: &Context, notes: &mut Vec<String>) -> Vec<Object> {
    let mut failed = 0usize;
    let mut out: Vec<Object> = Vec::new();
    let elf = |r: &&Record| {
        r.ftype == FileType::File
            && matches!(r.class, FileClass::ElfDyn | FileClass::ElfExec)
            && !is_debug_file(&r.path)
    };
    for r in cx.records.iter().filter(elf) {
        let path = super::path(&r.path);
        // An ELF record without parsed headers: the inspection could not
        // parse them (or never gathered them).
        match r.facts.as_deref().and_then(|f| f.elf.as_ref()) {
            Some(ElfFact::Parsed(info)) => out.push(Object {
                path,
                mode: r.mode,
                uid: r.uid,
                in_search_path: true,
                info: info.clone(),
            }),
            Some(ElfFact::Unparsable) | None => failed += 1,
        }
    }
    // The executable dirs are read once per judge: a watcher's events
    // re-run the audit, and those files are not what changed.
    let (exec, exec_failed) = cx.exec.0.get_or_init(|| {
        // The scanned ELF objects, by their bytes: built only for the one
        // read of the executable dirs, not on every audit of a watcher.
        let known: HashSet<&[u8]> = cx.records.iter().filter(elf).map(|r| &r.path[..]).collect();
        exec_objects(cx, &known)
    });
    failed += exec_failed;
    if failed > 0 {
        notes.push(format!(
            "{failed} ELF file{} could not be read or parsed for the RPATH and loader audits",
            if failed == 1 { "" } else { "s" }
        ));
    }
    out.extend(exec.iter().cloned());
    // Byte order, as the records: callers binary-search it.
    out.sort_by(|a, b| bytes(&a.path).cmp(bytes(&b.path)));
    out
}

/// The ELF objects of the executable dirs (`audit_exec_dirs`), read once
/// per judge (see [`collect`]).
#[derive(Default)]
pub struct ExecObjects(OnceLock<(Vec<Object>, usize)>);

/// The ELF files directly in the executable dirs that are not `known`
/// records, and how many could not be read or parsed.
fn exec_objects(cx: &Context, known: &HashSet<&[u8]>) -> (Vec<Object>, usize) {
    let mut todo = Vec::new();
    let mut dirs_seen = HashSet::new();
    for d in cx.exec_dirs {
        let Ok(dir) = cx.root.resolve(d) else {
            continue;
        };
        if !dirs_seen.insert(dir.clone()) {
            continue;
        }
        let Ok(rd) = cx.root.list_types(&dir) else {
            continue;
        };
        let mut names: Vec<_> = rd
            .into_iter()
            .take(MAX_EXEC_FILES)
            .filter(|(_, t)| *t == FileType::File)
            .map(|(n, _)| n)
            .collect();
        names.sort();
        for n in names {
            let p = dir.join(n);
            if !known.contains(bytes(&p)) {
                todo.push(p);
            }
        }
    }
    let parsed: Vec<Result<Option<Object>, ()>> = todo
        .into_par_iter()
        .map(|path| read_exec(cx.root, path))
        .collect();
    let failed = parsed.iter().filter(|r| r.is_err()).count();
    (parsed.into_iter().flatten().flatten().collect(), failed)
}

/// A file of an executable dir. `Ok(None)`: not ELF (an executable dir
/// holds scripts too), gone, or not a regular file. `Err`: an ELF file that
/// could not be read or parsed.
fn read_exec(root: &Root, path: PathBuf) -> Result<Option<Object>, ()> {
    // An in-memory tree (an image) parsed each file's headers as its
    // layer streamed past: the same facts, nothing to open.
    if let Some(tree) = root.tree() {
        let meta = root.lstat(&path).map_err(|_| ())?;
        if !meta.is_file() {
            return Ok(None);
        }
        return match tree.facts(path.as_os_str()).and_then(|f| f.elf.clone()) {
            Some(ElfFact::Parsed(info)) => Ok(Some(Object {
                path,
                mode: meta.mode(),
                uid: meta.uid(),
                in_search_path: false,
                info,
            })),
            Some(ElfFact::Unparsable) => Err(()),
            None => Ok(None),
        };
    }
    let file = match root.open_file(&path) {
        Ok(f) => f,
        // Gone since the listing, or replaced by a symlink: nothing to read.
        Err(e) if crate::sys::is_not_found(&e) || crate::sys::is_loop(&e) => return Ok(None),
        Err(_) => return Err(()),
    };
    let meta = file.metadata().map_err(|_| ())?;
    if !meta.is_file() {
        return Ok(None);
    }
    match elf::parse_file(&file, meta.len()) {
        Ok(info) => Ok(Some(Object {
            path,
            mode: meta.mode(),
            uid: meta.uid(),
            in_search_path: false,
            info: Arc::new(info),
        })),
        Err(ElfError::NotElf) => Ok(None),
        Err(_) => Err(()),
    }
}

/// Separate debug info (`/usr/lib/debug/...`): ELF files whose program
/// headers point at sections that were emptied, so their PT_INTERP and
/// dynamic section read as garbage. The loader never loads them.
pub fn is_debug_file(path: &[u8]) -> bool {
    path.starts_with(b"/usr/lib/debug/") || path.starts_with(b"/lib/debug/")
}

/// The directory of an object, as `$ORIGIN` would give it.
pub fn origin(o: &Object) -> Vec<u8> {
    bytes(o.path.parent().unwrap_or(Path::new("/"))).to_vec()
}
