//! Default init: one package index parse, full MD5 lanes.
