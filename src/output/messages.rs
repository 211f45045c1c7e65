//! The one door to the terminal for everything that is not a finding:
//! notes, warnings, status lines and errors on stderr. It knows `-q`
//! ([`set_quiet`]): notes, warnings and status lines are dropped, errors
//! never are. Every piece of text that came from a scanned tree is escaped
//! before it reaches the terminal. Under systemd each line carries the
//! journal priority of what it says ([`journal`]).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use super::journal::{self, Stream};
use crate::escape;
use crate::finding::Note;
use crate::scan::Warning;

static QUIET: AtomicBool = AtomicBool::new(false);

/// `-q`: from now on only errors reach stderr.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

fn line(level: u8, text: &str) {
    let text = journal::prefixed(Stream::Stderr, level, text);
    // A closed stderr is not worth dying for.
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// The priority of a line composed by its caller: what it says it is.
fn level_of(text: &str) -> u8 {
    if text.contains(": error: ") {
        journal::ERR
    } else if text.contains(": warning: ") {
        journal::WARNING
    } else if text.contains(": note: ") {
        journal::NOTICE
    } else {
        journal::INFO
    }
}

/// A status line, as composed by the caller (unless quiet).
pub fn status(text: &str) {
    if !quiet() {
        line(level_of(text), text);
    }
}

/// An error line, as composed by the caller; printed even when quiet.
pub fn error(text: &str) {
    line(journal::ERR, text);
}

/// A warning that `-q` does not silence (an output of `watch` failing),
/// as composed by the caller.
pub fn loud_warning(text: &str) {
    line(journal::WARNING, text);
}

/// `libwarden: warning: TEXT` (escaped), unless quiet.
pub fn warning(text: &str) {
    status(&format!(
        "libwarden: warning: {}",
        escape::for_terminal(text.as_bytes())
    ));
}

/// `libwarden: note: TEXT` (escaped), unless quiet.
pub fn info(text: &str) {
    status(&format!(
        "libwarden: note: {}",
        escape::for_terminal(text.as_bytes())
    ));
}

/// One judge's note.
pub fn note(n: &Note) {
    match n {
        Note::Info(t) => info(t),
        Note::Warning(t) => warning(t),
        Note::Status(t) => status(&format!(
            "libwarden: {}",
            escape::for_terminal(t.as_bytes())
        )),
    }
}

pub fn notes(ns: &[Note]) {
    ns.iter().for_each(note);
}

/// Per-path warnings of a scan: `libwarden: warning: PATH: MESSAGE`.
pub fn path_warnings(warnings: &[Warning]) {
    if quiet() {
        return;
    }
    let mut err = std::io::stderr().lock();
    let prefix = if journal::connected(Stream::Stderr) {
        "<4>"
    } else {
        ""
    };
    for w in warnings {
        let _ = writeln!(
            err,
            "{prefix}libwarden: warning: {}: {}",
            escape::for_terminal(&w.path),
            escape::for_terminal(w.message.as_bytes())
        );
    }
}
