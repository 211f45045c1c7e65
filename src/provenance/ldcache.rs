//! Whether `/etc/ld.so.cache` is what ldconfig would build from the
//! search dirs as they are: every entry names, by its SONAME, a library
//! that is where it says, inside the loader's dirs; and every library in a
//! dir ld.so.conf configures, under the name of its SONAME, has its entry.
//! Judged from the scan's records and their ELF facts, with the cache read
//! once; ldconfig is never run.
//!
//! ldconfig's own rules are wider (hwcap subdirs, libraries without a
//! SONAME, `.so` links it lists when their target is a library): an entry
//! of that sort is accepted when it names an existing shared object of the
//! same name, and only SONAME-named libraries are required.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::facts::ElfFact;
use crate::formats::ldcache::{parse, CACHE, CAP};
use crate::record::{file_name, FileClass, FileType, Record};
use crate::rootfs::Root;
use crate::searchpaths::{Origin, SearchPaths};
use crate::sys::OsStrExt;

/// The number of entries when the cache is consistent; otherwise the first
/// discrepancy, as a phrase.
pub fn consistent(root: &Root, sp: &SearchPaths, records: &[Record]) -> Result<usize, String> {
    let data = root
        .read_file(Path::new(CACHE), CAP)
        .map_err(|e| format!("unreadable ({e})"))?;
    let cache = parse(&data).map_err(|why| format!("cannot be parsed ({why})"))?;
    let loader_dir =
        |o: &Origin| matches!(o, Origin::Trusted | Origin::Multiarch | Origin::Conf { .. });
    let dirs: HashSet<&Path> = sp
        .dirs
        .iter()
        .filter(|d| d.origins.iter().any(loader_dir))
        .map(|d| d.path.as_path())
        .collect();
    let configured: HashSet<&[u8]> = sp
        .dirs
        .iter()
        .filter(|d| d.origins.iter().any(|o| matches!(o, Origin::Conf { .. })))
        .map(|d| d.path.as_os_str().as_bytes())
        .collect();
    let show = crate::escape::for_terminal;
    let mut have: HashSet<Vec<u8>> = HashSet::new();
    let entries = cache.new.iter().chain(cache.old.iter());
    let mut count = 0;
    for e in entries {
        count += 1;
        let what = || format!("the entry for {} names {}", show(&e.soname), show(&e.path));
        if !e.path.starts_with(b"/") || file_name(&e.path) != e.soname.as_slice() {
            return Err(format!("{}, not a file of that name", what()));
        }
        let logical = PathBuf::from(std::ffi::OsStr::from_bytes(&e.path));
        let dir = logical
            .parent()
            .map(|p| root.resolve_lenient(p))
            .unwrap_or_default();
        if !dirs.contains(dir.as_path()) {
            return Err(format!("{}, outside the loader's dirs", what()));
        }
        let mut at = dir.as_os_str().as_bytes().to_vec();
        at.push(b'/');
        at.extend_from_slice(&e.soname);
        let Some(soname) = library_at(root, records, &at) else {
            return Err(format!("{}, which is not a shared object there", what()));
        };
        let fits = match &soname {
            None => true,
            Some(s) => *s == e.soname || (e.soname.ends_with(b".so") && s.starts_with(&e.soname)),
        };
        if !fits {
            return Err(format!(
                "{}, whose SONAME is {}",
                what(),
                show(soname.as_deref().unwrap_or_default())
            ));
        }
        have.insert(at);
    }
    for r in records {
        if !matches!(r.ftype, FileType::File | FileType::Symlink) {
            continue;
        }
        let name = file_name(&r.path);
        let parent = r
            .path
            .get(..r.path.len() - name.len() - 1)
            .unwrap_or_default();
        if !configured.contains(parent) || have.contains(&r.path) {
            continue;
        }
        if library_at(root, records, &r.path).flatten().as_deref() == Some(name) {
            return Err(format!(
                "it has no entry for {}, a library in a configured dir",
                show(&r.path)
            ));
        }
    }
    Ok(count)
}

/// The SONAME (or `Some(None)`: none) of the shared object `path` resolves
/// to, inside the root; `None` when it is not one.
fn library_at(root: &Root, records: &[Record], path: &[u8]) -> Option<Option<Vec<u8>>> {
    let r = super::follow(root, records, path)?;
    if r.ftype != FileType::File || r.class != FileClass::ElfDyn {
        return None;
    }
    match r.facts.as_deref().and_then(|f| f.elf.as_ref()) {
        Some(ElfFact::Parsed(info)) => Some(info.soname.clone()),
        _ => None,
    }
}
