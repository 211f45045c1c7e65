//! The everyday operations on image baselines, with the host commands'
//! semantics: `update --image` (the image's changes against the baseline
//! of `--name` taken into a new generation, all or below PATHs),
//! `accept --image` (its standing findings acknowledged), `export
//! --image` (the baseline as the host's signed text manifest) and
//! `images` (the image baselines of this baseline directory). Each new
//! generation is held, signed and rollback-protected exactly as the
//! host's (`update::hold_at`, `baseline::commit`); the old generations
//! stay.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::image::{self as img_cmd, image_root, pair};
use crate::acknowledge::{self, Ack, Acks};
use crate::baseline::{self, manifest};
use crate::cli::{AcceptArgs, FormatArg};
use crate::config::Config;
use crate::diff;
use crate::error::{Error, Result};
use crate::escape;
use crate::finding::{Finding, Kind, Severity};
use crate::image::{records, Image};
use crate::imagejudge;
use crate::output::{self, messages, Format};
use crate::pipeline::{Judges, Reference};
use crate::provenance;
use crate::record::Record;

/// What an image shows against a baseline: the changes the diff finds,
/// and the standing findings of the host's judges on the image
/// (provenance, the loader audit) with the image's own (its config's
/// `Env`, whiteouts); a whiteout removal of a baselined library is the
/// diff's `removed`, said once. The records judged come with them, and
/// provenance's outcome (the package state now).
pub(super) fn judge(
    s: &Config,
    img: &Image,
    name: &str,
    base: &baseline::Baseline,
) -> Result<Judged> {
    let (j, f) = img_cmd::judged(s, img, name, Reference::Baseline(base), Judges::ALL)?;
    let baselined: std::collections::BTreeSet<&[u8]> =
        base.records.iter().map(|r| r.path.as_slice()).collect();
    let (changes, standing) = f.into_iter().partition(|x| match x.kind {
        Kind::Removed => baselined.contains(x.path.as_slice()),
        k => diff::KINDS.contains(&k),
    });
    Ok(Judged {
        monitored: j.monitored,
        changes,
        standing,
        provenance: j.verdict.provenance,
    })
}

/// What [`judge`] gives.
pub(super) struct Judged {
    pub monitored: records::Monitored,
    pub changes: Vec<Finding>,
    pub standing: Vec<Finding>,
    pub provenance: Option<provenance::Outcome>,
}

/// The standing findings the generation's acknowledgements do not cover,
/// and those they do (with who and when).
pub(super) fn split_acknowledged(
    extra: &[(Vec<u8>, Vec<u8>)],
    records: &[Record],
    standing: Vec<Finding>,
) -> (Vec<Finding>, Vec<(Finding, Ack)>) {
    let acks = Acks::from_pairs(extra);
    let mut open = Vec::new();
    let mut acked = Vec::new();
    for f in standing {
        match acks.find_standing(&f, records) {
            Some(a) => {
                let a = a.clone();
                acked.push((f, a));
            }
            None => open.push(f),
        }
    }
    (open, acked)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn context(img: &Image, name: &str, mark: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut c = serde_json::Map::new();
    c.insert(mark.into(), serde_json::Value::Bool(true));
    c.insert("image".into(), img.id.clone().into());
    c.insert("image_name".into(), name.into());
    c
}

/// A user's PATH as the record path it selects in the image: as given
/// when that selects something, else with its symlinks resolved in the
/// image (`/lib/x` where `/lib` is a link to `usr/lib`).
fn select(img: &Image, p: &Path, base: &[Record], now: &[Record]) -> Result<Vec<u8>> {
    let Some(s) = p.to_str().filter(|s| s.starts_with('/')) else {
        return Err(Error::Usage(format!(
            "update --image: {} must be an absolute path inside the image",
            p.display()
        )));
    };
    let lit = match s.trim_end_matches('/') {
        "" => b"/".to_vec(),
        t => t.as_bytes().to_vec(),
    };
    let hits = |sel: &[u8]| {
        base.iter()
            .chain(now.iter())
            .any(|r| super::update::is_within(&r.path, sel))
    };
    if hits(&lit) {
        return Ok(lit);
    }
    match img.view.resolve(&lit) {
        Some(r) if hits(&r) => Ok(r),
        _ => Err(Error::NotFound {
            what: "monitored path in the image",
            path: PathBuf::from(s),
        }),
    }
}

/// `update --image PATH [--name NAME] [PATH..]`: the image's changes
/// against the baseline of NAME (by default its id) become its next
/// generation, everywhere or only at and below the PATHs; the image
/// pairs name the image it was taken from. As the host's: `--dry-run`
/// writes nothing, a bare update refuses a critical change without
/// `--yes`, a signed baseline needs `--sign-with` (or `--unsigned`),
/// acknowledgements are carried over.
pub fn update(
    s: &Config,
    path: &Path,
    name: Option<&str>,
    o: &super::update::Options,
    paths: &[PathBuf],
) -> Result<i32> {
    if o.package_updates {
        return Err(Error::Usage(
            "update --image --package-updates: not supported for image baselines yet; \
             accept the upgraded libraries by path (`update --image IMAGE PATH..`) instead"
                .into(),
        ));
    }
    let _ = o.paranoid; // every file of an image is read from its layers anyway
    let mut logs = super::open_syslogs(o.syslog)?;
    let img = img_cmd::open(s, path)?;
    let (name, loc) = img_cmd::location(s, &img.id, img.manifest_digest.as_deref(), name)?;
    let root = image_root(&name);
    let (store, base, key) = super::update::hold_at(
        &loc,
        &root,
        o.sign_with,
        o.unsigned,
        o.dry_run,
        "update --unsigned: a public key is configured, so every generation must be signed; \
         give --sign-with KEY instead",
    )?;
    // `judged` says the search paths' warnings.
    let Judged {
        monitored: m,
        changes,
        standing,
        provenance: outcome,
    } = judge(s, &img, &name, &base)?;
    let selected: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| select(&img, p, &base.records, &m.records))
        .collect::<Result<_>>()?;
    let within = |p: &[u8]| {
        selected.is_empty() || selected.iter().any(|sel| super::update::is_within(p, sel))
    };
    let mut accepted: Vec<Finding> = changes.into_iter().filter(|f| within(&f.path)).collect();
    output::sort(&mut accepted);
    let critical: Vec<&Finding> = accepted
        .iter()
        .filter(|f| f.severity == Severity::Critical)
        .collect();
    let refusal = (selected.is_empty() && !o.yes && !critical.is_empty())
        .then(|| super::update::refuse_critical(&critical));
    let (standing, _) = split_acknowledged(&base.extra, &m.records, standing);
    let standing_tail = if standing.is_empty() {
        String::new()
    } else {
        format!(
            "; {} standing (not changes: `accept --image` acknowledges them)",
            output::count_by_kind(&standing)
        )
    };
    if o.dry_run {
        img_cmd::emit_image(s, &img, &accepted, &context(&img, &name, "dry_run"))?;
        if let Some(why) = refusal {
            messages::warning(&format!(
                "without --yes, this update would be refused: {why}"
            ));
        }
        messages::status(&format!(
            "libwarden update --image: would accept {}; nothing written (dry run); image \
             baseline {} {}{standing_tail}",
            output::count_by_kind(&accepted),
            escape::for_terminal(name.as_bytes()),
            base.describe()
        ));
        return Ok(0);
    }
    if let Some(why) = refusal {
        return Err(Error::Usage(why));
    }
    let mut next: Vec<Record> = base
        .records
        .iter()
        .filter(|r| !within(&r.path))
        .cloned()
        .collect();
    next.extend(m.records.iter().filter(|r| within(&r.path)).cloned());
    next.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    // What image the generation was last taken from, and what the
    // operator acknowledged (kept). Accepting that a library is gone
    // accepts the whiteout that removed it: that standing finding would
    // otherwise take the removal's place in the next check.
    let mut acks = Acks::from_pairs(&base.extra);
    let gone: std::collections::BTreeSet<&[u8]> = accepted
        .iter()
        .filter(|f| f.kind == Kind::Removed)
        .map(|f| f.path.as_slice())
        .collect();
    let (by, now) = (acknowledge::who(), unix_now());
    for f in img_cmd::findings(&img)
        .iter()
        .filter(|f| f.kind == Kind::Removed && gone.contains(f.path.as_slice()))
    {
        acks.accept_standing(f, &m.records, &by, now);
    }
    // The package state (versions, owners, digests) moves to what the
    // accepted records are, as `init --image` records it: a later check
    // of a package upgrade is judged against the versions accepted here.
    let scope: std::collections::HashSet<&[u8]> = next
        .iter()
        .map(|r| r.path.as_slice())
        .filter(|p| within(p))
        .collect();
    let iplan = imagejudge::plan_of(&s.plan, &img, &img_cmd::image_label(&name));
    let owners = crate::pipeline::owners(&iplan, &next);
    let mut pairs = super::update::next_state(
        &provenance::State::from_pairs(&base.extra),
        outcome.as_ref(),
        &next,
        (!selected.is_empty()).then_some(&scope),
        &owners,
    );
    pairs.extend(img_cmd::image_pairs(&img, &name));
    let extra = acks.merge_into(&pairs);
    let meta = baseline::commit(&loc, store, &next, &extra, &root, key.as_ref())?;
    img_cmd::emit_image(s, &img, &accepted, &context(&img, &name, "accepted"))?;
    super::send_syslogs(&mut logs, &accepted, output::sink::Source::Accepted);
    messages::status(&format!(
        "libwarden update --image: accepted {}; image baseline {} {} (from {}){standing_tail}",
        output::count_by_kind(&accepted),
        escape::for_terminal(name.as_bytes()),
        baseline::verify::describe(&meta),
        base.describe()
    ));
    Ok(0)
}

/// `accept --image PATH [--name NAME] [--kind K].. [--all-standing]
/// [PATH|GLOB..]`: the image's standing findings (a preload list, `LD_*`
/// in its config, a library deleted by a whiteout) acknowledged in a new
/// generation of NAME's baseline, as the host's `accept` does; changes
/// against the baseline are `update --image`'s.
pub fn accept(s: &Config, path: &Path, name: Option<&str>, a: &AcceptArgs) -> Result<i32> {
    let sel = super::accept::Selection::parse(a)?;
    let mut logs = super::open_syslogs(&a.syslog)?;
    let img = img_cmd::open(s, path)?;
    let (name, loc) = img_cmd::location(s, &img.id, img.manifest_digest.as_deref(), name)?;
    let root = image_root(&name);
    let (store, base, key) = super::update::hold_at(
        &loc,
        &root,
        a.sign_with.as_deref(),
        a.unsigned,
        a.dry_run,
        "accept --unsigned: a public key is configured, so every generation must be \
         signed; give --sign-with KEY instead",
    )?;
    let Judged {
        monitored: m,
        changes,
        standing,
        ..
    } = judge(s, &img, &name, &base)?;
    // Acknowledged already: not shown again, as the host's.
    let (standing, _) = split_acknowledged(&base.extra, &m.records, standing);
    let changes: Vec<Finding> = changes
        .into_iter()
        .filter(|f| sel.path_ok(f) && (sel.kinds.is_empty() || sel.kind_ok(f)))
        .collect();
    if !changes.is_empty() {
        messages::info(&format!(
            "{} not acknowledged: changes against the baseline are accepted by `update --image`",
            output::count_by_kind(&changes)
        ));
    }
    // A whiteout removal is standing (the image ships without what its
    // base did) though its kind is `removed`: taken when no --kind narrows.
    let take: Vec<Finding> = standing
        .into_iter()
        .filter(|f| {
            sel.path_ok(f)
                && if f.kind == Kind::Removed {
                    sel.kinds.is_empty()
                } else {
                    acknowledge::acceptable(f.kind) && sel.kind_ok(f)
                }
        })
        .collect();
    let critical: Vec<&Finding> = take
        .iter()
        .filter(|f| f.severity == Severity::Critical)
        .collect();
    let refusal = (!sel.any_named && !a.yes && !critical.is_empty()).then(|| {
        format!(
            "accept --all-standing would acknowledge {} critical finding{}: name their \
             paths to acknowledge them, or give --yes",
            critical.len(),
            if critical.len() == 1 { "" } else { "s" }
        )
    });
    let (by, now) = (acknowledge::who(), unix_now());
    let mut acks = Acks::from_pairs(&base.extra);
    let before = acks.len();
    let mut shown = Vec::with_capacity(take.len());
    for f in &take {
        acks.accept_standing(f, &m.records, &by, now);
        if let Some(ack) = acks.find_standing(f, &m.records) {
            shown.push((f.clone(), ack.clone()));
        }
    }
    if a.dry_run {
        img_cmd::emit_image(s, &img, &take, &context(&img, &name, "dry_run"))?;
        if let Some(why) = refusal {
            messages::warning(&format!("this would be refused: {why}"));
        }
        messages::status(&format!(
            "libwarden accept --image: would acknowledge {}; nothing written (dry run); \
             image baseline {} {}",
            output::count_by_kind(&take),
            escape::for_terminal(name.as_bytes()),
            base.describe()
        ));
        return Ok(0);
    }
    if let Some(why) = refusal {
        return Err(Error::Usage(why));
    }
    if acks.len() == before {
        messages::status(&format!(
            "libwarden accept --image: nothing new to acknowledge ({} standing selected); \
             image baseline {} {} unchanged",
            output::count_by_kind(&take),
            escape::for_terminal(name.as_bytes()),
            base.describe()
        ));
        return Ok(0);
    }
    let extra = acks.merge_into(&base.extra);
    let meta = baseline::commit(&loc, store, &base.records, &extra, &root, key.as_ref())?;
    img_cmd::emit_image_with(s, &img, &[], &shown, &context(&img, &name, "accepted"))?;
    super::send_syslogs(&mut logs, &take, output::sink::Source::Acknowledged);
    messages::status(&format!(
        "libwarden accept --image: acknowledged {} ({} acknowledgements in all); image \
         baseline {} {}",
        output::count_by_kind(&take),
        acks.len(),
        escape::for_terminal(name.as_bytes()),
        baseline::verify::describe(&meta)
    ));
    Ok(0)
}

/// The location of the image baseline `export` and `images` read: by
/// `--name`, else the id of the `--image` (read from its index and
/// config, no layer).
fn named_location(
    s: &Config,
    image: Option<&Path>,
    name: Option<&str>,
) -> Result<(String, baseline::Location)> {
    match (name, image) {
        (Some(n), _) => img_cmd::location(s, "", None, Some(n)),
        (None, Some(p)) => {
            let (path, tag) = img_cmd::image_ref(s, p)?;
            let id = Image::identify(&path, tag.as_deref())
                .map_err(|e| Error::Usage(format!("image {}: {e}", path.display())))?;
            img_cmd::location(s, &id.id, id.manifest_digest.as_deref(), None)
        }
        (None, None) => Err(Error::Usage(
            "export: --image PATH or --name NAME names the image baseline".into(),
        )),
    }
}

/// `export --image PATH | --name NAME`: the image baseline as the same
/// sorted, optionally signed text manifest as the host's `export`. The
/// allowlists are refused: they describe files on this host's disk.
pub fn export(
    s: &Config,
    image: Option<&Path>,
    name: Option<&str>,
    sign_with: Option<&Path>,
    out: Option<&Path>,
    format: FormatArg,
) -> Result<i32> {
    if format.is_allowlist() {
        return Err(Error::Usage(
            "export --image writes the manifest only: fapolicyd, auditd and AppLocker \
             allowlists describe files on this host's disk, not in an image"
                .into(),
        ));
    }
    let key = sign_with.map(baseline::signing::load_secret).transpose()?;
    let (name, loc) = named_location(s, image, name)?;
    let (store, base, notes) = baseline::load_held(&loc, None)?;
    drop(store);
    messages::notes(&notes);
    let body = manifest::render(&base.meta, &base.records);
    let text = match &key {
        Some(k) => manifest::sign(&body, k),
        None => body,
    };
    super::export::write_out(out, &text)?;
    messages::status(&format!(
        "libwarden export --image: {} records of image baseline {} {}{}",
        base.records.len(),
        escape::for_terminal(name.as_bytes()),
        base.describe(),
        if key.is_some() {
            "; manifest signed"
        } else {
            ""
        }
    ));
    Ok(0)
}

/// One image baseline, as `images` lists it.
struct Listed {
    name: String,
    dir: PathBuf,
    image: Option<String>,
    format: Option<String>,
    tags: Vec<String>,
    generation: u64,
    written: String,
    signed: bool,
    records: usize,
}

fn text(extra: &[(Vec<u8>, Vec<u8>)], key: &str) -> Option<String> {
    pair(extra, key).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// `images`: every image baseline under this baseline directory, with
/// its name, the image it was last taken from, its generation and date.
/// Read only; one that cannot be read is a warning and the list goes on.
pub fn list(s: &Config) -> Result<i32> {
    let dir = s.baseline.db.join(baseline::store::IMAGES_DIR);
    let mut found: Vec<Listed> = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(r) => r
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("read image baselines", &dir, e)),
    };
    for p in entries {
        let loaded = baseline::store::Store::open(&p).and_then(|st| st.load_with_extra());
        match loaded {
            Ok((meta, recs, extra)) => found.push(Listed {
                name: text(&extra, "name").unwrap_or_else(|| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                }),
                dir: p.clone(),
                image: text(&extra, "id"),
                format: text(&extra, "format"),
                tags: text(&extra, "tags")
                    .map(|t| t.lines().map(str::to_string).collect())
                    .unwrap_or_default(),
                generation: meta.generation,
                written: baseline::verify::utc(meta.written),
                signed: meta.signature.is_some(),
                records: recs.len(),
            }),
            Err(e) => messages::warning(&format!(
                "libwarden images: {}: {e}",
                escape::for_terminal(p.as_os_str().as_encoded_bytes())
            )),
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = std::io::stdout().lock();
    let mut print = || -> std::io::Result<()> {
        for l in &found {
            match s.format {
                Format::Json | Format::Ecs => writeln!(
                    out,
                    "{}",
                    json!({
                        "name": l.name, "image": l.image, "format": l.format, "tags": l.tags,
                        "generation": l.generation, "written": l.written, "signed": l.signed,
                        "records": l.records,
                        "path": escape::for_json(l.dir.as_os_str().as_encoded_bytes()),
                    })
                )?,
                Format::Human => writeln!(
                    out,
                    "{:<24} {:<20} gen {:<3} {} {:>6} records{}{}",
                    escape::for_terminal(l.name.as_bytes()),
                    l.image
                        .as_deref()
                        .map(|i| i.chars().take(19).collect::<String>())
                        .unwrap_or_else(|| "?".into()),
                    l.generation,
                    l.written,
                    l.records,
                    if l.signed { " signed" } else { "" },
                    if l.tags.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", escape::for_terminal(l.tags.join(", ").as_bytes()))
                    }
                )?,
            }
        }
        out.flush()
    };
    match print() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(Error::io("write", "stdout", e))
        }
        _ => {}
    }
    messages::status(&format!(
        "libwarden images: {} image baseline{} in {}",
        found.len(),
        if found.len() == 1 { "" } else { "s" },
        dir.display()
    ));
    Ok(0)
}
