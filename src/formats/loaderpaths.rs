//! The absolute paths a glibc loader holds as C strings, and which of them
//! a stock loader has. A loader patched to read its preload list from
//! another file (bdvl rewrites the `/etc/ld.so.preload` string in place)
//! holds one path a stock loader does not: the new list. The scan is fed
//! the loader's bytes in chunks (the hashing pass), keeps at most
//! [`MAX_PATHS`] paths of at most [`MAX_PATH`] bytes, and never panics.

/// At most this many unexpected paths are kept.
pub const MAX_PATHS: usize = 16;
/// A path longer than this is not kept (a preload list path in place of
/// `/etc/ld.so.preload` is 18 bytes or a few more).
pub const MAX_PATH: usize = 255;

/// A streaming scan for NUL-delimited strings that start with `/` and hold
/// only printable, non-blank ASCII.
#[derive(Debug)]
pub struct PathScan {
    /// The string being read, when it began right after a NUL (or at the
    /// start) with `/`.
    cur: Vec<u8>,
    /// Inside a run that cannot be a path (too long, or not after a NUL).
    skip: bool,
    prev_nul: bool,
    pub paths: Vec<Vec<u8>>,
}

impl Default for PathScan {
    fn default() -> Self {
        PathScan {
            cur: Vec::new(),
            skip: false,
            prev_nul: true,
            paths: Vec::new(),
        }
    }
}

impl PathScan {
    pub fn feed(&mut self, data: &[u8]) {
        for &b in data {
            if b == 0 {
                if !self.skip && self.cur.len() > 1 {
                    self.keep();
                }
                self.cur.clear();
                self.skip = false;
                self.prev_nul = true;
                continue;
            }
            let printable = (0x21..0x7f).contains(&b);
            if !printable {
                self.cur.clear();
                self.skip = true;
                self.prev_nul = false;
                continue;
            }
            if self.skip {
                continue;
            }
            if self.cur.is_empty() && !(self.prev_nul && b == b'/') {
                self.skip = true;
                self.prev_nul = false;
                continue;
            }
            self.prev_nul = false;
            if self.cur.len() == MAX_PATH {
                self.cur.clear();
                self.skip = true;
                continue;
            }
            self.cur.push(b);
        }
    }

    fn keep(&mut self) {
        if self.paths.len() < MAX_PATHS && !is_stock(&self.cur) && !self.paths.contains(&self.cur) {
            self.paths.push(self.cur.clone());
        }
    }
}

/// Paths every glibc loader holds (2.31 to 2.40, every architecture's
/// library dirs): the cache, the preload list, debugging knobs, `/proc`,
/// `/sys` and `/dev` files it reads.
fn is_stock(p: &[u8]) -> bool {
    const EXACT: &[&[u8]] = &[
        b"/etc/ld.so.preload",
        b"/etc/ld.so.cache",
        b"/etc/ld.so.nohwcap",
        b"/etc/suid-debug",
        b"/etc",
        b"/usr",
        b"/var/tmp",
        b"/var/profile",
        b"/dev/full",
        b"/dev/null",
        b"/dev/zero",
        b"/dev/tty",
        b"/dev/log",
    ];
    if EXACT.contains(&p) || p.starts_with(b"/proc/") || p.starts_with(b"/sys/") {
        return true;
    }
    // Library dirs (`/lib/`, `/usr/lib/x86_64-linux-gnu/`, `/lib64/tls/`,
    // `/usr/lib/glibc-hwcaps/`) and the loader's own path.
    let lib = [b"/lib".as_slice(), b"/usr/lib"]
        .iter()
        .any(|pre| p.starts_with(pre));
    lib && (p.ends_with(b"/") || is_loader_path(p))
}

/// `/lib64/ld-linux-x86-64.so.2`, `/lib/ld-linux-aarch64.so.1`...
fn is_loader_path(p: &[u8]) -> bool {
    let name = p.rsplit(|&b| b == b'/').next().unwrap_or(p);
    super::elf::is_canonical_loader_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(parts: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = PathScan::default();
        for p in parts {
            s.feed(p);
        }
        s.paths
    }

    #[test]
    fn keeps_only_unexpected_nul_delimited_paths() {
        let data: &[u8] = b"/lib/x86_64-linux-gnu/\0/etc/ld.so.cache\0\x01/no\0/var/tmp/.hidden.x\0abc/not\0/a b\0/lib64/ld-linux-x86-64.so.2\0/proc/self/exe\0/dev/shm/x\0";
        assert_eq!(
            scan(&[data]),
            vec![b"/var/tmp/.hidden.x".to_vec(), b"/dev/shm/x".to_vec()]
        );
        // The same across every split.
        for i in 0..data.len() {
            assert_eq!(scan(&[&data[..i], &data[i..]]).len(), 2, "split at {i}");
        }
        // A path at the very start counts; `/` alone does not.
        assert_eq!(scan(&[b"/x/y\0/\0"]), vec![b"/x/y".to_vec()]);
        // Too long: dropped, and what follows it still seen.
        let mut long = vec![b'/'; MAX_PATH + 1];
        long.extend_from_slice(b"\0/ok/p\0");
        assert_eq!(scan(&[&long]), vec![b"/ok/p".to_vec()]);
    }

    #[test]
    fn bounded() {
        let mut data = Vec::new();
        for i in 0..100 {
            data.extend_from_slice(format!("/p/{i}\0").as_bytes());
        }
        assert_eq!(scan(&[&data]).len(), MAX_PATHS);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data: Vec<u8>, cut: usize) {
            let c = cut % (data.len() + 1);
            for p in scan(&[&data[..c], &data[c..]]) {
                assert!(p.len() <= MAX_PATH && p.starts_with(b"/"));
            }
        }
    }
}
