//! The dpkg index: loaded with less work and less memory, judged the same.
