//! The one integration-test binary. Each area has its own module; all use
//! the fixture helper in `util`.

mod util;

mod acknowledge;
mod audit;
mod bench;
mod chain;
mod ckfast;
mod ckmem;
mod confinement;
mod core;
mod depth;
mod dpkgindex;
mod fuzz;
mod guard;
mod hostile;
mod idxmem;
mod imagebase;
mod imagejudge;
mod imageops;
mod initcpu;
mod initmem;
mod inputs;
mod lean;
mod memory;
mod packagedb;
mod packages;
mod pipeline;
mod pkgread;
mod postwalk;
mod provenance;
mod regf;
mod samepass;
mod shipping;
mod store_safety;
mod trust;
mod walker;
mod watch;
mod windows;
mod wine;
mod winservice;
