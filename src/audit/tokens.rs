//! The loader's dynamic string tokens (`$ORIGIN`, `$LIB`, `$PLATFORM`, also
//! in `${...}` form) and the places no library should come from.

use std::path::Path;

use crate::rootfs::{normalize, Root};

/// Directories anyone can write to, or that belong to a user: a library
/// there is never trustworthy.
pub const TMP_LIKE: &[&str] = &[
    "/tmp",
    "/var/tmp",
    "/dev/shm",
    "/run/shm",
    "/run/user",
    "/home",
];

/// True when an absolute path lies in one of [`TMP_LIKE`] (lexically,
/// after `.` and `..`).
pub fn is_tmp_like(p: &[u8]) -> bool {
    if !p.starts_with(b"/") {
        return false;
    }
    let n = normalize(&super::path(p));
    TMP_LIKE.iter().any(|t| n.starts_with(t))
}

/// What `$LIB` and `$PLATFORM` expand to for one root.
#[derive(Clone, Debug)]
pub struct Expansion {
    pub lib: String,
    pub platform: String,
}

impl Expansion {
    /// Guesses the loader's values from the root's layout: Debian's
    /// multiarch `lib/<triplet>` when present, else `lib64` or `lib`; the
    /// platform of the machine libwarden runs on.
    pub fn for_root(root: &Root) -> Expansion {
        let arch = std::env::consts::ARCH;
        let triplet = format!("lib/{arch}-linux-gnu");
        let exists = |p: &str| {
            root.resolve(&Path::new("/").join(p))
                .is_ok_and(|q| root.lstat(&q).is_ok_and(|m| m.is_dir()))
        };
        let lib = if exists(&triplet) {
            triplet
        } else if exists("lib64") {
            "lib64".to_string()
        } else {
            "lib".to_string()
        };
        let platform = match arch {
            "x86" => "i686",
            other => other,
        }
        .to_string();
        Expansion { lib, platform }
    }
}

/// The result of expanding one string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expanded {
    pub text: Vec<u8>,
    /// `$ORIGIN` appeared.
    pub used_origin: bool,
    /// Some token appeared.
    pub used_token: bool,
}

/// Expands the tokens in `s`. `origin` is the directory of the object (for
/// RPATH); `None` leaves `$ORIGIN` as written.
pub fn expand(s: &[u8], origin: Option<&[u8]>, ex: &Expansion) -> Expanded {
    let mut out = Vec::with_capacity(s.len());
    let mut used_origin = false;
    let mut used_token = false;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'$' {
            if let Some((name, len)) = token_at(&s[i + 1..]) {
                let val: Option<&[u8]> = match name {
                    "ORIGIN" => {
                        used_origin = true;
                        origin
                    }
                    "LIB" => Some(ex.lib.as_bytes()),
                    _ => Some(ex.platform.as_bytes()),
                };
                used_token = true;
                match val {
                    Some(v) => out.extend_from_slice(v),
                    None => out.extend_from_slice(&s[i..i + 1 + len]),
                }
                i += 1 + len;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    Expanded {
        text: out,
        used_origin,
        used_token,
    }
}

/// A token right after a `$`: its name and the bytes it spans.
fn token_at(s: &[u8]) -> Option<(&'static str, usize)> {
    for name in ["ORIGIN", "PLATFORM", "LIB"] {
        let n = name.as_bytes();
        if s.starts_with(n) {
            let next = s.get(n.len());
            if !next.is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
                return Some((name, n.len()));
            }
        }
        if s.first() == Some(&b'{')
            && s.get(1..1 + n.len()) == Some(n)
            && s.get(1 + n.len()) == Some(&b'}')
        {
            return Some((name, n.len() + 2));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex() -> Expansion {
        Expansion {
            lib: "lib/x86_64-linux-gnu".into(),
            platform: "x86_64".into(),
        }
    }

    #[test]
    fn tokens_expand_in_both_forms() {
        let e = expand(
            b"/usr/$LIB/${PLATFORM}/x$ORIGINAL:$ORIGIN/..",
            Some(b"/opt/a"),
            &ex(),
        );
        assert_eq!(
            String::from_utf8(e.text).unwrap(),
            "/usr/lib/x86_64-linux-gnu/x86_64/x$ORIGINAL:/opt/a/.."
        );
        assert!(e.used_origin && e.used_token);
        let e = expand(b"${ORIGIN}/lib", None, &ex());
        assert_eq!(e.text, b"${ORIGIN}/lib");
        assert!(e.used_origin);
        assert!(!expand(b"/usr/lib", None, &ex()).used_token);
    }

    #[test]
    fn tmp_like_is_lexical() {
        assert!(is_tmp_like(b"/tmp"));
        assert!(is_tmp_like(b"/usr/../dev/shm/x"));
        assert!(!is_tmp_like(b"/tmpfoo"));
        assert!(!is_tmp_like(b"tmp"));
        assert!(is_tmp_like(b"/home/u/lib"));
    }

    proptest::proptest! {
        #[test]
        fn expand_never_panics(s: Vec<u8>, o: Option<Vec<u8>>) {
            let _ = expand(&s, o.as_deref(), &ex());
            let _ = is_tmp_like(&s);
        }
    }
}
