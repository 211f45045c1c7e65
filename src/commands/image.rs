//! `--image PATH` for `paths`, `audit`, `init` and `check`: the image's
//! own loader configuration; what in its layers hijacks the loader (a
//! preload list, `LD_*` in the image config's environment, libraries
//! deleted by a whiteout in an upper layer); and a baseline per image
//! (`--name NAME`, by default the image's digest) kept beside the host's,
//! which `check --image` diffs the image against with the same diff as a
//! host's `check`. Everything is read in place by [`crate::image`].

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::audit::preload;
use crate::baseline;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::escape;
use crate::finding::{self, Finding, Kind, Severity};
use crate::formats::elf::is_so_name;
use crate::image::{self, records, Image};
use crate::imagejudge;
use crate::output::{self, messages, Format};
use crate::pipeline::{Judges, Reference};

/// Environment variables of an image config that change what the loader
/// loads in every container started from it.
const LOADER_ENV: [&str; 3] = ["LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH"];

/// The image `--image` (and `--tag`) names: the path, and the tag given
/// either way (both, differing, is a usage error).
pub(super) fn image_ref(s: &Config, arg: &Path) -> Result<(std::path::PathBuf, Option<String>)> {
    let (path, tag) = image::split_ref(arg);
    match (tag, s.image_tag.clone()) {
        (Some(a), Some(b)) if a != b => Err(Error::Usage(format!(
            "--image {} names tag {a:?}, --tag says {b:?}",
            arg.display()
        ))),
        (a, b) => Ok((path, a.or(b))),
    }
}

pub(super) fn open(s: &Config, arg: &Path) -> Result<Image> {
    let (path, tag) = image_ref(s, arg)?;
    let path = path.as_path();
    let img = Image::open_tagged(path, tag.as_deref())
        .map_err(|e| Error::Usage(format!("image {}: {e}", path.display())))?;
    let blob: u64 = img.layers.iter().map(|l| l.blob_bytes).sum();
    let tar: u64 = img.layers.iter().map(|l| l.tar_bytes).sum();
    let kinds: Vec<&str> = img.layers.iter().map(|l| l.compression.name()).collect();
    messages::status(&format!(
        "image ({}) {}{}: {} layers ({}), {} of layer blobs, {} of tar streamed (nothing extracted), {} entries",
        img.format,
        img.id,
        if img.tags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", img.tags.join(", "))
        },
        img.layers.len(),
        kinds.join(", "),
        output::human_bytes(blob),
        output::human_bytes(tar),
        img.view.nodes.len()
    ));
    for w in &img.warnings {
        messages::warning(w);
    }
    Ok(img)
}

fn layer_of(img: &Image, path: &[u8]) -> Option<usize> {
    img.view.nodes.get(path).map(|n| n.layer + 1)
}

/// `paths --image`: the search dirs and loader files `init --image`
/// monitors ([`records::search_paths`]), with their origins and the layer
/// each file comes from, then the loader variables of the image config.
pub fn paths(s: &Config, path: &Path) -> Result<i32> {
    let img = open(s, path)?;
    let sp = records::search_paths(&img.view);
    let mut out = std::io::stdout().lock();
    let mut print = || -> std::io::Result<()> {
        super::paths::print(&mut out, &sp, s.format, &|p| layer_of(&img, p))?;
        for e in &img.env {
            let Some((k, v)) = e.split_once('=') else {
                continue;
            };
            if !LOADER_ENV.contains(&k) {
                continue;
            }
            match s.format {
                Format::Json | Format::Ecs => writeln!(
                    out,
                    "{}",
                    json!({"path": escape::for_json(v.as_bytes()), "kind": "env",
                           "origins": [format!("image config Env {k}")], "exists": true})
                )?,
                Format::Human => writeln!(
                    out,
                    "{:<40} image config Env {k}",
                    escape::for_terminal(v.as_bytes())
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
    sp.warnings.iter().for_each(|w| messages::warning(w));
    Ok(0)
}

/// The audit findings of an image.
pub fn findings(img: &Image) -> Vec<Finding> {
    let mut out = Vec::new();
    // The preload list: present at all is a finding, as on a host.
    if let Some(node) = img.view.get(preload::PRELOAD.as_bytes()) {
        let data = match &node.kind {
            image::Kind::File { data: Some(d), .. } => d.clone(),
            _ => Vec::new(),
        };
        let entries: Vec<String> = preload::entries(&data)
            .iter()
            .map(|e| {
                let state = match img.view.get(e) {
                    Some(n) => format!("layer {}", n.layer + 1),
                    None => "absent".into(),
                };
                format!("{} ({state})", escape::for_terminal(e))
            })
            .collect();
        out.push(Finding::audit(
            Kind::Preload,
            Severity::High,
            preload::PRELOAD.as_bytes().to_vec(),
            format!(
                "preload list in the image (layer {}): {}",
                node.layer + 1,
                if entries.is_empty() {
                    "empty".to_string()
                } else {
                    entries.join(", ")
                }
            ),
        ));
    }
    for e in &img.env {
        let Some((k, v)) = e.split_once('=') else {
            continue;
        };
        if LOADER_ENV.contains(&k) {
            out.push(Finding::audit(
                Kind::Environment,
                Severity::High,
                format!("image config Env {k}").into_bytes(),
                format!(
                    "{k}={} is set for every container of this image",
                    escape::for_terminal(v.as_bytes())
                ),
            ));
        }
    }
    // Libraries an upper layer deleted with a whiteout: the image no
    // longer ships what its lower layers (a base image) did.
    for r in &img.view.removed {
        let name = r.path.rsplit(|&b| b == b'/').next().unwrap_or_default();
        if !matches!(r.node.kind, image::Kind::File { .. }) || !is_so_name(name) {
            continue;
        }
        out.push(Finding::audit(
            Kind::Removed,
            Severity::Medium,
            r.path.clone(),
            format!(
                "library of layer {} deleted by a whiteout in layer {}",
                r.node.layer + 1,
                r.by_layer + 1
            ),
        ));
    }
    out.sort_by(|a, b| (&a.path, a.kind.name()).cmp(&(&b.path, b.kind.name())));
    out
}

/// The host's judges on the image ([`imagejudge`]), their findings with
/// the image's own ([`findings`]: the config's `Env`, whiteouts) added,
/// each said once.
pub(super) fn judged(
    s: &Config,
    img: &Image,
    name: &str,
    reference: Reference,
    judges: Judges,
) -> Result<(imagejudge::Judged, Vec<Finding>)> {
    let iplan = imagejudge::plan_of(&s.plan, img, &image_label(name));
    let j = imagejudge::judge(&iplan, img, reference, judges)
        .map_err(|e| Error::Usage(format!("image: {e}")))?;
    messages::notes(&j.verdict.notes);
    j.monitored
        .sp
        .warnings
        .iter()
        .for_each(|w| messages::warning(w));
    let mut f = j.verdict.findings.clone();
    // The preload audit reports the preload list as on a host (its detail
    // gets the image's: which layer put it there, and what it names); a
    // whiteout that removed a baselined library is the diff's `removed`.
    for x in findings(img) {
        match f.iter_mut().find(|y| y.path == x.path && y.kind == x.kind) {
            Some(y) if x.kind == Kind::Preload => {
                y.detail = format!("{}; {}", y.detail, x.detail);
            }
            Some(_) => {}
            None => f.push(x),
        }
    }
    f.sort_by(output::order);
    Ok((j, f))
}

/// What stands for the host directory of an image's root (and is its
/// baseline's root key).
pub(super) fn image_label(name: &str) -> String {
    String::from_utf8_lossy(&image_root(name)).into_owned()
}

/// `audit --image PATH`: the image's loader configuration, provenance and
/// the loader audit, with the judges of a host's `audit`.
pub fn audit(s: &Config, path: &Path) -> Result<i32> {
    let img = open(s, path)?;
    let name = img.id.clone();
    let (j, f) = judged(s, &img, &name, Reference::Nothing, Judges::AUDIT)?;
    let mut context = serde_json::Map::new();
    context.insert("image".into(), img.id.clone().into());
    context.insert("image_name".into(), name.into());
    emit_image(s, &img, &f, &context)?;
    messages::status(&format!(
        "libwarden audit --image: {} records; {}",
        j.monitored.records.len(),
        output::count_by_kind(&f)
    ));
    Ok(finding::exit_bits(&f))
}

/// The extra pairs of an image generation: what image it was built from.
pub(super) const IMAGE_PREFIX: &[u8] = b"i\0";

/// The root an image baseline is recorded for: its name, so the baseline
/// of one name never judges another by accident.
pub(super) fn image_root(name: &str) -> Vec<u8> {
    format!("image:{name}").into_bytes()
}

pub(super) fn image_pairs(img: &Image, name: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let layers: Vec<&str> = img.layers.iter().map(|l| l.digest.as_str()).collect();
    let mut v: Vec<(Vec<u8>, Vec<u8>)> = [
        ("format", img.format.to_string()),
        ("id", img.id.clone()),
        ("layers", layers.join("\n")),
        ("name", name.to_string()),
        ("tags", img.tags.join("\n")),
    ]
    .into_iter()
    .map(|(k, v)| ([IMAGE_PREFIX, k.as_bytes()].concat(), v.into_bytes()))
    .collect();
    v.sort();
    v
}

pub(super) fn pair<'a>(extra: &'a [(Vec<u8>, Vec<u8>)], key: &str) -> Option<&'a [u8]> {
    let k = [IMAGE_PREFIX, key.as_bytes()].concat();
    extra
        .iter()
        .find(|(x, _)| *x == k)
        .map(|(_, v)| v.as_slice())
}

/// The name and location of an image's baseline: `name`, or by default
/// the image id. A baseline older versions wrote under an OCI image's
/// manifest digest (`legacy`) is used when none exists under its id yet,
/// with a note saying how to move it.
pub(super) fn location(
    s: &Config,
    id: &str,
    legacy: Option<&str>,
    name: Option<&str>,
) -> Result<(String, baseline::Location)> {
    let at = |name: &str| {
        s.baseline.for_image(name).map_err(|e| {
            Error::Usage(format!(
                "--name {}: {e}",
                escape::for_terminal(name.as_bytes())
            ))
        })
    };
    if let Some(n) = name {
        return Ok((n.to_string(), at(n)?));
    }
    let loc = at(id)?;
    if let Some(old) = legacy.filter(|_| !loc.db.exists()) {
        let old_loc = at(old)?;
        if old_loc.db.exists() {
            messages::info(&format!(
                "image baseline found under the manifest digest {old} (as older versions \
                 named OCI images); the image id {id} names it from now on: `init --image \
                 ... --force` writes it there, or pass --name {old} to keep using this one"
            ));
            return Ok((old.to_string(), old_loc));
        }
    }
    Ok((id.to_string(), loc))
}

/// The layer (1-based) a finding's path comes from: the one that put it
/// there, or for a removed path the one whose whiteout removed it.
fn layer_of_finding(img: &Image, f: &Finding) -> Option<usize> {
    if f.kind == Kind::Removed {
        return img
            .view
            .removed
            .iter()
            .rev()
            .find(|r| r.path == f.path)
            .map(|r| r.by_layer + 1);
    }
    img.view.nodes.get(&f.path).map(|n| n.layer + 1)
}

pub(super) fn emit_image(
    s: &Config,
    img: &Image,
    findings: &[Finding],
    context: &serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    emit_image_with(s, img, findings, &[], context)
}

/// [`emit_image`] with acknowledged findings sorted in, marked as the
/// host's `check --all` marks them.
pub(super) fn emit_image_with(
    s: &Config,
    img: &Image,
    findings: &[Finding],
    acknowledged: &[(Finding, crate::acknowledge::Ack)],
    context: &serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let mut items: Vec<output::Marked> = findings
        .iter()
        .map(|f| {
            let mut m = output::Marked::plain(f);
            if let Some(l) = layer_of_finding(img, f) {
                m.fields.insert("layer".into(), l.into());
                m.tag = Some(format!("layer {l}"));
            }
            m
        })
        .collect();
    for (f, a) in acknowledged {
        let at = baseline::verify::utc(a.at);
        let mut m = output::Marked::plain(f);
        if let Some(l) = layer_of_finding(img, f) {
            m.fields.insert("layer".into(), l.into());
        }
        m.fields.insert("acknowledged".into(), true.into());
        m.fields
            .insert("acknowledged_by".into(), a.by.clone().into());
        m.fields.insert("acknowledged_at".into(), at.clone().into());
        m.tag = Some(format!("acknowledged by {} at {at}", a.by));
        items.push(m);
    }
    items.sort_by(|a, b| output::order(a.finding, b.finding));
    let mut out = std::io::stdout().lock();
    output::write_marked(&mut out, &items, s.format, context)
        .map_err(|e| Error::io("write", "stdout", e))
}

/// `init --image PATH [--name NAME]`: the image's records as the first
/// generation of its own baseline; its audit findings are shown (exit 0
/// once written, as `init`).
pub fn init(
    s: &Config,
    path: &Path,
    name: Option<&str>,
    force: bool,
    sign_with: Option<&Path>,
) -> Result<i32> {
    let key = sign_with.map(baseline::signing::load_secret).transpose()?;
    let img = open(s, path)?;
    let (name, loc) = location(s, &img.id, None, name)?;
    let store = baseline::create(&loc, force)?;
    let (j, f) = judged(s, &img, &name, Reference::Nothing, Judges::STANDING)?;
    let m = &j.monitored;
    // The provenance state, as a host's `init` keeps it, for the package
    // updates `check --image` explains.
    let mut extra = j
        .verdict
        .provenance
        .map(|o| {
            let mut state = o.state;
            let iplan = imagejudge::plan_of(&s.plan, &img, &image_label(&name));
            state.owners = crate::pipeline::owners(&iplan, &m.records);
            state.to_pairs()
        })
        .unwrap_or_default();
    extra.extend(image_pairs(&img, &name));
    extra.sort();
    let meta = baseline::commit(
        &loc,
        store,
        &m.records,
        &extra,
        &image_root(&name),
        key.as_ref(),
    )?;
    let mut context = serde_json::Map::new();
    context.insert("image".into(), img.id.clone().into());
    context.insert("image_name".into(), name.clone().into());
    emit_image(s, &img, &f, &context)?;
    messages::status(&format!(
        "libwarden init --image: {} records of {} search dirs; {} standing; image baseline {} \
         {} written to {}",
        m.records.len(),
        m.sp.walk_roots().count(),
        output::count_by_kind(&f),
        escape::for_terminal(name.as_bytes()),
        baseline::verify::describe(&meta),
        loc.db.display()
    ));
    Ok(0)
}

/// `check --image PATH [--name NAME]`: the image against the baseline of
/// NAME (by default its own digest), with the diff of a host's `check`,
/// plus its audit findings; exit bits as `check`.
pub fn check(s: &Config, path: &Path, name: Option<&str>, all: bool) -> Result<i32> {
    let img = open(s, path)?;
    let (name, loc) = location(s, &img.id, img.manifest_digest.as_deref(), name)?;
    let (base, notes) = baseline::load(&loc, &image_root(&name))?;
    messages::notes(&notes);
    // The judges of a host's `check`: the diff against the image's
    // baseline, provenance, the audit.
    let (j, f) = judged(s, &img, &name, Reference::Baseline(&base), Judges::ALL)?;
    let m = &j.monitored;
    // What `accept --image` acknowledged is silent (shown with --all).
    let (mut f, acked) = super::imageops::split_acknowledged(&base.extra, &m.records, f);
    f.sort_by(output::order);
    let mut context = serde_json::Map::new();
    context.insert("image".into(), img.id.clone().into());
    context.insert("image_name".into(), name.clone().into());
    context.insert(
        "baseline".into(),
        json!({
            "generation": base.meta.generation,
            "written": baseline::verify::utc(base.meta.written),
            "signed": base.meta.signature.is_some(),
            "image": pair(&base.extra, "id").map(|v| String::from_utf8_lossy(v).into_owned()),
        }),
    );
    let shown: &[(Finding, crate::acknowledge::Ack)] = if all { &acked } else { &[] };
    emit_image_with(s, &img, &f, shown, &context)?;
    messages::status(&format!(
        "libwarden check --image: {} records; {}; against image baseline {} {}{}",
        m.records.len(),
        output::count_by_kind(&f),
        escape::for_terminal(name.as_bytes()),
        base.describe(),
        super::acknowledged_tail(acked.len(), all)
    ));
    Ok(finding::exit_bits(&f))
}
