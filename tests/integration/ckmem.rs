//! An unchanged check: memory and work near a metadata walk.
