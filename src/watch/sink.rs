//! Where the watcher's findings go: stdout (JSON Lines or the human line),
//! an append-only JSON Lines file, syslog. Each finding carries when it was
//! seen and what found it (an event, a rescan, the startup scan). A sink
//! that fails is reported on stderr once per failure streak and retried on
//! the next finding; the others go on.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::syslog::Syslog;
use crate::error::{Error, Result};
use crate::escape;
use crate::finding::Finding;
use crate::report::{self, Format};

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
    let mut v = report::to_json(f);
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

/// `2026-11-27T02:41:01.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, m, day) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_747_261_123);
        assert_eq!(rfc3339(t), "2026-11-27T02:41:01.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
