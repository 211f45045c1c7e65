//! Findings to the Windows Event Log (the Application log, source
//! `libwarden`): the event type follows the severity, the one insertion
//! string is the finding's text line, and the event's binary data is its
//! JSON object, so a collector reading the log gets every field.
//!
//! The source is registered under
//! `HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\libwarden`
//! by `service install` and removed by `service uninstall`. No message
//! table is compiled into the executable: the Event Viewer shows the text
//! as the event's only string after its note that the description is
//! missing, which collectors (wevtutil, Get-WinEvent, Winlogbeat) read as
//! the event data.
//!
//! What is portable (the type mapping, the text) is here for every target
//! so that it is tested on each; the calls are Windows only.

use crate::finding::{Finding, Severity};

use super::sink::Context;

/// The event source's name, and the key name under the Application log.
pub const SOURCE: &str = "libwarden";

/// The Application log's key of [`SOURCE`], under `HKLM`.
pub const SOURCE_KEY: &str = r"SYSTEM\CurrentControlSet\Services\EventLog\Application\libwarden";

/// The type of an event, as `ReportEventW` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Error,
    Warning,
    Information,
}

impl EventType {
    /// `EVENTLOG_ERROR_TYPE` and the others (winnt.h).
    pub fn raw(self) -> u16 {
        match self {
            EventType::Error => 0x0001,
            EventType::Warning => 0x0002,
            EventType::Information => 0x0004,
        }
    }
}

/// Critical and high are errors, medium a warning, low and info
/// information: what an admin filtering the log by level expects.
pub fn event_type(s: Severity) -> EventType {
    match s {
        Severity::Critical | Severity::High => EventType::Error,
        Severity::Medium => EventType::Warning,
        Severity::Low | Severity::Info => EventType::Information,
    }
}

/// Event IDs: one per severity, so a log filter can select on the ID too
/// (the ID is also what a message table would be keyed on).
pub fn event_id(s: Severity) -> u32 {
    match s {
        Severity::Info => 1000,
        Severity::Low => 1001,
        Severity::Medium => 1002,
        Severity::High => 1003,
        Severity::Critical => 1004,
    }
}

/// The event's string: the human line of `check` (severity, kind, path,
/// detail), hostile bytes escaped, without a time (the log has its own).
pub fn text(f: &Finding) -> String {
    format!(
        "libwarden: {} {} {}  {}",
        f.severity.name(),
        f.kind.name(),
        crate::escape::for_terminal(&f.path),
        crate::escape::for_terminal(f.detail.as_bytes())
    )
}

/// The event's binary data: the finding's JSON object, as the watcher's
/// `--output` file has it.
pub fn data(f: &Finding, ctx: &Context) -> Vec<u8> {
    super::sink::to_json(f, ctx).to_string().into_bytes()
}

/// The event data of a one-shot command's finding (`check`, `audit`):
/// its JSON line, `extra` and `time`/`host` included.
pub fn data_with(f: &Finding, extra: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    let mut v = super::to_json_with(f, extra);
    if let serde_json::Value::Object(m) = &mut v {
        m.insert(
            "time".into(),
            crate::timefmt::rfc3339(std::time::SystemTime::now()).into(),
        );
        m.insert("host".into(), super::host().into());
    }
    v.to_string().into_bytes()
}

/// `ReportEventW` refuses strings over 31,839 characters and data over
/// 61,440 bytes; a finding never comes near, but a hostile detail must
/// not lose the event, so both are cut.
pub const MAX_TEXT: usize = 31_000;
pub const MAX_DATA: usize = 61_440;

pub fn bounded_text(s: &str) -> &str {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(windows)]
pub use windows::{register_source, unregister_source, EventLog};

#[cfg(windows)]
mod windows {
    use std::ffi::OsStr;
    use std::os::windows::ffi::OsStrExt;
    use std::path::Path;

    use windows_sys::Win32::Foundation::{HANDLE, WIN32_ERROR};
    use windows_sys::Win32::System::EventLog::{
        DeregisterEventSource, RegisterEventSourceW, ReportEventW,
    };
    use windows_sys::Win32::System::Registry::{
        RegCloseKey, RegCreateKeyExW, RegDeleteKeyW, RegSetValueExW, HKEY, HKEY_LOCAL_MACHINE,
        KEY_WRITE, REG_DWORD, REG_EXPAND_SZ, REG_OPTION_NON_VOLATILE,
    };

    use super::*;

    fn wide(s: &OsStr) -> Vec<u16> {
        s.encode_wide().chain(Some(0)).collect()
    }

    fn check(what: &str, rc: WIN32_ERROR) -> std::io::Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            let e = std::io::Error::from_raw_os_error(rc as i32);
            Err(std::io::Error::new(e.kind(), format!("{what}: {e}")))
        }
    }

    /// Registers the event source: `EventMessageFile` names the
    /// executable (no message table: see the module comment) and
    /// `TypesSupported` the three types used.
    pub fn register_source(exe: &Path) -> std::io::Result<()> {
        let key = wide(OsStr::new(SOURCE_KEY));
        let mut h: HKEY = std::ptr::null_mut();
        // SAFETY: valid NUL-terminated strings; h is written on success.
        let rc = unsafe {
            RegCreateKeyExW(
                HKEY_LOCAL_MACHINE,
                key.as_ptr(),
                0,
                std::ptr::null(),
                REG_OPTION_NON_VOLATILE,
                KEY_WRITE,
                std::ptr::null(),
                &mut h,
                std::ptr::null_mut(),
            )
        };
        check(&format!("create HKLM\\{SOURCE_KEY}"), rc)?;
        let file = wide(exe.as_os_str());
        let types: u32 = 0x0001 | 0x0002 | 0x0004;
        let name_file = wide(OsStr::new("EventMessageFile"));
        let name_types = wide(OsStr::new("TypesSupported"));
        // SAFETY: h is an open key; data pointers and sizes match.
        let (a, b) = unsafe {
            let a = RegSetValueExW(
                h,
                name_file.as_ptr(),
                0,
                REG_EXPAND_SZ,
                file.as_ptr().cast(),
                (file.len() * 2) as u32,
            );
            let b = RegSetValueExW(
                h,
                name_types.as_ptr(),
                0,
                REG_DWORD,
                (&types as *const u32).cast(),
                4,
            );
            RegCloseKey(h);
            (a, b)
        };
        check("set EventMessageFile", a).and_then(|_| check("set TypesSupported", b))
    }

    /// Removes the event source's key; absent already is fine.
    pub fn unregister_source() -> std::io::Result<()> {
        let key = wide(OsStr::new(SOURCE_KEY));
        // SAFETY: a valid NUL-terminated string.
        let rc = unsafe { RegDeleteKeyW(HKEY_LOCAL_MACHINE, key.as_ptr()) };
        const ERROR_FILE_NOT_FOUND: u32 = 2;
        if rc == ERROR_FILE_NOT_FOUND {
            return Ok(());
        }
        check(&format!("delete HKLM\\{SOURCE_KEY}"), rc)
    }

    /// An open event source.
    pub struct EventLog(HANDLE);

    // SAFETY: an event log handle may be used from any thread.
    unsafe impl Send for EventLog {}

    impl EventLog {
        pub fn open() -> std::io::Result<EventLog> {
            let name = wide(OsStr::new(SOURCE));
            // SAFETY: a valid NUL-terminated string; NULL is the local machine.
            let h = unsafe { RegisterEventSourceW(std::ptr::null(), name.as_ptr()) };
            if h.is_null() {
                return Err(std::io::Error::last_os_error());
            }
            Ok(EventLog(h))
        }

        /// One event with `data` (the finding's JSON object); false when
        /// the log refused it.
        pub fn report(&self, f: &Finding, data: &[u8]) -> bool {
            let text = wide(OsStr::new(bounded_text(&text(f))));
            let data = &data[..data.len().min(MAX_DATA)];
            let strings = [text.as_ptr()];
            // SAFETY: one valid string, data pointer and size match.
            let ok = unsafe {
                ReportEventW(
                    self.0,
                    event_type(f.severity).raw(),
                    0,
                    event_id(f.severity),
                    std::ptr::null_mut(),
                    1,
                    data.len() as u32,
                    strings.as_ptr(),
                    data.as_ptr().cast(),
                )
            };
            ok != 0
        }

        /// A plain message (the service's start, stop and errors).
        pub fn message(&self, kind: EventType, id: u32, msg: &str) -> bool {
            let text = wide(OsStr::new(bounded_text(msg)));
            let strings = [text.as_ptr()];
            // SAFETY: one valid string, no data.
            let ok = unsafe {
                ReportEventW(
                    self.0,
                    kind.raw(),
                    0,
                    id,
                    std::ptr::null_mut(),
                    1,
                    0,
                    strings.as_ptr(),
                    std::ptr::null(),
                )
            };
            ok != 0
        }
    }

    impl Drop for EventLog {
        fn drop(&mut self) {
            // SAFETY: the handle came from RegisterEventSourceW.
            unsafe { DeregisterEventSource(self.0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Kind;
    use crate::output::sink::Source;

    fn finding(sev: Severity, detail: &str) -> Finding {
        Finding {
            kind: Kind::Added,
            severity: sev,
            path: b"/windows/system32/evil\x1b.dll".to_vec(),
            detail: detail.into(),
            changes: Vec::new(),
            before: None,
            after: None,
        }
    }

    #[test]
    fn severity_maps_to_the_event_type() {
        assert_eq!(event_type(Severity::Critical), EventType::Error);
        assert_eq!(event_type(Severity::High), EventType::Error);
        assert_eq!(event_type(Severity::Medium), EventType::Warning);
        assert_eq!(event_type(Severity::Low), EventType::Information);
        assert_eq!(event_type(Severity::Info), EventType::Information);
        assert_eq!(EventType::Error.raw(), 1);
        assert_eq!(EventType::Warning.raw(), 2);
        assert_eq!(EventType::Information.raw(), 4);
    }

    #[test]
    fn text_is_escaped_and_data_is_the_json_object() {
        let f = finding(Severity::High, "new file");
        let t = text(&f);
        assert!(t.starts_with("libwarden: high added /windows/system32/evil"));
        assert!(!t.contains('\x1b'), "{t:?}");
        let ctx = Context {
            time: std::time::SystemTime::now(),
            source: Source::Event,
            gap: None,
            fields: None,
        };
        let v: serde_json::Value = serde_json::from_slice(&data(&f, &ctx)).unwrap();
        assert_eq!(v["kind"], "added");
        assert_eq!(v["severity"], "high");
        assert_eq!(v["source"], "event");
    }

    #[test]
    fn a_huge_detail_is_cut_on_a_char_boundary() {
        let s = "é".repeat(MAX_TEXT);
        let b = bounded_text(&s);
        assert!(b.len() <= MAX_TEXT && b.len() > MAX_TEXT - 4);
    }
}
