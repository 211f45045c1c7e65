//! The Linux directory-fd walker gives what the portable walker gives.
