//! (tests added by the work on this area)

#[allow(unused_imports)]
use crate::util::*;
