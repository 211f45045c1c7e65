//! `accept [--kind K].. [--all-standing] [PATH|GLOB..]`: acknowledge
//! standing audit and provenance findings as they are now, in a new
//! baseline generation (same records, the acknowledgements added to its
//! extra pairs: covered by its digest and signature). Nothing interactive:
//! what to acknowledge is named on the command line, and a critical
//! finding needs its path named or `--yes`.

use std::path::Path;

use crate::acknowledge::{self, Acks};
use crate::baseline;
use crate::cli::AcceptArgs;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::finding::{Finding, Severity};
use crate::output::{self, messages};
use crate::pipeline::{self, Judges, Reference};
use crate::sys::OsStrExt;

/// Critical findings named before "and N more" in a refusal.
const SHOW_CRITICAL: usize = 5;

/// What the command line selects.
pub(super) struct Selection {
    pub(super) kinds: Vec<crate::finding::Kind>,
    /// Literal paths: a finding at or below one is selected.
    prefixes: Vec<Vec<u8>>,
    globs: globset::GlobSet,
    pub(super) any_named: bool,
}

impl Selection {
    pub(super) fn parse(a: &AcceptArgs) -> Result<Selection> {
        let mut kinds = Vec::new();
        for k in a.kinds.iter().flat_map(|k| k.split(',')) {
            let k = k.trim();
            match acknowledge::kind_named(k) {
                Some(kind) => kinds.push(kind),
                None => {
                    let names: Vec<&str> = acknowledge::KINDS.iter().map(|k| k.name()).collect();
                    return Err(Error::Usage(format!(
                        "accept --kind {k:?}: not a kind that can be acknowledged (one of {}; \
                         changes such as added or content are accepted by `update`)",
                        names.join(", ")
                    )));
                }
            }
        }
        let mut prefixes = Vec::new();
        let mut globs = globset::GlobSetBuilder::new();
        for p in &a.paths {
            if !p.starts_with('/') {
                return Err(Error::Usage(format!(
                    "accept: {p:?} must be an absolute path or glob (inside --root)"
                )));
            }
            if p.contains(['*', '?', '[', '{']) {
                let g = globset::GlobBuilder::new(p)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| Error::Usage(format!("accept: glob {p:?}: {e}")))?;
                globs.add(g);
            } else {
                let t = p.trim_end_matches('/');
                prefixes.push(if t.is_empty() {
                    b"/".to_vec()
                } else {
                    t.into()
                });
            }
        }
        let globs = globs
            .build()
            .map_err(|e| Error::Usage(format!("accept: {e}")))?;
        if a.paths.is_empty() && !a.all_standing {
            return Err(Error::Usage(
                "accept: name the findings to acknowledge (PATH or GLOB..), or give \
                 --all-standing for every standing finding (narrowed by --kind); \
                 `accept --dry-run` shows what would be acknowledged"
                    .into(),
            ));
        }
        Ok(Selection {
            kinds,
            prefixes,
            globs,
            any_named: !a.paths.is_empty(),
        })
    }

    pub(super) fn kind_ok(&self, f: &Finding) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&f.kind)
    }

    pub(super) fn path_ok(&self, f: &Finding) -> bool {
        if !self.any_named {
            return true;
        }
        self.prefixes.iter().any(|p| is_within(&f.path, p))
            || self
                .globs
                .is_match(Path::new(std::ffi::OsStr::from_bytes(&f.path)))
    }
}

pub fn run(s: &Config, a: &AcceptArgs) -> Result<i32> {
    let sel = Selection::parse(a)?;
    let mut logs = super::open_syslogs(&a.syslog)?;
    // Held from judging to writing, as `update` does.
    let (store, base, key) = super::update::hold(
        s,
        a.sign_with.as_deref(),
        a.unsigned,
        a.dry_run,
        "accept --unsigned: a public key is configured, so every generation must be \
         signed; give --sign-with KEY instead",
    )?;
    let root = s.plan.root.host().as_os_str().as_bytes();
    // As `check`: the package digests of files read come from that read.
    let snap = s.plan.snapshot_against(&base, false);
    super::show(&snap);
    let v = pipeline::judge(&s.plan, Reference::Baseline(&base), &snap, Judges::ALL);
    messages::notes(&v.notes);

    let picked: Vec<&Finding> = v
        .findings
        .iter()
        .filter(|f| sel.kind_ok(f) && sel.path_ok(f))
        .collect();
    let (take, changes): (Vec<&Finding>, Vec<&Finding>) = picked
        .into_iter()
        .partition(|f| acknowledge::acceptable(f.kind));
    if !changes.is_empty() {
        messages::info(&format!(
            "{} not acknowledged: changes against the baseline are accepted by `update`",
            output::count_by_kind(&changes.into_iter().cloned().collect::<Vec<_>>())
        ));
    }
    let take: Vec<Finding> = take.into_iter().cloned().collect();
    let critical: Vec<&Finding> = take
        .iter()
        .filter(|f| f.severity == Severity::Critical)
        .collect();
    let refusal = (!sel.any_named && !a.yes && !critical.is_empty()).then(|| {
        let mut named: Vec<String> = critical
            .iter()
            .take(SHOW_CRITICAL)
            .map(|f| format!("{} {}", f.kind.name(), crate::escape::for_terminal(&f.path)))
            .collect();
        if critical.len() > SHOW_CRITICAL {
            named.push(format!("{} more", critical.len() - SHOW_CRITICAL));
        }
        format!(
            "accept --all-standing would acknowledge {} critical finding{} ({}): name \
             their paths to acknowledge them, or give --yes",
            critical.len(),
            if critical.len() == 1 { "" } else { "s" },
            named.join(", ")
        )
    });

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let by = acknowledge::who();
    let mut acks = Acks::from_pairs(&base.extra);
    let before = acks.len();
    let mut shown = Vec::with_capacity(take.len());
    for f in &take {
        acks.accept(f, &snap.scan.records, &by, now);
        if let Some(ack) = acks.find(f, &snap.scan.records) {
            shown.push((f.clone(), ack.clone()));
        }
    }

    if a.dry_run {
        let mut context = serde_json::Map::new();
        context.insert("dry_run".into(), serde_json::Value::Bool(true));
        super::emit(s, &take, &context)?;
        if let Some(why) = refusal {
            messages::warning(&format!("this would be refused: {why}"));
        }
        let tail = format!(
            "would acknowledge {}; nothing written (dry run); baseline {}",
            output::count_by_kind(&take),
            base.describe()
        );
        super::summary("accept", &snap, &tail);
        return Ok(0);
    }
    if let Some(why) = refusal {
        return Err(Error::Usage(why));
    }
    if acks.len() == before {
        let tail = format!(
            "nothing new to acknowledge ({} standing selected); baseline {} unchanged",
            output::count_by_kind(&take),
            base.describe()
        );
        super::summary("accept", &snap, &tail);
        return Ok(0);
    }
    let extra = acks.merge_into(&base.extra);
    let meta = baseline::commit(
        &s.baseline,
        store,
        &base.records,
        &extra,
        root,
        key.as_ref(),
    )?;
    let mut context = serde_json::Map::new();
    context.insert("accepted".into(), serde_json::Value::Bool(true));
    super::emit_with_acknowledged(s, &[], &shown, &context)?;
    super::send_syslogs(&mut logs, &take, crate::output::sink::Source::Acknowledged);
    let tail = format!(
        "acknowledged {} ({} acknowledgements in all); baseline {}",
        output::count_by_kind(&take),
        acks.len(),
        baseline::verify::describe(&meta)
    );
    super::summary("accept", &snap, &tail);
    Ok(0)
}

/// `path` equals `sel` or lies below it.
fn is_within(path: &[u8], sel: &[u8]) -> bool {
    sel == b"/" || path == sel || (path.starts_with(sel) && path.get(sel.len()) == Some(&b'/'))
}
