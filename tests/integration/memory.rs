//! Peak memory of the commands stays bounded.
