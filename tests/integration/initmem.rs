//! `init`'s peak memory and its store write.
