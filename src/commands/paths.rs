//! `paths`: every resolved search path and loader file, with its origin.

use std::io::Write;

use serde_json::json;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::escape;
use crate::output::messages;
use crate::output::Format;
use crate::searchpaths::SearchPaths;

pub fn run(s: &Config) -> Result<i32> {
    let (sp, _) = s.plan.resolve();
    let mut out = std::io::stdout().lock();
    let r = print(&mut out, &sp, s.format, &|_| None);
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("write", "stdout", e))
        }
        _ => {
            sp.warnings.iter().for_each(|w| messages::warning(w));
            Ok(0)
        }
    }
}

fn bytes(p: &std::path::Path) -> &[u8] {
    use crate::sys::OsStrExt;
    p.as_os_str().as_bytes()
}

/// Writes the dirs and files of `sp`; `layer` says which layer of an
/// image a file comes from (`None` on a host), shown when known.
pub(super) fn print(
    out: &mut dyn Write,
    sp: &SearchPaths,
    format: Format,
    layer: &dyn Fn(&[u8]) -> Option<usize>,
) -> std::io::Result<()> {
    for d in &sp.dirs {
        let origins: Vec<String> = d.origins.iter().map(|o| o.to_string()).collect();
        match format {
            Format::Json | Format::Ecs => {
                let v = json!({
                    "path": escape::for_json(bytes(&d.path)),
                    "kind": "dir",
                    "origins": origins,
                    "aliases": d.aliases.iter().map(|a| escape::for_json(bytes(a))).collect::<Vec<_>>(),
                    "recursive": d.recursive,
                    "exists": d.exists,
                    "covered_by": d.covered_by.as_ref().map(|c| escape::for_json(bytes(c))),
                });
                writeln!(out, "{v}")?;
            }
            Format::Human => {
                let mut notes = Vec::new();
                let other: Vec<String> = d
                    .aliases
                    .iter()
                    .filter(|a| **a != d.path)
                    .map(|a| escape::for_terminal(bytes(a)))
                    .collect();
                if !other.is_empty() {
                    notes.push(format!("as {}", other.join(", ")));
                }
                if !d.recursive {
                    notes.push("entries only".into());
                }
                if !d.exists {
                    notes.push("missing".into());
                }
                if let Some(c) = &d.covered_by {
                    notes.push(format!("within {}", escape::for_terminal(bytes(c))));
                }
                let notes = if notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", notes.join("; "))
                };
                writeln!(
                    out,
                    "{:<40} {}{}",
                    escape::for_terminal(bytes(&d.path)),
                    escape::for_terminal(origins.join(", ").as_bytes()),
                    notes
                )?;
            }
        }
    }
    for f in &sp.files {
        let layer = layer(bytes(&f.path));
        match format {
            Format::Json | Format::Ecs => {
                let mut v = json!({
                    "path": escape::for_json(bytes(&f.path)),
                    "kind": "file",
                    "origins": [f.origin.to_string()],
                    "exists": f.exists,
                });
                if let Some(l) = layer {
                    v["layer"] = l.into();
                }
                writeln!(out, "{v}")?;
            }
            Format::Human => writeln!(
                out,
                "{:<40} {}{}",
                escape::for_terminal(bytes(&f.path)),
                escape::for_terminal(f.origin.to_string().as_bytes()),
                match (f.exists, layer) {
                    (false, _) => " (absent)".to_string(),
                    (true, Some(l)) => format!(" (layer {l})"),
                    (true, None) => String::new(),
                }
            )?,
        }
    }
    out.flush()
}
