//! Messages from cleanup paths. `eprintln!` panics when stderr is gone (a closed pipe), and a
//! panic inside a drop that runs during unwinding aborts the process before the remaining
//! guards delete their namespaces: cleanup code writes through here instead.

use std::fmt::Display;
use std::io::Write as _;

/// Writes one line to stderr, ignoring failures.
pub fn warn(message: impl Display) {
    let _ = writeln!(std::io::stderr(), "vigie-lab: {message}");
}
