//! Windows implementations of the Unix extension traits shared code uses.
//!
//! Paths are kept as their WTF-8 encoded bytes (`as_encoded_bytes`), which
//! is UTF-8 for every valid Windows name. Metadata Windows has no
//! equivalent for is fixed: owner and group 0, inode 0 and one link;
//! `ctime` is the last write time (so a file whose size and write time are
//! restored is not re-hashed from identity alone: record.rs refuses digest
//! reuse on Windows for that reason).

use std::ffi::OsStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// `ERROR_CANT_RESOLVE_FILENAME`: too many reparse points.
pub const ERROR_CANT_RESOLVE_FILENAME: i32 = 1921;
/// `FILE_FLAG_OPEN_REPARSE_POINT`: open the link itself, not its target.
const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;

#[link(name = "advapi32")]
extern "system" {
    /// `RtlGenRandom`, exported by name `SystemFunction036`.
    #[link_name = "SystemFunction036"]
    pub fn rtl_gen_random(buf: *mut u8, len: u32) -> u8;
}

/// Bytes of an `OsStr`, and back.
pub trait OsStrExt {
    fn as_bytes(&self) -> &[u8];
    fn from_bytes(b: &[u8]) -> &Self;
}

impl OsStrExt for OsStr {
    fn as_bytes(&self) -> &[u8] {
        self.as_encoded_bytes()
    }
    fn from_bytes(b: &[u8]) -> &OsStr {
        match std::str::from_utf8(b) {
            Ok(s) => OsStr::new(s),
            // Only bytes from `as_encoded_bytes` are not UTF-8; a baseline
            // written on Linux with such bytes names no Windows file.
            Err(_) => OsStr::new("\u{fffd}"),
        }
    }
}

fn secs(t: std::io::Result<SystemTime>) -> (i64, i64) {
    match t.ok().map(|t| t.duration_since(UNIX_EPOCH)) {
        Some(Ok(d)) => (d.as_secs() as i64, d.subsec_nanos() as i64),
        Some(Err(e)) => (-(e.duration().as_secs() as i64), 0),
        None => (0, 0),
    }
}

/// The `st_*` view of a Windows file.
pub trait MetadataExt {
    fn dev(&self) -> u64;
    fn ino(&self) -> u64;
    fn mode(&self) -> u32;
    fn nlink(&self) -> u64;
    fn uid(&self) -> u32;
    fn gid(&self) -> u32;
    fn size(&self) -> u64;
    fn mtime(&self) -> i64;
    fn mtime_nsec(&self) -> i64;
    fn ctime(&self) -> i64;
    fn ctime_nsec(&self) -> i64;
}

impl MetadataExt for std::fs::Metadata {
    fn dev(&self) -> u64 {
        0
    }
    fn ino(&self) -> u64 {
        0
    }
    /// Type bits from the file type; permission bits 0644/0755, or
    /// 0444/0555 for read-only files. ACLs are not read.
    fn mode(&self) -> u32 {
        let ft = self.file_type();
        let ro = self.permissions().readonly();
        if ft.is_symlink() {
            super::S_IFLNK | 0o777
        } else if ft.is_dir() {
            super::S_IFDIR | if ro { 0o555 } else { 0o755 }
        } else {
            super::S_IFREG | if ro { 0o444 } else { 0o644 }
        }
    }
    fn nlink(&self) -> u64 {
        1
    }
    fn uid(&self) -> u32 {
        0
    }
    fn gid(&self) -> u32 {
        0
    }
    fn size(&self) -> u64 {
        self.len()
    }
    fn mtime(&self) -> i64 {
        secs(self.modified()).0
    }
    fn mtime_nsec(&self) -> i64 {
        secs(self.modified()).1
    }
    fn ctime(&self) -> i64 {
        secs(self.modified()).0
    }
    fn ctime_nsec(&self) -> i64 {
        secs(self.modified()).1
    }
}

/// Unix file types Windows has no equivalent for.
pub trait FileTypeExt {
    fn is_fifo(&self) -> bool;
    fn is_socket(&self) -> bool;
    fn is_char_device(&self) -> bool;
    fn is_block_device(&self) -> bool;
}

impl FileTypeExt for std::fs::FileType {
    fn is_fifo(&self) -> bool {
        false
    }
    fn is_socket(&self) -> bool {
        false
    }
    fn is_char_device(&self) -> bool {
        false
    }
    fn is_block_device(&self) -> bool {
        false
    }
}

/// Mode bits from the read-only attribute.
pub trait PermissionsExt {
    fn mode(&self) -> u32;
}

impl PermissionsExt for std::fs::Permissions {
    fn mode(&self) -> u32 {
        if self.readonly() {
            0o444
        } else {
            0o644
        }
    }
}

/// Positioned reads.
pub trait FileExt {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl FileExt for std::fs::File {
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
        use std::os::windows::fs::FileExt as _;
        while !buf.is_empty() {
            match self.seek_read(buf, offset) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "failed to fill whole buffer",
                    ))
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl super::OpenOptionsNoFollow for std::fs::OpenOptions {
    fn no_follow(&mut self) -> &mut Self {
        use std::os::windows::fs::OpenOptionsExt;
        self.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
    }
    fn cloexec(&mut self) -> &mut Self {
        // Handles are not inherited unless asked for.
        self
    }
    fn create_mode(&mut self, _mode: u32) -> &mut Self {
        self
    }
}
