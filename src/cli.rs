//! The command line as clap sees it. Raw flags only: [`crate::settings`]
//! turns them, with the config file, into the settings the program reads.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::report::Format;

/// File integrity monitoring for the places shared libraries come from.
#[derive(Debug, Parser)]
#[command(name = "libwarden", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

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
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// No summary or warnings on stderr: findings and errors only
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Scanning threads [default: one per core]
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// Files read at once [default: 4 per thread, at most 64]; more helps
    /// a cold disk
    #[arg(long, global = true, value_name = "N")]
    pub io_threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the baseline of every search path
    Init {
        /// Replace an existing baseline
        #[arg(long)]
        force: bool,
    },
    /// Scan, compare with the baseline and report
    Check {
        /// Re-hash every file, even those whose identity is unchanged
        #[arg(long)]
        paranoid: bool,
    },
    /// Accept the current state into the baseline (all, or PATHs)
    Update {
        /// Re-hash every file, even those whose identity is unchanged
        #[arg(long)]
        paranoid: bool,
        /// Only accept changes at or below these paths (inside --root)
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// List the resolved search paths, each with where it came from
    Paths,
    /// Hashing throughput of a tree, per phase, size class and thread count
    Bench(BenchArgs),
}

/// Options of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The tree to walk and hash [default: /usr/lib, or the --generate DIR]
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// First build a synthetic tree in DIR (many small files, some medium,
    /// a few huge, one deep chain); DIR must be new or an earlier tree
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
