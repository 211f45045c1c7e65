//! Tests for packagedb (filled in by its issue).

#[allow(unused_imports)]
use crate::util::*;
