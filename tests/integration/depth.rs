//! Tests for depth (filled in by its issue).

#[allow(unused_imports)]
use crate::util::*;
