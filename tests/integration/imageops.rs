//! Image baselines: update, accept, export, tags.
