//! `check`: scan, compare with the baseline (or a golden manifest), run the
//! self-check, report, exit with the bitmask.

use crate::sys::OsStrExt;
use std::path::Path;

use crate::diff::{self, Classifier};
use crate::error::{Error, Result};
use crate::finding::{self, Finding};
use crate::manifest;
use crate::provenance;
use crate::record::Record;
use crate::report;
use crate::settings::Settings;
use crate::store::{Meta, Store};

/// Loads the live generation, closes the store at once (the lock is held
/// only for the read), and verifies signature and generation.
pub fn load_baseline(s: &Settings) -> Result<(Meta, Vec<Record>)> {
    load_baseline_with_extra(s).map(|(m, r, _)| (m, r))
}

/// [`load_baseline`] plus the generation's extra pairs (provenance state).
#[allow(clippy::type_complexity)]
pub fn load_baseline_with_extra(
    s: &Settings,
) -> Result<(Meta, Vec<Record>, Vec<(Vec<u8>, Vec<u8>)>)> {
    let store = Store::open(&s.db)?;
    let loaded = store.load_with_extra()?;
    drop(store);
    crate::trust::verify(s, &loaded.0, s.verify_key.as_ref())?;
    let root = s.root.host().as_os_str().as_bytes();
    if loaded.0.root != root && !s.quiet {
        eprintln!(
            "libwarden: warning: this baseline was built for root {}, not {}",
            crate::escape::for_terminal(&loaded.0.root),
            crate::escape::for_terminal(root)
        );
    }
    Ok(loaded)
}

pub fn run(s: &Settings, paranoid: bool, against: Option<&Path>) -> Result<i32> {
    let mut context = serde_json::Map::new();
    let (mut findings, res, notes, what) = match against {
        None => {
            let (meta, baseline, extra) = load_baseline_with_extra(s)?;
            // Every line says which generation it was judged against, so a
            // SIEM sees a baseline that went backwards.
            context.insert(
                "baseline".into(),
                serde_json::json!({
                    "generation": meta.generation,
                    "written": crate::trust::utc(meta.written),
                    "signed": meta.signature.is_some(),
                }),
            );
            let (sp, res) = super::scan_now(s, &baseline, paranoid);
            super::warn(s, &sp, &res);
            let mut f = diff::diff(&baseline, &res.records, &Classifier::new(&sp));
            let prior = provenance::State::from_pairs(&extra);
            if let Some(out) = provenance::run(s, &res.records, &baseline, &prior) {
                provenance::relabel_updates(&mut f, &out, &prior);
                f.extend(out.findings);
            }
            let (audit, notes) = super::audit::run_audit(s, &sp, &res.records, Some(&baseline));
            f.extend(audit);
            (
                f,
                res,
                notes,
                format!("baseline {}", crate::trust::describe(&meta)),
            )
        }
        Some(path) => {
            let golden = load_manifest(s, path)?;
            let (sp, res) = super::scan_now(s, &[], true);
            super::warn(s, &sp, &res);
            let keep = |r: &&Record| {
                !s.manifest_exclude
                    .is_match(Path::new(std::ffi::OsStr::from_bytes(&r.path)))
            };
            let theirs: Vec<Record> = golden.iter().filter(keep).cloned().collect();
            let ours: Vec<Record> = res
                .records
                .iter()
                .filter(keep)
                .map(manifest::portable)
                .collect();
            let mut f = diff::diff(&theirs, &ours, &Classifier::new(&sp));
            // The golden manifest is the `manifest` evidence here.
            if let Some(out) = provenance::run(s, &res.records, &theirs, &Default::default()) {
                f.extend(out.findings);
            }
            // The audit judges this host as it is; the golden manifest has
            // no inodes to compare process mappings with.
            let (audit, notes) = super::audit::run_audit(s, &sp, &res.records, None);
            f.extend(audit);
            (f, res, notes, format!("manifest {}", path.display()))
        }
    };
    findings.extend(crate::selfcheck::run());
    report::sort(&mut findings);
    emit(s, &findings, &context)?;
    super::audit::write_notes(s, &notes);
    let tail = format!("{}; against {what}", report::count_by_kind(&findings));
    super::summary(s, "check", &res, &tail);
    Ok(finding::exit_bits(&findings))
}

fn emit(
    s: &Settings,
    findings: &[Finding],
    context: &serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    report::write_findings_with(&mut out, findings, s.format, context)
        .map_err(|e| Error::io("write", "stdout", e))
}

/// Reads and (when a key is configured) verifies a golden manifest.
fn load_manifest(s: &Settings, path: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            what: "manifest",
            path: path.to_path_buf(),
        },
        _ => Error::io("read manifest", path, e),
    })?;
    let m = manifest::parse(&text).map_err(|msg| Error::CorruptBaseline {
        path: path.to_path_buf(),
        msg,
    })?;
    if let Some(key) = &s.verify_key {
        if let Err(why) = crate::signing::verify(key, m.signature.as_ref(), &m.body) {
            return Err(Error::Signature {
                path: path.to_path_buf(),
                msg: format!("manifest signature refused ({why:?})"),
            });
        }
    }
    Ok(m.records)
}
