//! File formats libwarden parses: bounded, never-panicking readers of
//! hostile bytes. They import only the platform layer; what a parsed fact
//! means is for the judges to say.
//!
//! - `elf`: ELF headers, dynamic section (SONAME, DT_NEEDED, RPATH,
//!   RUNPATH), `PT_INTERP`
//! - `ldconf`: `ld.so.conf` with its `include` globs
//! - `loaderpaths`: the absolute paths a glibc loader holds (a patched
//!   loader's new preload list)
//! - `ldcache`: `/etc/ld.so.cache`
//! - `pe`, `der`: PE images, Authenticode signatures and the DER they hold
//! - `kmod`: the appended signature of a Linux kernel module
//! - `ima`: the `security.ima` extended attribute
//! - `rpmheader`: the header blobs of the rpm database
//! - `apkdb`: Alpine's `lib/apk/db/installed`
//! - `oci`: the JSON of OCI image layouts and `docker save` archives

pub mod apkdb;
pub mod der;
pub mod elf;
pub mod ima;
pub mod kmod;
pub mod ldcache;
pub mod ldconf;
pub mod loaderpaths;
pub mod oci;
pub mod pe;
pub mod rpmheader;
