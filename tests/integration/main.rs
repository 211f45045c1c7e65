//! The one integration-test binary. Each area has its own module; all use
//! the fixture helper in `util`.

mod util;

mod audit;
mod bench;
mod chain;
mod confinement;
mod core;
mod fuzz;
mod hostile;
mod inputs;
mod pipeline;
mod provenance;
mod regf;
mod store_safety;
mod trust;
mod watch;
mod windows;
mod wine;
