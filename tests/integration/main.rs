//! The one integration-test binary. Each area has its own module; all use
//! the fixture helper in `util`.

mod util;

mod audit;
mod bench;
mod core;
mod hostile;
mod pipeline;
mod provenance;
mod regf;
mod trust;
mod watch;
mod windows;
mod wine;
