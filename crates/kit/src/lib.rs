//! The plugin author's kit: what `mittari plugin …` does, as a library.
//!
//! [`new_plugin`] writes a plugin crate that builds, passes its tests and loads in a server
//! with no edit, so an author starts from something that works.
//!
//! A plugin's bugs should meet its author, not the server's users. [`check_library`] loads a
//! library the way the server does and sends it what the server's clients may send: the
//! shapes every metric meets (no rows, one row, null optional columns, one key repeated,
//! 1 000 000 rows) and seeded extreme requests generated from the descriptor
//! ([`mittari_engine::probe`]). It runs them in a child process, so an abort or a segfault in
//! the plugin is reported with the request that caused it, and the check goes on with the
//! next one.

mod check;
mod scaffold;

pub use check::{CheckOptions, CheckSummary, WorkerError, check_library, run_worker};
pub use scaffold::{
    ScaffoldError, SdkSource, crate_name, new_plugin, sdk_in_checkout, sdk_of_this_build,
};
