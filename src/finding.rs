//! Findings: what a check, an audit or the watcher reports, each with a
//! kind, a severity and the exit-code bit it sets (CONTRACT.md).

use serde::Serialize;

use crate::record::Record;

/// What was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A path the baseline does not know.
    Added,
    /// A baseline path that is gone.
    Removed,
    /// Different bytes.
    Content,
    /// Mode, owner, group, inode or link count changed.
    Metadata,
    /// A file became a directory, a symlink, a FIFO...
    Type,
    /// A symlink points elsewhere.
    Link,
    /// A file the baseline has a digest for could not be hashed now
    /// (unreadable, or changing through every retry): it is not verified.
    Unverified,
    /// Code injected through the loader: `/etc/ld.so.preload` or a
    /// dangerous entry in it, or `LD_PRELOAD` / a foreign object in
    /// libwarden's own process.
    Preload,
    /// A loader configuration problem: an `ld.so.conf` search dir that is
    /// missing, relative or temporary, a shadowing library, a stale or
    /// odd `ld.so.cache`.
    LoaderConfig,
    /// A search dir, one of its ancestors or a library that someone other
    /// than root (or a trusted uid) can write.
    Writable,
    /// A dangerous `DT_RPATH`/`DT_RUNPATH` entry.
    Rpath,
    /// The dynamic loader: patched, unknown `PT_INTERP`, a loader backup.
    Loader,
    /// `LD_PRELOAD`, `LD_LIBRARY_PATH` or `LD_AUDIT` set in an environment
    /// file or a systemd unit.
    Environment,
    /// A running process with loader variables or a suspicious mapping.
    Process,
    /// The watcher may have missed changes (an event queue overflowed, a
    /// directory could not be watched) for the time window it names. Not a
    /// change on the host, so it sets no exit bit; a rescan follows.
    MonitoringGap,
    /// A changed library whose new content is its package's, after that
    /// package's version changed: an expected upgrade (severity info).
    PackageUpdate,
    /// A file dpkg owns whose content does not match the package's md5sums.
    ModifiedVsPackage,
    /// A library no installed package owns, and nothing else vouches for.
    Unpackaged,
    /// A library (or kernel module, or PE image) without the signature its
    /// location's policy asks for.
    Unsigned,
    /// A signature or an IMA hash that does not match the content: tampered.
    SignatureInvalid,
    /// A valid signature by a signer that does not chain to a trusted root.
    UntrustedSigner,
    /// A Windows registry value that makes Windows load a DLL it should
    /// not, or weakens the DLL search order.
    Registry,
    /// `guard`: a process opened a library the baseline does not know,
    /// whose content differs from it, or that lies in a directory others
    /// can write (the Linux analogue of Sysmon event 7, filtered).
    Load,
    /// A DLL a Windows program would load ahead of the system's: unsigned
    /// beside a signed program, or in a user-writable `PATH` directory.
    SideLoading,
    /// The running kernel: tainted by an unsigned, out-of-tree or
    /// force-loaded module, or a loaded module without a known file.
    Kernel,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Added => "added",
            Kind::Removed => "removed",
            Kind::Content => "content",
            Kind::Metadata => "metadata",
            Kind::Type => "type",
            Kind::Link => "link",
            Kind::Unverified => "unverified",
            Kind::Preload => "preload",
            Kind::LoaderConfig => "loader_config",
            Kind::Writable => "writable",
            Kind::Rpath => "rpath",
            Kind::Loader => "loader",
            Kind::Environment => "environment",
            Kind::Process => "process",
            Kind::MonitoringGap => "monitoring_gap",
            Kind::PackageUpdate => "package_update",
            Kind::ModifiedVsPackage => "modified_vs_package",
            Kind::Unpackaged => "unpackaged",
            Kind::Unsigned => "unsigned",
            Kind::SignatureInvalid => "signature_invalid",
            Kind::UntrustedSigner => "untrusted_signer",
            Kind::Registry => "registry",
            Kind::Load => "load",
            Kind::SideLoading => "side_loading",
            Kind::Kernel => "kernel",
        }
    }

    /// The exit-code bit: 1 added, 2 removed, 4 changed, 8 policy; none for
    /// a monitoring gap (what the rescan after it finds sets the bits).
    pub fn exit_bit(self) -> i32 {
        match self {
            Kind::Added => 1,
            Kind::Removed => 2,
            Kind::Content
            | Kind::Metadata
            | Kind::Type
            | Kind::Link
            | Kind::Unverified
            | Kind::PackageUpdate => 4,
            Kind::Preload
            | Kind::LoaderConfig
            | Kind::Writable
            | Kind::Rpath
            | Kind::Loader
            | Kind::Environment
            | Kind::Process
            | Kind::ModifiedVsPackage
            | Kind::Unpackaged
            | Kind::Unsigned
            | Kind::SignatureInvalid
            | Kind::UntrustedSigner
            | Kind::Registry
            | Kind::SideLoading
            | Kind::Kernel
            | Kind::Load => 8,
            Kind::MonitoringGap => 0,
        }
    }
}

/// How much a finding matters. `Info` sets no exit bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One reportable fact about one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    pub path: Vec<u8>,
    /// One human sentence.
    pub detail: String,
    /// Which record fields differ (for changes against a baseline).
    pub changes: Vec<&'static str>,
    pub before: Option<Record>,
    pub after: Option<Record>,
}

impl Finding {
    /// A finding of the audit: no baseline records attached.
    pub fn audit(kind: Kind, severity: Severity, path: Vec<u8>, detail: String) -> Finding {
        // Logical paths use `/`; on Windows a `\` in one is a separator
        // `PathBuf::join` added (no Windows name can hold it).
        #[cfg(windows)]
        let path: Vec<u8> = path
            .into_iter()
            .map(|b| if b == b'\\' { b'/' } else { b })
            .collect();
        Finding {
            kind,
            severity,
            path,
            detail,
            changes: Vec::new(),
            before: None,
            after: None,
        }
    }
}

/// The exit code bits of a set of findings.
pub fn exit_bits(findings: &[Finding]) -> i32 {
    findings
        .iter()
        .filter(|f| f.severity > Severity::Info)
        .fold(0, |acc, f| acc | f.kind.exit_bit())
}

/// A line for stderr that is not a finding: something a judge could not
/// look at, a count, a timing. Judges return these; only the output layer
/// prints them (and `-q` silences them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// Printed as `libwarden: note: TEXT`.
    Info(String),
    /// Printed as `libwarden: warning: TEXT`.
    Warning(String),
    /// Printed as `libwarden: TEXT` (counts and timings).
    Status(String),
}
