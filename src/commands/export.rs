//! `export`: the baseline as a portable, sorted (optionally signed) text
//! manifest for `check --against` on other hosts.

use std::io::Write;
use std::path::Path;

use crate::baseline::manifest;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::output::messages;

pub fn run(s: &Config, sign_with: Option<&Path>, output: Option<&Path>) -> Result<i32> {
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
    match output {
        Some(p) => std::fs::write(p, text).map_err(|e| Error::io("write manifest", p, e))?,
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
