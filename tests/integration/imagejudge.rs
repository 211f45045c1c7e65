//! Provenance and the walk's audits on an image's in-memory view.
