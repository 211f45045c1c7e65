//! `watch` as a Windows service: registration with the Service Control
//! Manager (`install`, `uninstall`) and the entry point the SCM starts
//! (`dispatch`), through the `windows-service` crate. Windows only; the
//! command line the service runs is built by `commands::service`, which
//! also hands in the body (the watcher), so this module knows nothing of
//! the commands above it.
//!
//! Status as the SCM expects it: StartPending while the baseline is
//! loaded, Running once the watcher is about to start, StopPending on
//! Stop or Shutdown, Stopped with the watcher's exit code. Stop and
//! Shutdown become the `Ctl::Term` message `watch` already ends on (as
//! for SIGTERM); if the watcher has not ended within [`STOP_BACKSTOP`]
//! (deep in a rescan), Stopped is reported and the process ends.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use crate::error::{Error, Result};
use crate::output::eventlog::{self, EventLog, EventType};
use crate::watch::signals::Ctl;

/// The service's name (`sc query libwarden`).
pub const NAME: &str = "libwarden";
const DISPLAY: &str = "libwarden file integrity monitor";
const DESCRIPTION: &str =
    "Watches the places DLLs are loaded from (System32, the search paths) against the libwarden baseline; findings go to the Application event log.";
const TYPE: ServiceType = ServiceType::OWN_PROCESS;
/// How long the watcher gets to end after Stop before the process ends.
pub const STOP_BACKSTOP: Duration = Duration::from_secs(5);
/// What the SCM is told to wait for between StartPending and Running: a
/// baseline of a large System32 takes seconds to load.
const START_HINT: Duration = Duration::from_secs(120);

/// Event IDs of the service's own messages (findings use 1000-1004).
const ID_STARTED: u32 = 100;
const ID_STOPPED: u32 = 101;
const ID_FAILED: u32 = 102;

fn scm_error(what: &str, e: windows_service::Error) -> Error {
    const ERROR_ACCESS_DENIED: i32 = 5;
    const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
    const ERROR_SERVICE_EXISTS: i32 = 1073;
    let os = match &e {
        windows_service::Error::Winapi(io) => io.raw_os_error(),
        _ => None,
    };
    match os {
        Some(ERROR_SERVICE_EXISTS) => Error::Usage(format!(
            "{what}: the service {NAME} is already installed (`libwarden service uninstall` first to change its options)"
        )),
        Some(ERROR_SERVICE_DOES_NOT_EXIST) => {
            Error::Usage(format!("{what}: the service {NAME} is not installed"))
        }
        Some(ERROR_ACCESS_DENIED) => Error::Usage(format!(
            "{what}: access denied (run as Administrator)"
        )),
        _ => {
            let detail = match &e {
                windows_service::Error::Winapi(io) => io.to_string(),
                other => format!("{other} ({other:?})"),
            };
            Error::Internal(format!("{what}: {detail}"))
        }
    }
}

/// Registers the service (automatic start, LocalSystem, restarted a
/// minute after a crash, twice a day at most) to run `exe` with `args`,
/// and the event source. Returns a warning when the restart policy could
/// not be set (the service is installed without it).
pub fn install(exe: &Path, args: Vec<OsString>) -> Result<Option<String>> {
    let scm = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(|e| scm_error("connect to the Service Control Manager", e))?;
    let info = ServiceInfo {
        name: NAME.into(),
        display_name: DISPLAY.into(),
        service_type: TYPE,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.to_path_buf(),
        launch_arguments: args,
        dependencies: vec![],
        // LocalSystem: the watcher reads System32 and HKLM, and the
        // baseline under %ProgramData% is written by an administrator.
        account_name: None,
        account_password: None,
    };
    let svc = scm
        .create_service(&info, ServiceAccess::CHANGE_CONFIG | ServiceAccess::START)
        .map_err(|e| scm_error("create the service", e))?;
    // A description is a nicety: Wine's SCM, for one, may refuse it.
    let _ = svc.set_description(DESCRIPTION);
    // Only a crash (the process gone without reporting Stopped) restarts
    // it: a clean stop with an error code (no baseline) does not loop.
    let restart = ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(60),
    };
    let warning = svc
        .update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![
                restart.clone(),
                restart,
                ServiceAction {
                    action_type: ServiceActionType::None,
                    delay: Duration::ZERO,
                },
            ]),
        })
        .err()
        .map(|e| format!("the restart-on-crash policy was not set: {e}"));
    eventlog::register_source(exe)
        .map_err(|e| Error::Internal(format!("register the event source: {e}")))?;
    Ok(warning)
}

/// Stops the service if it runs, deletes it, and removes the event source.
pub fn uninstall() -> Result<()> {
    let scm = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(|e| scm_error("connect to the Service Control Manager", e))?;
    let svc = scm
        .open_service(
            NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .map_err(|e| scm_error("open the service", e))?;
    if svc
        .query_status()
        .is_ok_and(|s| s.current_state != ServiceState::Stopped)
    {
        let _ = svc.stop();
    }
    svc.delete()
        .map_err(|e| scm_error("delete the service", e))?;
    eventlog::unregister_source()
        .map_err(|e| Error::Internal(format!("remove the event source: {e}")))?;
    Ok(())
}

/// The service's work: given the stop messages and a callback to say it
/// is running, returns an exit code.
pub type Body = fn(ctl: Receiver<Ctl>, running: &dyn Fn()) -> Result<i32>;

static BODY: Mutex<Option<Body>> = Mutex::new(None);
static STATUS: Mutex<Option<windows_service::service_control_handler::ServiceStatusHandle>> =
    Mutex::new(None);
/// The watcher's exit code, for the process's own.
static CODE: Mutex<i32> = Mutex::new(0);

/// Connects to the SCM and runs `body` as the service until it stops;
/// returns its exit code. Fails at once when not started by the SCM.
pub fn dispatch(body: Body) -> Result<i32> {
    if let Ok(mut b) = BODY.lock() {
        *b = Some(body);
    }
    service_dispatcher::start(NAME, ffi_service_main).map_err(|e| {
        Error::Usage(format!(
            "service run is what the Service Control Manager starts ({e}); in a console use `libwarden watch`"
        ))
    })?;
    Ok(CODE.lock().map_or(0, |c| *c))
}

define_windows_service!(ffi_service_main, service_main);

fn set(state: ServiceState, accept: ServiceControlAccept, exit: ServiceExitCode, hint: Duration) {
    let status = ServiceStatus {
        service_type: TYPE,
        current_state: state,
        controls_accepted: accept,
        exit_code: exit,
        checkpoint: 0,
        wait_hint: hint,
        process_id: None,
    };
    if let Ok(h) = STATUS.lock() {
        if let Some(h) = h.as_ref() {
            let _ = h.set_service_status(status);
        }
    }
}

fn stopped(code: i32) {
    let exit = if code == 0 {
        ServiceExitCode::NO_ERROR
    } else {
        ServiceExitCode::ServiceSpecific(code as u32)
    };
    set(
        ServiceState::Stopped,
        ServiceControlAccept::empty(),
        exit,
        Duration::ZERO,
    );
}

fn service_main(_args: Vec<OsString>) {
    let log = EventLog::open().ok();
    let say = |kind: EventType, id: u32, msg: &str| {
        if let Some(l) = &log {
            l.message(kind, id, msg);
        }
    };
    let (tx, rx): (Sender<Ctl>, Receiver<Ctl>) = crossbeam_channel::unbounded();
    let handler = move |c: ServiceControl| match c {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            set(
                ServiceState::StopPending,
                ServiceControlAccept::empty(),
                ServiceExitCode::NO_ERROR,
                STOP_BACKSTOP,
            );
            let _ = tx.send(Ctl::Term);
            std::thread::spawn(|| {
                std::thread::sleep(STOP_BACKSTOP);
                stopped(0);
                std::process::exit(0);
            });
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let handle = match service_control_handler::register(NAME, handler) {
        Ok(h) => h,
        Err(e) => {
            say(
                EventType::Error,
                ID_FAILED,
                &format!(
                    "libwarden service: cannot register with the Service Control Manager: {e}"
                ),
            );
            return;
        }
    };
    if let Ok(mut s) = STATUS.lock() {
        *s = Some(handle);
    }
    set(
        ServiceState::StartPending,
        ServiceControlAccept::empty(),
        ServiceExitCode::NO_ERROR,
        START_HINT,
    );
    let Some(body) = BODY.lock().ok().and_then(|b| *b) else {
        stopped(crate::error::code::INTERNAL);
        return;
    };
    let running = || {
        set(
            ServiceState::Running,
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
            ServiceExitCode::NO_ERROR,
            Duration::ZERO,
        );
        say(
            EventType::Information,
            ID_STARTED,
            "libwarden service: watching",
        );
    };
    let code = match body(rx, &running) {
        Ok(code) => {
            say(
                EventType::Information,
                ID_STOPPED,
                &format!("libwarden service: stopped (exit {code})"),
            );
            code
        }
        Err(e) => {
            let code = e.exit_code();
            say(
                EventType::Error,
                ID_FAILED,
                &format!("libwarden service: error: {e} (exit {code})"),
            );
            code
        }
    };
    if let Ok(mut c) = CODE.lock() {
        *c = code;
    }
    stopped(code);
}
