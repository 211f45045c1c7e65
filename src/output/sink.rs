//! Where the watcher's findings go: stdout (JSON Lines or the human line),
//! an append-only JSON Lines file, syslog. Each finding carries when it was
//! seen and what found it (an event, a rescan, the startup scan). A sink
//! that fails is reported on stderr once per failure streak and retried on
//! the next finding; the others go on.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use serde_json::{json, Value};

use super::syslog::Syslog;
use crate::error::{Error, Result};
use crate::escape;
use crate::finding::Finding;
use crate::output::{self, Format};

/// What noticed a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The scan at start-up (deviations that existed before the watch).
    Startup,
    /// A file-system event.
    Event,
    /// A periodic or gap-recovery rescan.
    Rescan,
    /// The short-interval check of directories that could not be watched.
    Fallback,
    /// The rescan after a new baseline generation was loaded.
    Reload,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Startup => "startup",
            Source::Event => "event",
            Source::Rescan => "rescan",
            Source::Fallback => "fallback",
            Source::Reload => "reload",
        }
    }
}

/// The circumstances of one finding.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    pub time: SystemTime,
    pub source: Source,
    /// For a monitoring gap: the window in which changes may have been
    /// missed as events.
    pub gap: Option<(SystemTime, SystemTime)>,
}

/// A finding as the watcher's JSON object: the `check` object plus `time`,
/// `source` and, for gaps, `gap_start`/`gap_end`.
pub fn to_json(f: &Finding, ctx: &Context) -> Value {
    let mut v = output::to_json(f);
    if let Value::Object(m) = &mut v {
        m.insert("time".into(), json!(rfc3339(ctx.time)));
        m.insert("source".into(), json!(ctx.source.name()));
        if let Some((a, b)) = ctx.gap {
            m.insert("gap_start".into(), json!(rfc3339(a)));
            m.insert("gap_end".into(), json!(rfc3339(b)));
        }
    }
    v
}

/// Every configured sink.
pub struct Sinks {
    stdout: Option<Format>,
    file: Option<(PathBuf, File, bool)>,
    syslog: Vec<Syslog>,
}

impl Sinks {
    /// Opens the file (append-only, created 0640) and the syslog targets.
    /// stdout is written when no other sink is given, or with `stdout`.
    pub fn open(
        format: Format,
        output: Option<&PathBuf>,
        syslog: &[String],
        stdout: bool,
    ) -> Result<Sinks> {
        let file = match output {
            None => None,
            Some(p) => Some((p.clone(), open_output(p)?, false)),
        };
        let syslog = syslog
            .iter()
            .map(|t| Syslog::new(t).map_err(|e| Error::Usage(format!("--syslog {t:?}: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let stdout = (stdout || (file.is_none() && syslog.is_empty())).then_some(format);
        Ok(Sinks {
            stdout,
            file,
            syslog,
        })
    }

    /// Opens the output file again (after log rotation moved it away).
    pub fn reopen(&mut self) {
        if let Some((path, file, failing)) = &mut self.file {
            match open_output(path) {
                Ok(f) => {
                    *file = f;
                    *failing = false;
                }
                Err(e) => eprintln!("libwarden watch: warning: {e}"),
            }
        }
    }

    /// Sends one finding everywhere. False when stdout was the only sink
    /// and it is gone (a closed pipe): the watcher has nobody to tell.
    pub fn emit(&mut self, f: &Finding, ctx: &Context) -> bool {
        let mut json_line = None;
        let mut line = || -> Vec<u8> {
            json_line
                .get_or_insert_with(|| {
                    let mut l = to_json(f, ctx).to_string().into_bytes();
                    l.push(b'\n');
                    l
                })
                .clone()
        };
        if let Some(format) = self.stdout {
            let bytes = match format {
                Format::Json => line(),
                Format::Human => format!(
                    "{} {:<8} {:<14} {}  {}\n",
                    rfc3339(ctx.time),
                    f.severity.name(),
                    f.kind.name(),
                    escape::for_terminal(&f.path),
                    escape::for_terminal(f.detail.as_bytes())
                )
                .into_bytes(),
            };
            let mut out = io::stdout().lock();
            let r = out.write_all(&bytes).and_then(|_| out.flush());
            if let Err(e) = r {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    self.stdout = None;
                    if self.file.is_none() && self.syslog.is_empty() {
                        return false;
                    }
                } else {
                    eprintln!("libwarden watch: warning: write stdout: {e}");
                }
            }
        }
        if let Some((path, file, failing)) = &mut self.file {
            // One write per line: with O_APPEND a line is never interleaved.
            match file.write_all(&line()) {
                Ok(()) => *failing = false,
                Err(e) => {
                    if !*failing {
                        eprintln!(
                            "libwarden watch: warning: write {}: {e}",
                            escape::for_terminal(path.as_os_str().as_encoded_bytes())
                        );
                    }
                    *failing = true;
                }
            }
        }
        for s in &mut self.syslog {
            s.send(f, ctx);
        }
        true
    }
}

/// The output file: appended to, created 0640, never truncated.
fn open_output(p: &PathBuf) -> Result<File> {
    use crate::sys::OpenOptionsNoFollow;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .create_mode(0o640)
        .cloexec()
        .open(p)
        .map_err(|e| Error::io("open output", p, e))
}

pub use crate::timefmt::rfc3339;
