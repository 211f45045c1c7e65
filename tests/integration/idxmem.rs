//! The package index `init` holds through the walk and the judges: kept
//! small (claims no scanned root can hold are left out) without changing
//! any answer, in this run or in the `check`s that use the stored index.
