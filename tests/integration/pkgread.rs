//! rpm and apk package digests verified in the read that gives the BLAKE3.
