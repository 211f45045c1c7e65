//! Authenticode verdicts, computed in one place and cached by content:
//! the provenance judge and the Windows audits (the registry's KnownDLLs,
//! side-loading, loaded modules) all ask here, so an image several of them
//! look at is verified once per run, and the roots and catalogs
//! (`authenticode_roots`, `CatRoot`) are read once, when first needed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::finding::Note;
use crate::formats::pe::{self, TrustStore, Verdict};
use crate::rootfs::Root;

/// Verdicts by (BLAKE3 of the image, trust fingerprint or zeros).
type Cache = HashMap<([u8; 32], [u8; 32]), Verdict>;

/// One run's verifier.
#[derive(Default)]
pub struct Authenticode {
    roots: Option<PathBuf>,
    trust: OnceLock<Option<TrustStore>>,
    cache: Mutex<Cache>,
    notes: Mutex<Vec<Note>>,
}

impl Authenticode {
    /// `roots`: the configured PEM bundle of trusted roots, if any.
    pub fn new(roots: Option<&Path>) -> Authenticode {
        Authenticode {
            roots: roots.map(Path::to_path_buf),
            ..Authenticode::default()
        }
    }

    /// Whether roots are configured (catalog signatures can be checked).
    pub fn has_roots(&self) -> bool {
        self.roots.is_some()
    }

    /// The trusted roots and the root's catalogs, read on first use.
    pub fn trust(&self, root: &Root) -> Option<&TrustStore> {
        self.trust
            .get_or_init(|| {
                let pem = self.roots.as_ref()?;
                let mut notes = Vec::new();
                let t = super::load_trust(root, pem, &mut notes);
                self.lock_notes().extend(notes);
                Some(t)
            })
            .as_ref()
    }

    /// The verdict on `image` under `trust` (`None`: embedded signatures
    /// only, whoever signed them).
    pub fn verify(&self, image: &[u8], trust: Option<&TrustStore>) -> Verdict {
        let key = (
            *blake3::hash(image).as_bytes(),
            trust.map_or([0; 32], |t| t.fingerprint_cached()),
        );
        if let Some(v) = self.lock_cache().get(&key) {
            return v.clone();
        }
        let v = pe::verify(image, trust);
        self.lock_cache().insert(key, v.clone());
        v
    }

    /// What reading the roots and catalogs had to say, once.
    pub fn take_notes(&self) -> Vec<Note> {
        std::mem::take(&mut *self.lock_notes())
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A verdict is plain data: a panic elsewhere cannot leave it torn.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_notes(&self) -> std::sync::MutexGuard<'_, Vec<Note>> {
        self.notes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_cached_by_content() {
        let a = Authenticode::new(None);
        assert_eq!(a.verify(b"not a pe", None), pe::verify(b"not a pe", None));
        assert_eq!(a.lock_cache().len(), 1);
        a.verify(b"not a pe", None);
        assert_eq!(a.lock_cache().len(), 1);
        a.verify(b"another", None);
        assert_eq!(a.lock_cache().len(), 2);
        assert!(a.trust(&Root::slash()).is_none());
    }
}
