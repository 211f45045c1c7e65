//! AppLocker DLL rules for a Windows image: an `AppLockerPolicy` with one
//! `Dll` rule collection of `FileHashRule`s, each the Authenticode SHA-256
//! of a baselined DLL (what AppLocker compares for a PE file), for
//! `Set-AppLockerPolicy -XmlPolicy` or the Group Policy import. The
//! collection is written `AuditOnly`: enforcing is the administrator's
//! decision, after the audit events look right.

use std::fmt::Write;

use super::{digest, Rendered};
use crate::record::{file_name, FileClass, FileType, Record};
use crate::rootfs::Root;

/// The DLL rules for the PE DLLs of `records`.
pub fn render(root: &Root, records: &[Record]) -> Rendered {
    let mut out = Rendered {
        text: "<AppLockerPolicy Version=\"1\">\n  \
               <RuleCollection Type=\"Dll\" EnforcementMode=\"AuditOnly\">\n"
            .to_string(),
        ..Rendered::default()
    };
    for r in records {
        if r.ftype != FileType::File || r.class != FileClass::PeDll {
            continue;
        }
        let shown = crate::escape::for_terminal(&r.path);
        let (size, d) = match digest::authenticode_sha256(root, r) {
            Ok(x) => x,
            Err(why) => {
                out.skipped.push(format!("{shown}: {why}"));
                continue;
            }
        };
        let name = xml(&String::from_utf8_lossy(file_name(&r.path)));
        let path = xml(&String::from_utf8_lossy(&r.path));
        let _ = write!(
            out.text,
            "    <FileHashRule Id=\"{}\" Name=\"{name}\" Description=\"libwarden baseline: {path}\" \
             UserOrGroupSid=\"S-1-1-0\" Action=\"Allow\">\n      <Conditions>\n        \
             <FileHashCondition>\n          <FileHash Type=\"SHA256\" Data=\"0x{}\" \
             SourceFileName=\"{name}\" SourceFileLength=\"{size}\" />\n        \
             </FileHashCondition>\n      </Conditions>\n    </FileHashRule>\n",
            rule_id(&r.path),
            crate::escape::hex(&d).to_uppercase(),
        );
        out.entries += 1;
    }
    out.text
        .push_str("  </RuleCollection>\n</AppLockerPolicy>\n");
    out
}

/// A GUID per path, stable across exports (a re-import replaces the rule
/// instead of adding a twin): the first 16 bytes of BLAKE3 of the path,
/// shaped as a version-8 (custom) UUID.
fn rule_id(path: &[u8]) -> String {
    let h = blake3::hash(path);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = crate::escape::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// Text for an XML attribute value. Characters XML 1.0 cannot hold at all
/// (controls other than tab and newlines) become U+FFFD.
fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_guids_and_attributes_are_escaped() {
        let a = rule_id(b"/Windows/System32/a.dll");
        assert_eq!(a, rule_id(b"/Windows/System32/a.dll"));
        assert_ne!(a, rule_id(b"/Windows/System32/b.dll"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
        assert_eq!(xml("a&b<\"'\u{1}"), "a&amp;b&lt;&quot;&apos;\u{fffd}");
    }
}
