//! File formats libwarden parses: bounded, never-panicking readers of
//! hostile bytes. They import only the platform layer; what a parsed fact
//! means is for the judges to say.
//!
//! - `elf`: ELF headers, dynamic section (SONAME, DT_NEEDED, RPATH,
//!   RUNPATH), `PT_INTERP`
//! - `ldconf`: `ld.so.conf` with its `include` globs
//! - `ldcache`: `/etc/ld.so.cache`
//! - `pe`, `der`: PE images, Authenticode signatures and the DER they hold
//! - `kmod`: the appended signature of a Linux kernel module
//! - `ima`: the `security.ima` extended attribute

pub mod der;
pub mod elf;
pub mod ima;
pub mod kmod;
pub mod ldcache;
pub mod ldconf;
pub mod pe;
