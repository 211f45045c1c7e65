//! An image's monitored paths as [`Record`]s, like a scan's of a root: the
//! image's own search paths (the trusted and architecture dirs, what its
//! `ld.so.conf` and includes name, the loader's files and the loaders)
//! resolved in the [`View`], then every entry of those directories taken
//! from the view's nodes. Nothing is read again: digests, classes and
//! facts were gathered from the layer streams.
//!
//! What a tar stream does not have is left neutral and equal on both sides
//! of a diff (device and inode 0, one link, no ctime), so two images are
//! compared by type, content, mode, owner and symlink target only.

use std::path::{Path, PathBuf};

use super::{Kind, Node, View};
use crate::formats::ldconf::{self, ConfSource};
use crate::record::{FileClass, FileType, Record, RecordData, Unhashed};
use crate::searchpaths::{
    Origin, SearchDir, SearchPaths, TrackedFile, EXTRA_ARCH_DIRS, LD_SO_CONF, LOADER_FILES,
    LOADER_GLOBS, TRUSTED_DIRS,
};
use crate::sys::{S_IFDIR, S_IFLNK, S_IFREG};

/// The search paths and records of an image.
#[derive(Debug)]
pub struct Monitored {
    pub sp: SearchPaths,
    /// Sorted by path, unique.
    pub records: Vec<Record>,
}

fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_encoded_bytes()
}

fn path_of(b: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(b).into_owned())
}

/// Resolves the image's search paths as [`SearchPaths::resolve`] does a
/// root's, in the view.
pub fn search_paths(view: &View) -> SearchPaths {
    let mut dirs: Vec<SearchDir> = Vec::new();
    let mut files: Vec<TrackedFile> = Vec::new();
    let mut warnings = Vec::new();
    let add_dir = |dirs: &mut Vec<SearchDir>, dir: &Path, origin: Origin, recursive: bool| {
        let canonical = view
            .resolve(bytes(dir))
            .unwrap_or_else(|| bytes(dir).to_vec());
        let exists = view
            .nodes
            .get(&canonical)
            .is_some_and(|n| n.kind == Kind::Dir);
        let canonical = path_of(&canonical);
        if let Some(d) = dirs.iter_mut().find(|d| d.path == canonical) {
            if !d.aliases.iter().any(|a| a == dir) {
                d.aliases.push(dir.to_path_buf());
            }
            if !d.origins.contains(&origin) {
                d.origins.push(origin);
            }
            d.recursive |= recursive;
            return;
        }
        dirs.push(SearchDir {
            path: canonical,
            aliases: vec![dir.to_path_buf()],
            origins: vec![origin],
            recursive,
            exists,
            covered_by: None,
        });
    };
    let add_file = |files: &mut Vec<TrackedFile>, file: &Path, origin: Origin| {
        // The parent resolved, the name itself not followed.
        let b = bytes(file);
        let (dir, name) = super::split(b);
        let parent = view.resolve(dir).unwrap_or_else(|| dir.to_vec());
        let path = path_of(&super::join(&parent, name));
        if files.iter().any(|f| f.path == path) {
            return;
        }
        let exists = view.nodes.contains_key(bytes(&path));
        files.push(TrackedFile {
            path,
            origin,
            exists,
        });
    };
    for d in TRUSTED_DIRS {
        add_dir(&mut dirs, Path::new(d), Origin::Trusted, true);
    }
    for d in EXTRA_ARCH_DIRS {
        if view.get(d.as_bytes()).is_some() {
            add_dir(&mut dirs, Path::new(d), Origin::Trusted, true);
        }
    }
    for base in ["/lib", "/usr/lib"] {
        for d in view.glob(&Path::new(base).join("*-linux-*")) {
            if view.get(bytes(&d)).is_some_and(|n| n.kind == Kind::Dir) {
                add_dir(&mut dirs, &d, Origin::Multiarch, true);
            }
        }
    }
    let conf = ldconf::parse(view, Path::new(LD_SO_CONF));
    warnings.extend(conf.warnings.iter().cloned());
    for cd in &conf.dirs {
        let origin = Origin::Conf {
            file: cd.file.clone(),
            line: cd.line,
        };
        if cd.dir.is_absolute() {
            add_dir(&mut dirs, &cd.dir, origin, true);
        } else {
            warnings.push(format!(
                "{}:{}: relative search dir {:?} is not monitored",
                cd.file.display(),
                cd.line,
                cd.dir
            ));
        }
    }
    for f in LOADER_FILES {
        add_file(&mut files, Path::new(f), Origin::LoaderFile);
    }
    for f in &conf.files {
        add_file(&mut files, f, Origin::LoaderFile);
    }
    for inc in &conf.includes {
        if let Some(dir) = inc.pattern.parent() {
            if !bytes(dir).contains(&b'*') {
                let origin = Origin::Include {
                    file: inc.file.clone(),
                    line: inc.line,
                };
                add_dir(&mut dirs, dir, origin, false);
            }
        }
    }
    for d in TRUSTED_DIRS {
        for g in LOADER_GLOBS {
            for f in view.glob(&Path::new(d).join(g)) {
                add_file(&mut files, &f, Origin::Loader);
            }
        }
    }
    SearchPaths::from_parts(dirs, files, conf, warnings)
}

/// The record of one node at `path`.
pub fn record(path: &[u8], node: &Node) -> Record {
    let perm = node.mode & 0o7777;
    let (ftype, mode, size, blake3, class, facts, target) = match &node.kind {
        Kind::Dir => (
            FileType::Dir,
            S_IFDIR | perm,
            0,
            None,
            FileClass::None,
            None,
            None,
        ),
        Kind::File {
            size,
            blake3,
            class,
            facts,
            ..
        } => (
            FileType::File,
            S_IFREG | perm,
            *size,
            Some(*blake3),
            *class,
            facts.clone(),
            None,
        ),
        Kind::Symlink(t) => (
            FileType::Symlink,
            S_IFLNK | perm,
            t.len() as u64,
            None,
            FileClass::None,
            None,
            Some(t.clone()),
        ),
        Kind::Other => (
            FileType::Unknown,
            perm,
            0,
            None,
            FileClass::None,
            None,
            None,
        ),
    };
    Record::from(RecordData {
        path: path.to_vec(),
        ftype,
        size,
        mode,
        uid: node.uid,
        gid: node.gid,
        dev: 0,
        inode: 0,
        nlink: 1,
        mtime: (node.mtime, 0),
        ctime: (0, 0),
        blake3,
        sha256: None,
        unhashed: (ftype != FileType::File).then_some(Unhashed::NotRegular),
        target: target.map(Vec::into_boxed_slice),
        class,
        facts,
    })
}

/// The search paths of the image and the records of everything in them.
pub fn monitored(view: &View) -> Monitored {
    let sp = search_paths(view);
    let mut records = Vec::new();
    for d in sp.walk_roots() {
        let dir = bytes(&d.path);
        if let Some(n) = view.nodes.get(dir) {
            records.push(record(dir, n));
        }
        for (k, n) in super::below(&view.nodes, dir) {
            if d.recursive || super::split(k).0 == dir {
                records.push(record(k, n));
            }
        }
    }
    for f in sp.loose_files() {
        if let Some(n) = view.nodes.get(bytes(&f.path)) {
            records.push(record(bytes(&f.path), n));
        }
    }
    records.sort_by(|a, b| a.path.cmp(&b.path));
    records.dedup_by(|a, b| a.path == b.path);
    Monitored { sp, records }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: Kind) -> Node {
        Node {
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            layer: 0,
        }
    }

    fn file(data: &[u8]) -> Kind {
        Kind::File {
            size: data.len() as u64,
            blake3: *blake3::hash(data).as_bytes(),
            class: FileClass::sniff(data),
            facts: None,
            data: Some(data.to_vec()),
        }
    }

    #[test]
    fn search_dirs_of_the_view_give_their_records_and_nothing_else() {
        let mut v = View::default();
        for (p, k) in [
            ("/usr", Kind::Dir),
            ("/usr/lib", Kind::Dir),
            ("/usr/lib/libz.so.1", file(b"z")),
            ("/usr/lib/sub", Kind::Dir),
            ("/usr/lib/sub/libdeep.so", file(b"d")),
            ("/lib", Kind::Symlink(b"usr/lib".to_vec())),
            ("/opt", Kind::Dir),
            ("/opt/app", Kind::Dir),
            ("/opt/app/liba.so", file(b"a")),
            ("/opt/other.so", file(b"o")),
            ("/srv", Kind::Dir),
            ("/srv/libnot.so", file(b"n")),
            ("/etc", Kind::Dir),
            ("/etc/ld.so.conf", file(b"/opt/app\n")),
        ] {
            v.nodes.insert(p.as_bytes().to_vec(), node(k));
        }
        let m = monitored(&v);
        let paths: Vec<String> = m
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.path).into_owned())
            .collect();
        assert_eq!(
            paths,
            [
                "/etc/ld.so.conf",
                "/opt/app",
                "/opt/app/liba.so",
                "/usr/lib",
                "/usr/lib/libz.so.1",
                "/usr/lib/sub",
                "/usr/lib/sub/libdeep.so",
            ]
        );
        let z = &m.records[4];
        assert_eq!(z.ftype, FileType::File);
        assert_eq!(z.mode, S_IFREG | 0o755);
        assert_eq!(z.blake3, Some(*blake3::hash(b"z").as_bytes()));
        // /lib is /usr/lib in this image: one dir, two spellings.
        let usr =
            m.sp.dirs
                .iter()
                .find(|d| d.path == Path::new("/usr/lib"))
                .map(|d| d.aliases.len());
        assert_eq!(usr, Some(2));
    }
}
