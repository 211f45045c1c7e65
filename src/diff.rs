//! Baseline versus now: a merge of two path-sorted record lists into
//! findings, one per changed path, with a severity that depends on what the
//! path is to the loader.

use crate::sys::OsStrExt;
use std::cmp::Ordering;

use crate::finding::{Finding, Kind, Severity};
use crate::record::{FileType, Record};
use crate::searchpaths::{Origin, SearchPaths};

/// What a path is to the dynamic loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `/etc/ld.so.preload`: every process loads what it names.
    Preload,
    /// `ld.so.conf` and everything it includes or could include.
    LoaderConfig,
    /// `ld.so.cache`: rewritten by every `ldconfig` run.
    LoaderCache,
    /// The dynamic loader itself.
    Loader,
    /// Anything else in a search path.
    Other,
}

/// Decides roles from the resolved search paths.
pub struct Classifier<'a> {
    sp: &'a SearchPaths,
}

impl<'a> Classifier<'a> {
    pub fn new(sp: &'a SearchPaths) -> Self {
        Classifier { sp }
    }

    pub fn role(&self, path: &[u8]) -> Role {
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        if let Some(t) = self.sp.tracked(path) {
            match t.origin {
                Origin::Loader => return Role::Loader,
                Origin::LoaderFile if name == b"ld.so.preload" => return Role::Preload,
                Origin::LoaderFile if name == b"ld.so.cache" => return Role::LoaderCache,
                Origin::LoaderFile => return Role::LoaderConfig,
                _ => {}
            }
        }
        let parent = &path[..path.len() - name.len()];
        let parent = parent.strip_suffix(b"/").unwrap_or(parent);
        let in_include_dir = self.sp.dirs.iter().any(|d| {
            !d.recursive
                && d.origins
                    .iter()
                    .any(|o| matches!(o, Origin::Include { .. }))
                && d.path.as_os_str().as_bytes() == parent
        });
        if in_include_dir {
            return Role::LoaderConfig;
        }
        if is_loader_name(name) {
            return Role::Loader;
        }
        Role::Other
    }
}

/// `ld-linux-x86-64.so.2`, `ld64.so.2`, `ld-musl-x86_64.so.1` and the like.
pub fn is_loader_name(name: &[u8]) -> bool {
    let has_so = name.windows(3).any(|w| w == b".so");
    has_so
        && (name.starts_with(b"ld-linux")
            || name.starts_with(b"ld64.so")
            || name.starts_with(b"ld-musl-"))
}

/// Compares `before` and `after` (both sorted by path, unique).
/// The kinds [`diff`] reports: what changed against a baseline (the rest
/// are standing findings of the judges).
pub const KINDS: [Kind; 7] = [
    Kind::Added,
    Kind::Removed,
    Kind::Type,
    Kind::Link,
    Kind::Content,
    Kind::Unverified,
    Kind::Metadata,
];

pub fn diff(before: &[Record], after: &[Record], cls: &Classifier) -> Vec<Finding> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    loop {
        let ord = match (before.get(i), after.get(j)) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            // The scan's record of an unchanged path is the baseline's
            // own: nothing to compare.
            (Some(b), Some(a)) if b.shares(a) => {
                i += 1;
                j += 1;
                continue;
            }
            (Some(b), Some(a)) => b.path.cmp(&a.path),
        };
        match ord {
            Ordering::Less => {
                out.push(removed(&before[i], cls));
                i += 1;
            }
            Ordering::Greater => {
                out.push(added(&after[j], cls));
                j += 1;
            }
            Ordering::Equal => {
                if let Some(f) = changed(&before[i], &after[j], cls) {
                    out.push(f);
                }
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn added(a: &Record, cls: &Classifier) -> Finding {
    let role = cls.role(&a.path);
    let severity = match role {
        Role::Preload => Severity::Critical,
        Role::Loader | Role::LoaderConfig => Severity::High,
        Role::LoaderCache => Severity::Medium,
        Role::Other if a.class.is_loadable() => Severity::Medium,
        Role::Other => Severity::Low,
    };
    let what = match role {
        Role::Preload => {
            "preload list created: every dynamically linked program will load what it names"
                .to_string()
        }
        Role::Loader => "new file named like a dynamic loader".to_string(),
        Role::LoaderConfig => "new loader configuration file".to_string(),
        _ => format!("new {}", describe(a)),
    };
    Finding {
        kind: Kind::Added,
        severity,
        path: a.path.clone(),
        detail: what,
        changes: Vec::new(),
        before: None,
        after: Some(a.clone()),
    }
}

fn removed(b: &Record, cls: &Classifier) -> Finding {
    let severity = match cls.role(&b.path) {
        Role::Preload | Role::Other => Severity::Low,
        Role::LoaderCache => Severity::Medium,
        Role::Loader | Role::LoaderConfig => Severity::High,
    };
    Finding {
        kind: Kind::Removed,
        severity,
        path: b.path.clone(),
        detail: format!("{} is gone", describe(b)),
        changes: Vec::new(),
        before: Some(b.clone()),
        after: None,
    }
}

fn describe(r: &Record) -> String {
    use crate::record::FileClass::*;
    if crate::winreg::is_registry_path(&r.path) {
        return format!("registry value ({})", shown_target(r));
    }
    let class = match r.class {
        ElfDyn => "ELF shared object",
        ElfExec => "ELF executable",
        ElfOther => "ELF object",
        PeDll => "PE DLL",
        PeExe => "PE image",
        Other | None => r.ftype.name(),
    };
    class.to_string()
}

fn changed(b: &Record, a: &Record, cls: &Classifier) -> Option<Finding> {
    let role = cls.role(&a.path);
    let loadable = a.class.is_loadable() || b.class.is_loadable();
    let mut changes = Vec::new();
    let finding = |kind, severity, detail: String, changes| Finding {
        kind,
        severity,
        path: a.path.clone(),
        detail,
        changes,
        before: Some(b.clone()),
        after: Some(a.clone()),
    };
    if b.ftype != a.ftype {
        let sev = if role == Role::Other && !loadable {
            Severity::Medium
        } else {
            Severity::Critical.min(escalate(role, Severity::High))
        };
        let detail = format!("was a {}, is now a {}", b.ftype.name(), a.ftype.name());
        return Some(finding(Kind::Type, sev, detail, vec!["type"]));
    }
    let meta = meta_changes(b, a);
    if b.ftype == FileType::Symlink && b.target != a.target {
        changes.push("target");
        changes.extend(meta.iter().copied());
        let detail = format!(
            "symlink now points to {} (was {})",
            crate::escape::for_terminal(a.target.as_deref().unwrap_or_default()),
            crate::escape::for_terminal(b.target.as_deref().unwrap_or_default())
        );
        let sev = escalate(role, Severity::Medium);
        return Some(finding(Kind::Link, sev, detail, changes));
    }
    if b.ftype == FileType::File {
        match (b.blake3, a.blake3) {
            (Some(x), Some(y)) if x != y => {
                changes.push("blake3");
                if b.size != a.size {
                    changes.push("size");
                }
                changes.extend(meta.iter().copied());
                let sev = match role {
                    Role::LoaderCache => Severity::Low,
                    Role::Loader | Role::Preload => Severity::Critical,
                    Role::LoaderConfig => Severity::High,
                    Role::Other if loadable => Severity::High,
                    Role::Other => Severity::Medium,
                };
                let detail = if crate::winreg::is_registry_path(&a.path) {
                    format!(
                        "registry value now {} (was {})",
                        shown_target(a),
                        shown_target(b)
                    )
                } else {
                    format!("content changed ({} bytes, was {})", a.size, b.size)
                };
                return Some(finding(Kind::Content, sev, detail, changes));
            }
            (Some(_), None) => {
                let why = match a.unhashed {
                    Some(crate::record::Unhashed::Unstable) => {
                        "it kept changing while being hashed"
                    }
                    _ => "it could not be read",
                };
                let detail = format!("not verified: {why}");
                return Some(finding(
                    Kind::Unverified,
                    escalate(role, Severity::Medium),
                    detail,
                    vec!["blake3"],
                ));
            }
            _ => {}
        }
    }
    if meta.is_empty() {
        return None;
    }
    let risky = became_risky(b, a);
    let sev = if risky {
        Severity::High
    } else {
        escalate(role, Severity::Low)
    };
    let detail = meta_detail(b, a, &meta);
    Some(finding(Kind::Metadata, sev, detail, meta))
}

/// A registry record's value, as text.
fn shown_target(r: &Record) -> String {
    crate::escape::for_terminal(r.target.as_deref().unwrap_or_default())
}

/// Loader files matter more than any library.
fn escalate(role: Role, base: Severity) -> Severity {
    match role {
        Role::Preload | Role::Loader => Severity::Critical,
        Role::LoaderConfig => base.max(Severity::High),
        Role::LoaderCache | Role::Other => base,
    }
}

fn meta_changes(b: &Record, a: &Record) -> Vec<&'static str> {
    let mut v = Vec::new();
    if b.perm() != a.perm() {
        v.push("mode");
    }
    if b.uid != a.uid {
        v.push("uid");
    }
    if b.gid != a.gid {
        v.push("gid");
    }
    if b.inode != a.inode {
        v.push("inode");
    }
    // A directory's link count moves with every subdirectory added.
    if b.nlink != a.nlink && a.ftype != FileType::Dir {
        v.push("nlink");
    }
    v
}

/// Newly writable by others, newly setuid/setgid, or handed to a non-root
/// owner: someone else can now change what gets loaded.
pub fn became_risky(b: &Record, a: &Record) -> bool {
    let gained = a.perm() & !b.perm();
    gained & 0o022 != 0 || gained & 0o6000 != 0 || (b.uid == 0 && a.uid != 0)
}

fn meta_detail(b: &Record, a: &Record, changes: &[&str]) -> String {
    let mut parts = Vec::new();
    for c in changes {
        parts.push(match *c {
            "mode" => format!("mode {:04o} -> {:04o}", b.perm(), a.perm()),
            "uid" => format!("owner {} -> {}", b.uid, a.uid),
            "gid" => format!("group {} -> {}", b.gid, a.gid),
            "inode" => format!("inode {} -> {}", b.inode, a.inode),
            "nlink" => format!("links {} -> {}", b.nlink, a.nlink),
            _ => continue,
        });
    }
    parts.join(", ")
}
