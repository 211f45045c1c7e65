//! Making hostile file names safe to show. Names are attacker-chosen bytes:
//! on a terminal they must not be able to move the cursor, recolour the
//! screen or reorder text (bidi controls), and in JSON they must stay valid
//! and reversible.

use std::fmt::Write;

/// Escapes a path for a terminal: invalid UTF-8 bytes as `\xNN`, control,
/// bidi and other invisible format characters as `\u{..}` (or `\n`, `\t`,
/// `\r`), and a backslash as `\\` so the result is unambiguous.
pub fn for_terminal(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if is_unsafe_char(c) => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Characters that must never reach a terminal raw.
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' // zero-width and LRM/RLM marks
            | '\u{202a}'..='\u{202e}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2069}' // word joiner, bidi isolates
            | '\u{feff}')
}

/// The `path` value of JSON output: valid UTF-8 is kept as is (the JSON
/// encoder escapes control characters), each byte that is not valid UTF-8
/// becomes `\xNN`. When that rewriting makes the text ambiguous (invalid
/// bytes present, or a literal `\x` in the name) [`needs_hex`] says so and
/// the reporter adds `path_hex` with the exact bytes.
pub fn for_json(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// True when [`for_json`] alone would not give back the original bytes.
pub fn needs_hex(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_err() || bytes.windows(2).any(|w| w == b"\\x")
}

/// Lower-case hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parses lower- or upper-case hex; `None` on any malformed input.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_controls_bidi_and_invalid_bytes() {
        let s = for_terminal(b"a\nb\x1b[31m\xff\xe2\x80\xaeevil\\");
        assert_eq!(s, "a\\nb\\u{1b}[31m\\xff\\u{202e}evil\\\\");
        assert!(!s.chars().any(|c| c.is_control()));
    }

    #[test]
    fn json_path_is_reversible_with_hex() {
        let raw = b"lib\xffx.so";
        assert_eq!(for_json(raw), "lib\\xffx.so");
        assert!(needs_hex(raw));
        assert_eq!(unhex(&hex(raw)).unwrap(), raw);
        assert!(!needs_hex(b"/usr/lib/libc.so.6"));
        assert!(needs_hex(b"odd\\x41"));
    }
}
