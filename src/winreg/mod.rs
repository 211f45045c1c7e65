//! The Windows registry of an offline image: the hive files under
//! `Windows/System32/config` of a root, read with the bounded parser in
//! [`hive`], reduced to the values that decide which DLLs get loaded
//! ([`Snapshot`]). Those values become synthetic baseline records (paths
//! under `/registry/HKLM/...`), so a change is reported like a file
//! change, and the [`audit`] judges them.

pub mod hive;
#[cfg(windows)]
pub mod live;

#[cfg(test)]
#[path = "../../tests/integration/regf.rs"]
pub(crate) mod testwriter;

use std::path::{Path, PathBuf};

use crate::record::{FileClass, FileType, Record, RecordData};
use crate::rootfs::Root;
use hive::{Hive, Value};

/// Where synthetic registry records live in the record namespace.
/// The key of the system environment (PATH).
pub const ENVIRONMENT: &str = "SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Environment";

pub const PREFIX: &str = "/registry/HKLM";

/// The largest hive file read. Real SYSTEM and SOFTWARE hives stay under
/// 200 MB (a large SOFTWARE hive of a server with many roles is ~150 MB);
/// a bigger file is damaged or planted to exhaust memory (a sparse 3 GB
/// file costs the attacker no disk), and is refused before any read.
const HIVE_CAP: u64 = 256 << 20;
/// The base block of a hive (`regf` header), read first.
const HIVE_BASE: usize = 4096;
/// The most bytes of a value kept, as text, in its record.
const SHOWN_CAP: usize = 4096;

/// Which values of a key are kept.
enum Want {
    All,
    Named(&'static [&'static str]),
}

/// Keys of the SYSTEM hive, below the current control set.
const SYSTEM_KEYS: &[(&str, Want)] = &[
    (
        "Control\\Session Manager",
        Want::Named(&["SafeDllSearchMode", "CWDIllegalInDllSearch"]),
    ),
    ("Control\\Session Manager\\KnownDLLs", Want::All),
    ("Control\\Session Manager\\AppCertDlls", Want::All),
    (
        "Control\\Session Manager\\Environment",
        Want::Named(&[
            "COR_ENABLE_PROFILING",
            "COR_PROFILER",
            "COR_PROFILER_PATH",
            "Path",
        ]),
    ),
    (
        "Control\\Lsa",
        Want::Named(&[
            "Authentication Packages",
            "Notification Packages",
            "Security Packages",
        ]),
    ),
    (
        "Services\\NTDS",
        Want::Named(&["LsaDbExtPt", "DirectoryServiceExtPt"]),
    ),
];

const APPINIT: Want = Want::Named(&[
    "AppInit_DLLs",
    "LoadAppInit_DLLs",
    "RequireSignedAppInit_DLLs",
]);

/// Keys of the SOFTWARE hive.
const SOFTWARE_KEYS: &[(&str, Want)] = &[
    ("Microsoft\\Windows NT\\CurrentVersion\\Windows", APPINIT),
    (
        "Wow6432Node\\Microsoft\\Windows NT\\CurrentVersion\\Windows",
        APPINIT,
    ),
];

/// A Windows image inside a root: its directories (logical paths).
#[derive(Clone, Debug)]
pub struct Image {
    pub windows: PathBuf,
    pub system32: PathBuf,
    pub config: Option<PathBuf>,
}

impl Image {
    /// The Windows image under `root` (`Windows/System32`, any case), or
    /// `None` when the root is not one.
    pub fn find(root: &Root) -> Option<Image> {
        let windows = crate::rootfs::find_ci(root, Path::new("/"), "windows")?;
        let system32 = crate::rootfs::find_ci(root, &windows, "system32")?;
        let config = crate::rootfs::find_ci(root, &system32, "config");
        Some(Image {
            windows,
            system32,
            config,
        })
    }

    /// Reads the hives (the live registry when libwarden runs on the
    /// Windows it audits) and keeps the values the audit needs.
    pub fn snapshot(&self, root: &Root) -> Snapshot {
        let mut snap = Snapshot::default();
        #[cfg(windows)]
        if root.is_slash() {
            live_snapshot(&mut snap);
            return snap;
        }
        let Some(config) = &self.config else {
            snap.notes
                .push("Windows image without System32/config: no registry audit".into());
            return snap;
        };
        if let Some(bytes) = read_hive(root, config, "SYSTEM", &mut snap.notes) {
            match Hive::parse(&bytes) {
                Ok(h) => {
                    let set = current_control_set(&h);
                    for (key, want) in SYSTEM_KEYS {
                        let real = format!("{set}\\{key}");
                        let shown = format!("SYSTEM\\CurrentControlSet\\{key}");
                        collect(&h, &real, &shown, want, &mut snap);
                    }
                }
                Err(e) => snap.notes.push(format!("SYSTEM hive unreadable: {e}")),
            }
        }
        if let Some(bytes) = read_hive(root, config, "SOFTWARE", &mut snap.notes) {
            match Hive::parse(&bytes) {
                Ok(h) => {
                    for (key, want) in SOFTWARE_KEYS {
                        collect(&h, key, &format!("SOFTWARE\\{key}"), want, &mut snap);
                    }
                }
                Err(e) => snap.notes.push(format!("SOFTWARE hive unreadable: {e}")),
            }
        }
        snap.entries.sort_by_key(|e| e.path());
        snap
    }
}

/// The live registry's values (Windows only).
#[cfg(windows)]
fn live_snapshot(snap: &mut Snapshot) {
    let mut read = |real: String, shown: String, want: &Want| match live::values(&real) {
        Ok(Some(values)) => {
            for v in values {
                if wanted(want, &v.name) {
                    snap.entries.push(Entry {
                        key: shown.clone(),
                        value: v,
                    });
                }
            }
        }
        Ok(None) => {}
        Err(code) => snap
            .notes
            .push(format!("registry key HKLM\\{real}: error {code}")),
    };
    for (key, want) in SYSTEM_KEYS {
        let path = format!("SYSTEM\\CurrentControlSet\\{key}");
        read(path.clone(), path, want);
    }
    for (key, want) in SOFTWARE_KEYS {
        let path = format!("SOFTWARE\\{key}");
        read(path.clone(), path, want);
    }
    snap.entries.sort_by_key(|e| e.path());
}

fn wanted(want: &Want, name: &str) -> bool {
    match want {
        Want::All => true,
        Want::Named(names) => names.iter().any(|n| n.eq_ignore_ascii_case(name)),
    }
}

fn read_hive(root: &Root, config: &Path, name: &str, notes: &mut Vec<String>) -> Option<Vec<u8>> {
    let Some(p) = crate::rootfs::find_ci(root, config, name) else {
        notes.push(format!("no {name} hive in the Windows image"));
        return None;
    };
    match read_hive_file(root, &p) {
        Ok(b) => Some(b),
        Err(e) => {
            notes.push(format!("{name} hive: cannot read {}: {e}", p.display()));
            None
        }
    }
}

/// Reads a hive file confined below the root, holding no more than it
/// needs: a file over [`HIVE_CAP`] is refused from its size alone; else
/// the base block is read, and then only the hive bins it declares (its
/// "hive bins data size", offset 40), never the rest of the file.
fn read_hive_file(root: &Root, p: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = root.open_file(&root.resolve(p)?)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > HIVE_CAP {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} bytes, larger than the {} MiB a hive can be: not read",
                meta.len(),
                HIVE_CAP >> 20
            ),
        ));
    }
    let mut base = Vec::with_capacity(HIVE_BASE);
    (&f).take(HIVE_BASE as u64).read_to_end(&mut base)?;
    let bins = match base.get(40..44) {
        Some(b) if base.starts_with(b"regf") => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64,
        // Not a hive: the parser says so from the base block alone.
        _ => return Ok(base),
    };
    // A size of 0 (never written) means "the file": bounded by the cap.
    let want = if bins == 0 {
        meta.len()
    } else {
        (HIVE_BASE as u64 + bins).min(meta.len())
    };
    let mut out = base;
    out.reserve_exact(want.saturating_sub(out.len() as u64) as usize);
    (&f).take(want.saturating_sub(out.len() as u64))
        .read_to_end(&mut out)?;
    Ok(out)
}

/// `ControlSet00N` from `Select\Current`; `ControlSet001` when absent.
fn current_control_set(h: &Hive) -> String {
    let n = h
        .open("Select")
        .ok()
        .flatten()
        .and_then(|k| h.value(k, "Current").ok().flatten())
        .and_then(|v| v.number())
        .filter(|n| (1..=999).contains(n))
        .unwrap_or(1);
    format!("ControlSet{n:03}")
}

fn collect(h: &Hive, real: &str, shown: &str, want: &Want, snap: &mut Snapshot) {
    let k = match h.open(real) {
        Ok(Some(k)) => k,
        Ok(None) => return,
        Err(e) => {
            snap.notes.push(format!("registry key {shown}: {e}"));
            return;
        }
    };
    let values = match h.values(k) {
        Ok(v) => v,
        Err(e) => {
            snap.notes.push(format!("registry key {shown}: {e}"));
            return;
        }
    };
    for v in values {
        if wanted(want, &v.name) {
            snap.entries.push(Entry {
                key: shown.to_string(),
                value: v,
            });
        }
    }
}

/// One registry value the audit watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `SYSTEM\CurrentControlSet\Control\...` or `SOFTWARE\...`.
    pub key: String,
    pub value: Value,
}

impl Entry {
    /// The record path: `/registry/HKLM/SYSTEM/CurrentControlSet/...`.
    pub fn path(&self) -> String {
        value_path(&self.key, &self.value.name)
    }
}

/// The record path of a value; `/` and `%` in names are percent-escaped so
/// the path splits back unambiguously.
pub fn value_path(key: &str, name: &str) -> String {
    let esc = |s: &str| s.replace('%', "%25").replace('/', "%2F");
    let key: Vec<String> = key.split('\\').map(esc).collect();
    let name = if name.is_empty() {
        "(default)".to_string()
    } else {
        esc(name)
    };
    format!("{PREFIX}/{}/{name}", key.join("/"))
}

/// The watched registry values of an image.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Sorted by record path.
    pub entries: Vec<Entry>,
    /// What could not be read (not findings).
    pub notes: Vec<String>,
}

impl Snapshot {
    /// The value `name` of `key`.
    pub fn get(&self, key: &str, name: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|e| e.key.eq_ignore_ascii_case(key) && e.value.name.eq_ignore_ascii_case(name))
            .map(|e| &e.value)
    }

    /// Every kept value of `key`.
    pub fn values_of<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.key.eq_ignore_ascii_case(key))
            .map(|e| &e.value)
    }

    /// The synthetic baseline records: the digest covers type and data;
    /// `target` holds the value as text (the diff shows it, and the audit
    /// compares it with the baseline's).
    pub fn records(&self) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .entries
            .iter()
            .map(|e| {
                let mut h = blake3::Hasher::new();
                h.update(&e.value.kind.to_le_bytes());
                h.update(&e.value.data);
                let mut shown = shown(&e.value).into_bytes();
                shown.truncate(SHOWN_CAP);
                Record::from(RecordData {
                    path: e.path().into_bytes(),
                    ftype: FileType::File,
                    size: e.value.data.len() as u64,
                    mode: 0o100444,
                    uid: 0,
                    gid: 0,
                    dev: 0,
                    inode: 0,
                    nlink: 1,
                    mtime: (0, 0),
                    ctime: (0, 0),
                    blake3: Some(*h.finalize().as_bytes()),
                    sha256: None,
                    unhashed: None,
                    target: Some(shown.into()),
                    class: FileClass::Other,
                    facts: None,
                })
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out.dedup_by(|a, b| a.path == b.path);
        out
    }
}

/// `REG_DWORD 1`, `REG_MULTI_SZ a b`: a value as one line of text.
pub fn shown(v: &Value) -> String {
    format!("{} {}", hive::type_name(v.kind), v.display())
}

/// True for a record path of a synthetic registry record.
pub fn is_registry_path(p: &[u8]) -> bool {
    p.starts_with(PREFIX.as_bytes()) && p.get(PREFIX.len()) == Some(&b'/')
}

/// A Windows image and its registry, read once per run: the search
/// paths, the records and the audits all use this one snapshot.
#[derive(Clone, Debug)]
pub struct Registry {
    pub image: Image,
    pub snap: Snapshot,
}

/// The registry of the Windows image under `root`, if it is one.
pub fn read(root: &Root) -> Option<Registry> {
    let image = Image::find(root)?;
    let snap = image.snapshot(root);
    Some(Registry { image, snap })
}

/// Adds the image's registry records to a scan's records (kept sorted).
/// Returns the notes of what could not be read.
pub fn add_records(reg: Option<&Registry>, records: &mut Vec<Record>) -> Vec<String> {
    let Some(reg) = reg else {
        return Vec::new();
    };
    records.retain(|r| !is_registry_path(&r.path));
    records.extend(reg.snap.records());
    records.sort_by(|a, b| a.path.cmp(&b.path));
    reg.snap.notes.clone()
}

/// `%SystemRoot%\System32`, `C:\Tools` and the like, as a logical path
/// inside the root (the root is the system drive). `None` for other
/// drives, UNC paths, unknown variables and paths that do not exist.
pub fn resolve_windows_path(root: &Root, img: &Image, entry: &str) -> Option<PathBuf> {
    let mut s = entry.trim().trim_matches('"').to_string();
    let lower = s.to_ascii_lowercase();
    let win = img
        .windows
        .to_string_lossy()
        .trim_start_matches('/')
        .to_string();
    for (var, val) in [
        ("%systemroot%", win.as_str()),
        ("%windir%", win.as_str()),
        ("%systemdrive%", ""),
        ("%programfiles%", "Program Files"),
        ("%programfiles(x86)%", "Program Files (x86)"),
        ("%programdata%", "ProgramData"),
    ] {
        if lower.starts_with(var) {
            s = format!("\\{val}{}", &s[var.len()..]);
            break;
        }
    }
    if s.contains('%') || s.starts_with("\\\\") {
        return None;
    }
    let b = s.as_bytes();
    if b.len() >= 2 && b[1] == b':' {
        if !b[0].eq_ignore_ascii_case(&b'c') {
            return None;
        }
        s = s[2..].to_string();
    }
    let mut p = PathBuf::from("/");
    for part in s.split(['\\', '/']).filter(|c| !c.is_empty() && *c != ".") {
        if part == ".." {
            p.pop();
            continue;
        }
        p = crate::rootfs::find_ci(root, &p, part)?;
    }
    (p != Path::new("/")).then_some(p)
}

/// The directories of the system `PATH` that resolve inside the root.
pub fn system_path_dirs(root: &Root, reg: &Registry) -> Vec<PathBuf> {
    let (img, snap) = (&reg.image, &reg.snap);
    let Some(path) = snap.get(ENVIRONMENT, "Path").and_then(|v| v.string()) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for entry in path.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        if let Some(d) = resolve_windows_path(root, img, entry) {
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_paths_escape_separators() {
        assert_eq!(
            value_path("SYSTEM\\CurrentControlSet\\Control", "a/b%c"),
            "/registry/HKLM/SYSTEM/CurrentControlSet/Control/a%2Fb%25c"
        );
        assert_eq!(
            value_path("SOFTWARE\\X", ""),
            "/registry/HKLM/SOFTWARE/X/(default)"
        );
        assert!(is_registry_path(b"/registry/HKLM/SYSTEM/x"));
        assert!(!is_registry_path(b"/registry/HKLMX"));
    }

    #[test]
    fn windows_paths_resolve_inside_the_root_case_insensitively() {
        let t = tempfile::tempdir().unwrap();
        for d in ["Windows/System32/config", "Tools/Bin", "Program Files/App"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        let root = Root::new(t.path()).unwrap();
        let img = Image::find(&root).unwrap();
        let r = |e: &str| resolve_windows_path(&root, &img, e);
        assert_eq!(
            r("%SystemRoot%\\system32"),
            Some("/Windows/System32".into())
        );
        assert_eq!(r("%SYSTEMROOT%"), Some("/Windows".into()));
        assert_eq!(r("C:\\TOOLS\\bin"), Some("/Tools/Bin".into()));
        assert_eq!(r("c:/tools/../Tools"), Some("/Tools".into()));
        assert_eq!(r("%ProgramFiles%\\app"), Some("/Program Files/App".into()));
        assert_eq!(r("\"C:\\Tools\""), Some("/Tools".into()));
        assert_eq!(r("D:\\Tools"), None);
        assert_eq!(r("\\\\server\\share"), None);
        assert_eq!(r("%USERPROFILE%\\bin"), None);
        assert_eq!(r("C:\\missing"), None);
        assert_eq!(r("C:\\..\\..\\.."), None);
    }
}
