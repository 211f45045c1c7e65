//! `--image PATH` for `paths` and `audit`: the image's own loader
//! configuration, and what in its layers hijacks the loader (a preload
//! list, `LD_*` in the image config's environment, libraries deleted by a
//! whiteout in an upper layer), read in place by [`crate::image`].

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::audit::preload;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::escape;
use crate::finding::{self, Finding, Kind, Severity};
use crate::formats::elf::is_so_name;
use crate::formats::ldconf;
use crate::image::{self, Image};
use crate::output::{self, messages, Format};
use crate::searchpaths::TRUSTED_DIRS;

/// Environment variables of an image config that change what the loader
/// loads in every container started from it.
const LOADER_ENV: [&str; 3] = ["LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH"];

fn open(path: &Path) -> Result<Image> {
    let img =
        Image::open(path).map_err(|e| Error::Usage(format!("image {}: {e}", path.display())))?;
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

/// The search directories of the image: the trusted ones, then those its
/// `ld.so.conf` names, with where each comes from.
fn search_dirs(img: &Image) -> (Vec<(String, Vec<String>)>, ldconf::LdConf) {
    let conf = ldconf::parse(&img.view, Path::new("/etc/ld.so.conf"));
    let mut dirs: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |d: String, origin: String| match dirs.iter_mut().find(|(p, _)| *p == d) {
        Some((_, o)) => o.push(origin),
        None => dirs.push((d, vec![origin])),
    };
    for d in &conf.dirs {
        add(
            d.dir.display().to_string(),
            format!("{}:{}", d.file.display(), d.line),
        );
    }
    for d in TRUSTED_DIRS {
        add(d.to_string(), "trusted".into());
    }
    (dirs, conf)
}

fn layer_of(img: &Image, path: &str) -> Option<usize> {
    img.view.get(path.as_bytes()).map(|n| n.layer + 1)
}

pub fn paths(s: &Config, path: &Path) -> Result<i32> {
    let img = open(path)?;
    let (dirs, conf) = search_dirs(&img);
    let mut out = std::io::stdout().lock();
    let mut print = || -> std::io::Result<()> {
        for (d, origins) in &dirs {
            let exists = img
                .view
                .get(d.as_bytes())
                .is_some_and(|n| n.kind == image::Kind::Dir);
            match s.format {
                Format::Json | Format::Ecs => writeln!(
                    out,
                    "{}",
                    json!({"path": escape::for_json(d.as_bytes()), "kind": "dir",
                           "origins": origins, "exists": exists})
                )?,
                Format::Human => writeln!(
                    out,
                    "{:<40} {}{}",
                    escape::for_terminal(d.as_bytes()),
                    escape::for_terminal(origins.join(", ").as_bytes()),
                    if exists { "" } else { " (missing)" }
                )?,
            }
        }
        let mut files: Vec<(String, String)> = conf
            .files
            .iter()
            .map(|f| (f.display().to_string(), "ld.so.conf".to_string()))
            .collect();
        if !files.iter().any(|(f, _)| f == "/etc/ld.so.conf") {
            files.insert(0, ("/etc/ld.so.conf".into(), "ld.so.conf".into()));
        }
        files.push((preload::PRELOAD.into(), "preload".into()));
        for (f, origin) in &files {
            let layer = layer_of(&img, f);
            match s.format {
                Format::Json | Format::Ecs => writeln!(
                    out,
                    "{}",
                    json!({"path": escape::for_json(f.as_bytes()), "kind": "file",
                           "origins": [origin], "exists": layer.is_some(), "layer": layer})
                )?,
                Format::Human => writeln!(
                    out,
                    "{:<40} {}{}",
                    escape::for_terminal(f.as_bytes()),
                    origin,
                    match layer {
                        Some(l) => format!(" (layer {l})"),
                        None => " (absent)".into(),
                    }
                )?,
            }
        }
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
    conf.warnings.iter().for_each(|w| messages::warning(w));
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

pub fn audit(s: &Config, path: &Path) -> Result<i32> {
    let img = open(path)?;
    let f = findings(&img);
    super::emit(s, &f, &Default::default())?;
    messages::status(&format!(
        "libwarden audit --image: {}",
        output::count_by_kind(&f)
    ));
    Ok(finding::exit_bits(&f))
}
