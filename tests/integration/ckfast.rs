//! An unchanged `check` and one after changes: the same findings with less work.
