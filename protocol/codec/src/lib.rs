//! Screen encoding for remote sessions: changed tiles with zstd, and H.264; pure, no I/O.
