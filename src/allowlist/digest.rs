//! Other tools' digests of a baselined file. The baseline holds BLAKE3
//! only; fapolicyd wants SHA-256 of the bytes, AppLocker the Authenticode
//! SHA-256 of a PE image. Both are computed here by reading the file
//! through the confined root, in the same read as a BLAKE3 that must match
//! the record's. This is the one place to switch to a digest stored in the
//! record once records carry one.

use std::io::Read;
use std::path::Path;

use sha2::Digest;

use crate::record::Record;
use crate::rootfs::Root;
use crate::sys::OsStrExt;

/// The largest PE image read whole for its Authenticode digest.
pub const PE_CAP: u64 = 256 << 20;

/// Size and SHA-256 of the file behind `rec`, if its content is still the
/// baseline's.
pub fn sha256(root: &Root, rec: &Record) -> Result<(u64, [u8; 32]), String> {
    let want = rec.blake3.ok_or("the baseline has no digest of it")?;
    let path = Path::new(std::ffi::OsStr::from_bytes(&rec.path));
    let mut f = root
        .open_file(path)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let (mut b3, mut sha) = (blake3::Hasher::new(), sha2::Sha256::new());
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read it: {e}")),
        };
        b3.update(&buf[..n]);
        sha.update(&buf[..n]);
        size += n as u64;
    }
    if *b3.finalize().as_bytes() != want {
        return Err("its content changed since the baseline".into());
    }
    Ok((size, sha.finalize().into()))
}

/// Size and Authenticode SHA-256 of the PE image behind `rec`, if its
/// content is still the baseline's.
pub fn authenticode_sha256(root: &Root, rec: &Record) -> Result<(u64, Vec<u8>), String> {
    let want = rec.blake3.ok_or("the baseline has no digest of it")?;
    let path = Path::new(std::ffi::OsStr::from_bytes(&rec.path));
    if rec.size > PE_CAP {
        return Err(format!("larger than {PE_CAP} bytes"));
    }
    let mut b = Vec::new();
    root.open_file(path)
        .and_then(|f| f.take(PE_CAP + 1).read_to_end(&mut b))
        .map_err(|e| format!("cannot read it: {e}"))?;
    if *blake3::hash(&b).as_bytes() != want {
        return Err("its content changed since the baseline".into());
    }
    let layout = crate::formats::pe::layout(&b).ok_or("not a PE image that parses")?;
    let d = crate::formats::pe::authenticode_digest(&b, &layout, "sha256")
        .ok_or("its Authenticode digest cannot be computed")?;
    Ok((b.len() as u64, d))
}
