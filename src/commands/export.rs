//! `export`: the baseline as a portable, sorted (optionally signed) text
//! manifest for `check --against` on other hosts, or (`--format`) as an
//! allowlist for fapolicyd, auditd or AppLocker ([`crate::allowlist`]).

use std::io::Write;
use std::path::Path;

use crate::allowlist;
use crate::baseline::manifest;
use crate::cli::FormatArg;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::output::messages;

pub fn run(
    s: &Config,
    sign_with: Option<&Path>,
    output: Option<&Path>,
    format: FormatArg,
) -> Result<i32> {
    if format.is_allowlist() {
        if sign_with.is_some() {
            return Err(Error::Usage(
                "export --sign-with signs the manifest; the allowlists are not signed".into(),
            ));
        }
        return run_allowlist(s, output, format);
    }
    let key = sign_with
        .map(crate::baseline::signing::load_secret)
        .transpose()?;
    let base = super::check::load_baseline_as_built(s)?;
    let (meta, records) = (&base.meta, &base.records);
    let body = manifest::render(meta, records);
    let text = match &key {
        Some(k) => manifest::sign(&body, k),
        None => body,
    };
    write_out(output, &text)?;
    messages::status(&format!(
        "libwarden export: {} records of baseline {}{}",
        records.len(),
        base.describe(),
        if key.is_some() {
            "; manifest signed"
        } else {
            ""
        }
    ));
    Ok(0)
}

/// An allowlist for the OS's own controls, from the baseline (and, for
/// the digests other tools want, the baselined files read through the root).
fn run_allowlist(s: &Config, output: Option<&Path>, format: FormatArg) -> Result<i32> {
    let base = super::check::load_baseline_as_built(s)?;
    let (r, what) = match format {
        FormatArg::Fapolicyd => (
            allowlist::fapolicyd::render(&s.plan.root, &base.records),
            "fapolicyd trust entries",
        ),
        FormatArg::Auditd => {
            let (sp, _) = s.plan.resolve();
            (allowlist::auditd::render(&sp), "auditd watch rules")
        }
        _ => (
            allowlist::applocker::render(&s.plan.root, &base.records),
            "AppLocker DLL hash rules",
        ),
    };
    write_out(output, &r.text)?;
    for why in &r.skipped {
        messages::warning(&format!("export: left out {why}"));
    }
    messages::status(&format!(
        "libwarden export: {} {what} from baseline {}{}",
        r.entries,
        base.describe(),
        if r.skipped.is_empty() {
            String::new()
        } else {
            format!("; {} left out", r.skipped.len())
        }
    ));
    Ok(0)
}

pub(super) fn write_out(output: Option<&Path>, text: &str) -> Result<()> {
    match output {
        Some(p) => std::fs::write(p, text).map_err(|e| Error::io("write export", p, e))?,
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(Error::io("write", "stdout", e))
                }
                _ => {}
            }
        }
    }
    Ok(())
}
