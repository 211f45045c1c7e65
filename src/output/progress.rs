//! A progress line while a scan reads the disk (`indicatif`): entries,
//! bytes read, rate, and an ETA when the baseline says how many entries to
//! expect. On a terminal only: never on a pipe or in a file, never with
//! `-q`, never when findings go to stdout as JSON, never to the journal.
//! It draws on stderr and is cleared when the scan ends, so what stays on
//! the screen is the same as without it.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::journal::{self, Stream};
use crate::scan::Progress;

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(120);

/// A running display; stopped and cleared on drop.
pub struct Display {
    pub counters: Arc<Progress>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Whether a progress display may be shown: `wanted` (not `-q`, findings
/// not JSON) and stderr a terminal that is not the journal.
pub fn allowed(wanted: bool) -> bool {
    wanted
        && !super::messages::quiet()
        && std::io::stderr().is_terminal()
        && !journal::connected(Stream::Stderr)
}

/// Starts a display for a scan of about `expected` entries (`0`: unknown,
/// no ETA), when [`allowed`].
pub fn start(wanted: bool, verb: &str, expected: u64) -> Option<Display> {
    if !allowed(wanted) {
        return None;
    }
    let counters = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let bar = if expected > 0 {
        let b = ProgressBar::with_draw_target(Some(expected), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template(
                "libwarden {prefix}: {bar:30} {pos}/{len} entries, {msg} [{elapsed}, ETA {eta}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template(
                "libwarden {prefix}: {spinner} {pos} entries, {msg} [{elapsed}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b
    };
    // Set without drawing (`set_prefix` draws): the first frame drawn is
    // a whole line. A scan shorter than the draw rate limit (20 a second)
    // showed only the frame `set_prefix` drew, its message still empty.
    let bar = bar
        .with_prefix(verb.to_string())
        .with_message(read_message(0, 0.001));
    let (c, s) = (counters.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name("progress".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            while !s.load(Ordering::Acquire) {
                let n = c.entries.load(Ordering::Relaxed);
                let bytes = c.bytes.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64().max(0.001);
                bar.set_position(n);
                bar.set_message(read_message(bytes, secs));
                bar.tick();
                std::thread::park_timeout(TICK);
            }
            bar.finish_and_clear();
        })
        .ok()?;
    Some(Display {
        counters,
        stop,
        thread: Some(thread),
    })
}

/// What the line says of the bytes: how many were read, and how fast.
fn read_message(bytes: u64, secs: f64) -> String {
    format!(
        "{} read, {}/s",
        super::human_bytes(bytes),
        super::human_bytes((bytes as f64 / secs) as u64)
    )
}

impl Drop for Display {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
