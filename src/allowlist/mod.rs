//! Allowlists for the operating system's own controls, from a baseline:
//! a fapolicyd trust file ([`fapolicyd`]), auditd watch rules
//! ([`auditd`]), AppLocker DLL rules ([`applocker`]). Each is rendered
//! from the records (and the search paths), never from the live tree
//! alone: a digest is read from a file only to give another tool its
//! algorithm, and only for a file whose BLAKE3 still matches the baseline
//! ([`digest`]), so an export cannot launder a library changed since.

pub mod applocker;
pub mod auditd;
pub mod digest;
pub mod fapolicyd;

/// The rendered text, how many entries it holds, and what was left out.
#[derive(Debug, Default)]
pub struct Rendered {
    pub text: String,
    pub entries: usize,
    /// One line per record left out, with why.
    pub skipped: Vec<String>,
}
