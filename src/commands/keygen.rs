//! `keygen DIR`: a new Ed25519 key pair for signing baselines.

use std::path::Path;

use crate::error::Result;

pub fn run(dir: &Path) -> Result<i32> {
    let (secret, public) = crate::baseline::signing::keygen(dir)?;
    crate::output::messages::status(&format!(
        "libwarden keygen: wrote {} (secret, mode 0600: keep it off the monitored host) and {}",
        secret.display(),
        public.display()
    ));
    Ok(0)
}
