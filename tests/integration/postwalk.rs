//! What `init` does after the walk: the store write alongside the judges,
//! and what must hold whatever runs when (the generation read back with the
//! findings `init` showed, a failed write leaving the previous generation).
