//! The command line as clap sees it. Raw flags only: [`crate::config`]
//! turns them, with the config file, into the `Config` the program reads.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// File integrity monitoring for the places shared libraries come from.
#[derive(Debug, Parser)]
#[command(name = "libwarden", version, about, long_about = None, after_long_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// The end of `--help` and of the man page: files and exit status.
const AFTER_HELP: &str = "\
Files:
  /etc/libwarden/config.toml   configuration (TOML; every key has a default)
  /var/lib/libwarden/          baseline generations and rollback state (root)

Exit status:
  0        clean: nothing found
  1-15     findings, a bitmask: 1 added, 2 removed, 4 changed, 8 policy
  64       usage error (bad flag, bad config)
  65       baseline missing, corrupt, newer, or failing its signature
  66       a root or path given does not exist
  70       internal error
  74       I/O error that stopped the run
  130      interrupted

Bits 1, 2 and 4 mean what they mean to AIDE. AIDE's own errors are 14-19,
where libwarden's 8-15 are findings: an AIDE wrapper must read 1-15 as
findings and 64 and up as errors.";

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file [default: /etc/libwarden/config.toml if present]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Treat DIR as / (an offline image, a container rootfs, a chroot)
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Baseline directory [default: /var/lib/libwarden/baseline as root]
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Output format of findings
    #[arg(long, global = true, value_enum, default_value_t = FormatArg::Human)]
    pub format: FormatArg,
    /// No summary or warnings on stderr: findings and errors only
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Scanning threads [default: one per core]
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// Refuse a baseline not signed by this public key (libwarden.pub)
    #[arg(long, global = true, value_name = "PUB")]
    pub verify_with: Option<PathBuf>,
    /// Re-pin rollback detection to the live baseline generation, which
    /// must be N (after the rollback state was lost, or to accept an older
    /// generation restored on purpose)
    #[arg(long, global = true, value_name = "N")]
    pub accept_generation: Option<u64>,
    /// Use a baseline built for another root path (an image or rootfs
    /// copied or moved to a new place); refused otherwise
    #[arg(long, global = true)]
    pub allow_other_root: bool,
    /// Files read at once [default: 4 per thread, at most 64]; more helps
    /// a cold disk
    #[arg(long, global = true, value_name = "N")]
    pub io_threads: Option<usize>,
    /// A container image to read in place instead of a root: an OCI image
    /// layout directory or a `docker save` archive, optionally with a tag
    /// (`DIR:TAG`, `FILE.tar:NAME:TAG`) (`paths`, `audit`, `init`,
    /// `check`, `update`, `accept`, `export`).
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "root")]
    pub image: Option<PathBuf>,
    /// Also report the findings of check, audit and watch to the Windows
    /// Application event log (source libwarden, registered by `service
    /// install`; Windows only)
    #[arg(long, global = true)]
    pub eventlog: bool,
    /// With --image: the name of the image's baseline [default: the
    /// image's id, the digest of its config]; `check --image NEW --name
    /// OLD` judges NEW against OLD's baseline
    #[arg(long, global = true, value_name = "NAME")]
    pub name: Option<String>,
    /// With --image: which image of a layout or archive holding several
    /// (an OCI `ref.name`, a docker `RepoTags` entry); `--image PATH:TAG`
    /// says the same
    #[arg(long, global = true, value_name = "TAG", requires = "image")]
    pub tag: Option<String>,
}

/// `--format`: how findings are written; for `export`, which allowlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Human,
    /// JSON Lines: one object per finding
    Json,
    /// Elastic Common Schema 8.x documents, one per line
    Ecs,
    /// `export` only: a fapolicyd trust file (path, size, SHA-256)
    Fapolicyd,
    /// `export` only: auditd watch rules for the search paths
    Auditd,
    /// `export` only: AppLocker DLL rules (Authenticode SHA-256)
    Applocker,
}

impl FormatArg {
    /// One of the allowlists only `export` writes.
    pub fn is_allowlist(self) -> bool {
        matches!(
            self,
            FormatArg::Fapolicyd | FormatArg::Auditd | FormatArg::Applocker
        )
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the baseline of every search path
    Init {
        /// Replace an existing baseline
        #[arg(long)]
        force: bool,
        /// Sign the generation with this secret key (libwarden.key)
        #[arg(long, value_name = "KEY")]
        sign_with: Option<PathBuf>,
    },
    /// Scan, compare with the baseline and report
    Check {
        /// Re-hash every file, even those whose identity is unchanged
        #[arg(long)]
        paranoid: bool,
        /// Also show acknowledged findings, marked as such (they set no
        /// exit bit)
        #[arg(long)]
        all: bool,
        /// Compare with a golden manifest (from `export`) instead of the
        /// local baseline
        #[arg(long, value_name = "MANIFEST")]
        against: Option<PathBuf>,
    },
    /// Accept the current state into the baseline (all, or PATHs)
    Update {
        /// Re-hash every file, even those whose identity is unchanged
        #[arg(long)]
        paranoid: bool,
        /// Sign the new generation with this secret key; the current one
        /// must verify with its public half first (or be an unsigned one
        /// written by `update --unsigned`: signing restarts)
        #[arg(long, value_name = "KEY", conflicts_with = "unsigned")]
        sign_with: Option<PathBuf>,
        /// Write an unsigned generation over a signed one: stop signing
        /// this baseline (refused when a public key is configured)
        #[arg(long)]
        unsigned: bool,
        /// Accept only `package_update` findings: changed libraries whose
        /// new content matches an upgraded package
        #[arg(long)]
        package_updates: bool,
        /// Print what would be accepted; write nothing
        #[arg(long)]
        dry_run: bool,
        /// Accept critical findings too when no PATH is named
        #[arg(long)]
        yes: bool,
        /// Also send what was accepted to syslog (RFC 5424, marked
        /// source="accepted"): unix:/dev/log, udp://HOST:PORT or
        /// tcp://HOST:PORT; may be repeated
        #[arg(long, value_name = "TARGET")]
        syslog: Vec<String>,
        /// Only accept changes at or below these paths (inside --root)
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Acknowledge standing audit and provenance findings (known, judged
    /// harmless): recorded in a new baseline generation, silent until
    /// their subject changes
    Accept(AcceptArgs),
    /// List the resolved search paths, each with where it came from
    Paths,
    /// Write a new Ed25519 key pair (libwarden.key, libwarden.pub) into DIR
    Keygen {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Write the baseline as a portable, sorted text manifest
    Export {
        /// Sign the manifest with this secret key
        #[arg(long, value_name = "KEY")]
        sign_with: Option<PathBuf>,
        /// Write to FILE instead of stdout
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List the image baselines (`init --image`) of this baseline
    /// directory: name, image id, tags, generation, date
    Images,
    /// Audit the loader: preload list, configuration, writable paths,
    /// RPATH/RUNPATH, the loader itself, environment files, running
    /// processes (needs no baseline)
    Audit,
    /// Realtime monitoring plus periodic full rescans, until SIGTERM
    Watch(WatchArgs),
    /// Run `watch` as a Windows service (Windows only; on Linux use the
    /// systemd units in dist/)
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Hashing throughput of a tree, per phase, size class and thread count
    Bench(BenchArgs),
    /// Judge library loads against the baseline as they happen (Linux,
    /// root); --enforce refuses unknown ones (signed baseline only)
    Guard(GuardArgs),
    /// Write man pages or shell completions generated from this command
    /// line's definition into DIR (for packagers)
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generate,
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// What `generate` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Generate {
    /// libwarden.1 and libwarden-COMMAND.1 for each command
    Man,
    /// bash completion: libwarden
    CompleteBash,
    /// zsh completion: _libwarden
    CompleteZsh,
    /// fish completion: libwarden.fish
    CompleteFish,
}

/// Where `guard` places its fanotify marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GuardScope {
    /// The whole file system of each search dir (every mount of it)
    Filesystem,
    /// The mount of each search dir
    Mount,
    /// Only the search dirs and the directories below them in the baseline
    Dirs,
}

/// Options of `guard`.
#[derive(Debug, Args)]
pub struct GuardArgs {
    /// Refuse (FAN_DENY) ELF shared objects in the search paths that the
    /// baseline does not know or whose content differs; needs a baseline
    /// signed and verified with --verify-with (or baseline_pubkey)
    #[arg(long)]
    pub enforce: bool,
    /// Judge before answering as --enforce does, report what would be
    /// refused (action "would_deny"), refuse nothing
    #[arg(long)]
    pub dry_run: bool,
    /// What the marks cover
    #[arg(long, value_enum, default_value_t = GuardScope::Filesystem)]
    pub scope: GuardScope,
    /// The longest an opener waits for a verdict before it is allowed
    /// (and a monitoring_gap reported)
    #[arg(long, value_name = "DURATION", default_value = "250ms",
          value_parser = crate::timefmt::parse_duration)]
    pub verdict_timeout: std::time::Duration,
    /// Opens waiting for a verdict before further ones are allowed unjudged
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub queue: usize,
    /// Threads judging opens
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub workers: usize,
    /// Also append findings as JSON Lines to FILE
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also send findings to syslog (RFC 5424): unix:/dev/log,
    /// udp://HOST:PORT or tcp://HOST:PORT; may be repeated
    #[arg(long, value_name = "TARGET")]
    pub syslog: Vec<String>,
    /// Write findings to stdout even when --output or --syslog is given
    #[arg(long)]
    pub stdout: bool,
}

/// Options of `accept`.
#[derive(Debug, Args)]
pub struct AcceptArgs {
    /// Only findings of this kind (e.g. unpackaged, rpath, process); may be
    /// repeated
    #[arg(long = "kind", value_name = "KIND")]
    pub kinds: Vec<String>,
    /// Every standing finding (of the --kind given), when no PATH is named
    #[arg(long)]
    pub all_standing: bool,
    /// Acknowledge critical findings too with --all-standing
    #[arg(long)]
    pub yes: bool,
    /// Print what would be acknowledged; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Sign the new generation with this secret key (needed when the
    /// baseline is signed)
    #[arg(long, value_name = "KEY", conflicts_with = "unsigned")]
    pub sign_with: Option<PathBuf>,
    /// Write an unsigned generation over a signed one (stop signing)
    #[arg(long)]
    pub unsigned: bool,
    /// Also send what was acknowledged to syslog (RFC 5424, marked
    /// source="acknowledged"); may be repeated
    #[arg(long, value_name = "TARGET")]
    pub syslog: Vec<String>,
    /// Findings at or below these paths, or matching these globs
    /// (`/usr/lib/jvm/**`)
    #[arg(value_name = "PATH|GLOB")]
    pub paths: Vec<String>,
}

/// Options of `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Time between full (incremental) rescans [default: 1h, or the
    /// config's rescan_interval]
    #[arg(long, value_name = "DURATION", value_parser = crate::timefmt::parse_duration)]
    pub rescan_interval: Option<std::time::Duration>,
    /// Quiet time after a path's last event before it is checked, so a
    /// save-by-rename is one finding
    #[arg(long, value_name = "DURATION", default_value = "150ms",
          value_parser = crate::timefmt::parse_duration)]
    pub debounce: std::time::Duration,
    /// Also append findings as JSON Lines to FILE
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also send findings to syslog (RFC 5424): unix:/dev/log,
    /// udp://HOST:PORT or tcp://HOST:PORT; may be repeated
    #[arg(long, value_name = "TARGET")]
    pub syslog: Vec<String>,
    /// Write findings to stdout even when --output or --syslog is given
    #[arg(long)]
    pub stdout: bool,
}

/// `service`: the Windows service that runs `watch`.
#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Register the service (automatic start, LocalSystem) to run `watch`
    /// with these options and the global --config, --db, --root,
    /// --threads, --verify-with given here; findings go to the
    /// Application event log (source libwarden), and to --output/--syslog
    /// if given. Registers the event source too.
    Install(WatchArgs),
    /// Stop and delete the service, remove the event source
    Uninstall,
    /// The service itself, as the Service Control Manager starts it
    #[command(hide = true)]
    Run(WatchArgs),
}

/// Options of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The tree to walk and hash [default: /usr/lib, or the --generate DIR]
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// First build a synthetic tree in DIR (many small files, some medium,
    /// a few huge, one deep chain); DIR must be new or an earlier tree.
    /// A second one at half the scale, DIR.half, gives the growth of time
    /// and peak RSS per 10k entries
    #[arg(long, value_name = "DIR")]
    pub generate: Option<PathBuf>,
    /// Size of the generated tree, as a factor of the default (~1.3 GB)
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub scale: f64,
    /// Passes per thread count; the median pass (by wall time) is reported
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub runs: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
