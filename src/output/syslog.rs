//! Syslog as RFC 5424 with the finding as structured data, over a Unix
//! datagram socket (`unix:/dev/log`), UDP (one message per datagram) or TCP
//! (octet-counting framing, RFC 6587). Facility `auth` (security); the
//! severity follows the finding's. The SD-ID `libwarden@32473` uses the
//! documentation enterprise number of RFC 5612.
//!
//! A message is `<PRI>1 TIMESTAMP HOST libwarden PID KIND [libwarden@32473
//! kind=".." severity=".." path=".." ...] severity kind path: detail`.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
#[cfg(unix)]
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::sink::{rfc3339, Context};
use crate::escape;
use crate::finding::{Finding, Severity};
use crate::output;

/// The SD-ID of a finding.
pub const SD_ID: &str = "libwarden@32473";
/// `auth`: security and authorization messages.
const FACILITY: u8 = 4;
const TIMEOUT: Duration = Duration::from_secs(2);

/// Where messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Udp(String),
    Tcp(String),
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if cfg!(not(unix)) {
                return Err(
                    "unix: sockets are not supported on Windows; use udp:// or tcp://".into(),
                );
            }
            if p.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/dev/log".into());
            }
            return Ok(Target::Unix(PathBuf::from(p)));
        }
        let (scheme, addr) = s
            .split_once("://")
            .ok_or("expected unix:PATH, udp://HOST:PORT or tcp://HOST:PORT")?;
        let addr = addr.trim_end_matches('/');
        if addr
            .rsplit_once(':')
            .is_none_or(|(_, p)| p.parse::<u16>().is_err())
        {
            return Err(format!("{addr:?} is not HOST:PORT"));
        }
        match scheme {
            "udp" => Ok(Target::Udp(addr.to_string())),
            "tcp" => Ok(Target::Tcp(addr.to_string())),
            _ => Err(format!("unknown scheme {scheme:?} (use unix, udp or tcp)")),
        }
    }
}

enum Conn {
    #[cfg(unix)]
    Unix(UnixDatagram),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

/// One syslog destination, connected lazily and again after an error.
pub struct Syslog {
    target: Target,
    conn: Option<Conn>,
    hostname: String,
    failing: bool,
}

impl Syslog {
    pub fn new(target: &str) -> Result<Syslog, String> {
        Ok(Syslog {
            target: Target::parse(target)?,
            conn: None,
            hostname: crate::sys::hostname(),
            failing: false,
        })
    }

    fn connect(&self) -> std::io::Result<Conn> {
        match &self.target {
            #[cfg(unix)]
            Target::Unix(p) => {
                let s = UnixDatagram::unbound()?;
                s.connect(p)?;
                Ok(Conn::Unix(s))
            }
            // Refused by Target::parse on Windows; never built there.
            #[cfg(not(unix))]
            Target::Unix(_) => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "unix sockets are not supported on Windows",
            )),
            Target::Udp(a) => {
                let addr = resolve(a)?;
                let local = if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let s = UdpSocket::bind(local)?;
                s.connect(addr)?;
                Ok(Conn::Udp(s))
            }
            Target::Tcp(a) => {
                let s = TcpStream::connect_timeout(&resolve(a)?, TIMEOUT)?;
                s.set_write_timeout(Some(TIMEOUT))?;
                s.set_nodelay(true)?;
                Ok(Conn::Tcp(s))
            }
        }
    }

    /// Sends one finding; on failure reconnects once, then gives up on this
    /// message and says so on stderr (once per failure streak).
    pub fn send(&mut self, f: &Finding, ctx: &Context) {
        let msg = format_5424(f, ctx, &self.hostname, std::process::id());
        let mut last = None;
        for _ in 0..2 {
            let conn = match self.conn.take() {
                Some(c) => c,
                None => match self.connect() {
                    Ok(c) => c,
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                },
            };
            let r = match &conn {
                #[cfg(unix)]
                Conn::Unix(s) => s.send(msg.as_bytes()).map(|_| ()),
                Conn::Udp(s) => s.send(msg.as_bytes()).map(|_| ()),
                Conn::Tcp(s) => {
                    let framed = format!("{} {msg}", msg.len());
                    let mut w: &TcpStream = s;
                    w.write_all(framed.as_bytes())
                }
            };
            match r {
                Ok(()) => {
                    self.conn = Some(conn);
                    self.failing = false;
                    return;
                }
                Err(e) => last = Some(e),
            }
        }
        if !self.failing {
            if let Some(e) = last {
                super::messages::loud_warning(&format!(
                    "libwarden watch: warning: syslog {:?}: {e}; findings still go to the other outputs",
                    self.target
                ));
            }
        }
        self.failing = true;
    }
}

fn resolve(a: &str) -> std::io::Result<std::net::SocketAddr> {
    a.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("{a}: no address"))
    })
}

/// The syslog severity of a finding's severity.
fn syslog_severity(s: Severity) -> u8 {
    match s {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
        Severity::Info => 6,
    }
}

/// One RFC 5424 message (without transport framing).
pub fn format_5424(f: &Finding, ctx: &Context, hostname: &str, pid: u32) -> String {
    let pri = FACILITY * 8 + syslog_severity(f.severity);
    let mut sd = format!("[{SD_ID}");
    let mut param = |name: &str, value: &str| {
        sd.push(' ');
        sd.push_str(name);
        sd.push_str("=\"");
        sd.push_str(&sd_escape(value));
        sd.push('"');
    };
    param("kind", f.kind.name());
    param("severity", f.severity.name());
    param("path", &escape::for_json(&f.path));
    if escape::needs_hex(&f.path) {
        param("path_hex", &escape::hex(&f.path));
    }
    param("detail", &f.detail);
    if !f.changes.is_empty() {
        param("changes", &f.changes.join(","));
    }
    param("source", ctx.source.name());
    if let Some((a, b)) = ctx.gap {
        param("gap_start", &rfc3339(a));
        param("gap_end", &rfc3339(b));
    }
    if let Some(extra) = &ctx.fields {
        for (k, val) in extra.iter() {
            let text = match val {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            param(&sd_name(k), &text);
        }
    }
    let v = output::to_json(f);
    for side in ["before", "after"] {
        if let Some(Value::Object(m)) = v.get(side) {
            for (k, val) in m {
                let text = match val {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => continue,
                };
                if k == "path" {
                    continue;
                }
                param(&format!("{side}_{}", sd_name(k)), &text);
            }
        }
    }
    sd.push(']');
    format!(
        "<{pri}>1 {} {} libwarden {pid} {} {sd} {} {} {}: {}",
        rfc3339(ctx.time),
        hostname,
        f.kind.name(),
        f.severity.name(),
        f.kind.name(),
        escape::for_terminal(&f.path),
        escape::for_terminal(f.detail.as_bytes())
    )
}

/// RFC 5424 section 6.3.3: `"`, `\` and `]` are escaped with a backslash.
pub fn sd_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A PARAM-NAME: printable ASCII but `=`, space, `]`, `"`; at most 32.
fn sd_name(k: &str) -> String {
    k.chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"'))
        .take(25)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Kind;
    use crate::output::sink::Source;
    use std::time::UNIX_EPOCH;

    #[test]
    fn targets_parse() {
        assert_eq!(
            Target::parse("unix:/dev/log"),
            Ok(Target::Unix("/dev/log".into()))
        );
        assert_eq!(
            Target::parse("udp://127.0.0.1:514"),
            Ok(Target::Udp("127.0.0.1:514".into()))
        );
        assert_eq!(
            Target::parse("tcp://[::1]:6514"),
            Ok(Target::Tcp("[::1]:6514".into()))
        );
        assert!(Target::parse("tcp://host").is_err());
        assert!(Target::parse("http://h:1").is_err());
        assert!(Target::parse("unix:").is_err());
    }

    #[test]
    fn message_escapes_structured_data() {
        let f = Finding {
            kind: Kind::Added,
            severity: Severity::Critical,
            path: b"/usr/lib/a\"b]c\\d\xff.so".to_vec(),
            detail: "new \"thing\"]".into(),
            changes: Vec::new(),
            before: None,
            after: None,
        };
        let ctx = Context {
            time: UNIX_EPOCH,
            source: Source::Event,
            gap: None,
            fields: None,
        };
        let m = format_5424(&f, &ctx, "host", 42);
        assert!(
            m.starts_with("<34>1 1970-01-01T00:00:00.000Z host libwarden 42 added [libwarden@32473 kind=\"added\""),
            "{m}"
        );
        assert!(m.contains(r#"path="/usr/lib/a\"b\]c\\d\\xff.so""#), "{m}");
        assert!(m.contains(r#"detail="new \"thing\"\]""#), "{m}");
        assert!(m.contains("path_hex=\""), "{m}");
    }
}
