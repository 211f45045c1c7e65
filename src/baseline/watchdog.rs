//! Every call into sled runs here: on a thread of its own, with its
//! panics caught and a time limit. sled 0.34 can panic on damaged files and
//! can block forever in a flush (in `Drop`, too) after the disk filled up;
//! neither may reach the baseline or hang the run. A job that overruns is
//! abandoned: its thread keeps whatever it holds (an unfinished generation
//! that nothing points to) until the process exits.

use std::cell::Cell;
use std::sync::mpsc;
use std::sync::Once;
use std::time::Duration;

/// How a job ended.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    /// The job panicked; the panic's message, with any Debug-formatted
    /// `io::Error` in it rewritten as its Display form.
    Panicked(String),
    /// The job did not end within the limit.
    TimedOut,
}

/// Runs `job` on its own thread and waits at most `limit` for it.
pub fn run<T: Send + 'static>(
    limit: Duration,
    job: impl FnOnce() -> T + Send + 'static,
) -> Outcome<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("libwarden-store".into())
        .spawn(move || {
            let _ = tx.send(quiet_catch(job));
        });
    if let Err(e) = spawned {
        return Outcome::Panicked(format!("cannot start the store thread: {e}"));
    }
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => Outcome::Done(v),
        Ok(Err(msg)) => Outcome::Panicked(msg),
        Err(mpsc::RecvTimeoutError::Timeout) => Outcome::TimedOut,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Outcome::Panicked("the store thread ended without a result".into())
        }
    }
}

thread_local! {
    /// Set while this thread runs a job whose panics are reported as errors.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic into its message without printing the default
/// panic report. The hook is installed once and only silences threads
/// inside `quiet_catch` (swapping hooks per call would race between
/// threads and could leave a silent hook behind).
pub fn quiet_catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info)
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    r.map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into());
        tidy(&msg)
    })
}

/// Rewrites `Os { code: 28, kind: StorageFull, message: "No space left on
/// device" }` (what sled's `unwrap`s and `{:?}`s print) as `No space left on
/// device (os error 28)`, the way `io::Error` displays itself.
pub fn tidy(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(at) = rest.find("Os {") {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let Some(end) = tail.find('}') else {
            out.push_str(tail);
            return out;
        };
        let body = &tail[4..end];
        let code = field(body, "code:").unwrap_or("?");
        let text = field(body, "message:")
            .map(|m| m.trim_matches('"').to_string())
            .unwrap_or_else(|| "I/O error".into());
        out.push_str(&format!("{text} (os error {code})"));
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

fn field<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let at = body.find(name)? + name.len();
    let v = body[at..].trim_start();
    // A message is quoted and may hold commas; other fields end at one.
    let end = if let Some(quoted) = v.strip_prefix('"') {
        quoted.find('"').map_or(v.len(), |i| i + 2)
    } else {
        v.find(',').unwrap_or(v.len())
    };
    Some(v[..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_that_never_returns_times_out_instead_of_hanging() {
        let (_keep, rx) = mpsc::channel::<()>();
        // Blocks until the sender is dropped, which this test never does
        // before the limit: a writer stuck in sled's flush.
        let out = run(Duration::from_millis(200), move || {
            let _ = rx.recv();
            1
        });
        assert!(matches!(out, Outcome::TimedOut), "{out:?}");
    }

    #[test]
    fn a_job_that_returns_is_done_and_a_panic_is_an_error() {
        assert!(matches!(
            run(Duration::from_secs(30), || 7),
            Outcome::Done(7)
        ));
        // What sled's `sync_all().unwrap()` in its Drop does on a full disk.
        let full = || -> std::io::Result<u32> { Err(std::io::Error::from_raw_os_error(28)) };
        let out = run(Duration::from_secs(30), move || full().unwrap());
        match out {
            Outcome::Panicked(msg) => {
                assert!(!msg.contains("Os {"), "{msg}");
                assert!(msg.contains("(os error 28)"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn debug_io_errors_are_rewritten_as_display() {
        let e = std::io::Error::from_raw_os_error(28);
        let msg = format!("could not flush: {e:?}, giving up");
        let t = tidy(&msg);
        assert_eq!(t, format!("could not flush: {e}, giving up"), "from {msg}");
        assert_eq!(tidy("plain"), "plain");
    }
}
