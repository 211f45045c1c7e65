//! `check`: snapshot, judge against the baseline (or a golden manifest)
//! with every judge, report, exit with the bitmask.

use std::path::Path;

use crate::baseline::{self, manifest};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::finding;
use crate::input;
use crate::output::{self, messages};
use crate::pipeline::{self, Judges, Reference};
use crate::record::Record;
use crate::sys::OsStrExt;

/// The live baseline of this configuration, verified; its notes printed.
pub fn load_baseline(s: &Config) -> Result<baseline::Baseline> {
    let (b, notes) = baseline::load(&s.baseline, s.plan.root.host().as_os_str().as_bytes())?;
    messages::notes(&notes);
    Ok(b)
}

/// Like [`load_baseline`], for a command that judges nothing with it
/// (`export`): the root it was built for does not matter.
pub fn load_baseline_as_built(s: &Config) -> Result<baseline::Baseline> {
    let (store, b, notes) = baseline::load_held(&s.baseline, None)?;
    drop(store);
    messages::notes(&notes);
    Ok(b)
}

/// `all`: show acknowledged findings too, marked (they set no exit bit).
pub fn run(s: &Config, paranoid: bool, all: bool, against: Option<&Path>) -> Result<i32> {
    let mut context = serde_json::Map::new();
    let mut judged_against = None;
    let (snap, v, what) = match against {
        None => {
            // The package owners stay in the store unless a judge needs
            // them (files gone with their package).
            let (base, notes) =
                baseline::load_lean(&s.baseline, s.plan.root.host().as_os_str().as_bytes())?;
            messages::notes(&notes);
            // Every line says which generation it was judged against, so a
            // SIEM sees a baseline that went backwards.
            context.insert(
                "baseline".into(),
                serde_json::json!({
                    "generation": base.meta.generation,
                    "written": baseline::verify::utc(base.meta.written),
                    "signed": base.meta.signature.is_some(),
                }),
            );
            let snap = s.plan.snapshot_against(&base, paranoid);
            super::show(&snap);
            let v = pipeline::judge(&s.plan, Reference::Baseline(&base), &snap, Judges::ALL);
            let what = format!("baseline {}", base.describe());
            judged_against = Some(base);
            (snap, v, what)
        }
        Some(path) => {
            let golden = load_manifest(s, path)?;
            let snap = s.plan.snapshot(&[], true);
            super::show(&snap);
            let keep = |r: &&Record| {
                !s.manifest_exclude
                    .is_match(Path::new(std::ffi::OsStr::from_bytes(&r.path)))
            };
            let theirs: Vec<Record> = golden.iter().filter(keep).cloned().collect();
            let ours: Vec<Record> = snap
                .scan
                .records
                .iter()
                .filter(keep)
                .map(manifest::portable)
                .collect();
            let reference = Reference::Manifest {
                theirs: &theirs,
                ours: &ours,
            };
            let v = pipeline::judge(&s.plan, reference, &snap, Judges::ALL);
            (snap, v, format!("manifest {}", path.display()))
        }
    };
    if all {
        super::emit_with_acknowledged(s, &v.findings, &v.acknowledged, &context)?;
    } else {
        super::emit(s, &v.findings, &context)?;
    }
    super::to_eventlog(s, &v.findings, &context)?;
    messages::notes(&v.notes);
    let tail = format!(
        "{}{}; against {what}",
        output::count_by_kind(&v.findings),
        super::acknowledged_tail(v.acknowledged.len(), all)
    );
    super::summary("check", &snap, &tail);
    // The process exits next: freeing the records one by one (two sets
    // after a change, 75,000 allocations each) would only delay the exit
    // by a hundredth of a second of the run.
    std::mem::forget(snap);
    std::mem::forget(judged_against);
    Ok(finding::exit_bits(&v.findings))
}

/// Reads and (when a key is configured) verifies a golden manifest.
///
/// Read with a bound and without blocking. A path that cannot be a manifest
/// at all (a device, a FIFO, a directory, a file over
/// [`input::MANIFEST_CAP`]) is a usage error (64), as a bad `--config` is:
/// the operator named the wrong thing, and nothing was judged. A regular
/// file that does not parse stays a corrupt reference (65).
fn load_manifest(s: &Config, path: &Path) -> Result<Vec<Record>> {
    let text = input::read_bounded(path, input::MANIFEST_CAP).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            what: "manifest",
            path: path.to_path_buf(),
        },
        std::io::ErrorKind::InvalidInput => Error::Usage(format!(
            "check --against {}: {e}: a manifest is a regular file written by `libwarden export`",
            path.display()
        )),
        _ => Error::io("read manifest", path, e),
    })?;
    let m = manifest::parse(&text).map_err(|msg| Error::CorruptBaseline {
        path: path.to_path_buf(),
        msg,
    })?;
    if let Some(key) = &s.baseline.verify_key {
        if let Err(why) = baseline::signing::verify(key, m.signature.as_ref(), &m.body) {
            return Err(Error::Signature {
                path: path.to_path_buf(),
                msg: format!("manifest signature refused ({why:?})"),
            });
        }
    }
    Ok(m.records)
}
