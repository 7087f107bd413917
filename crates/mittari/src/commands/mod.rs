//! One module per command: its arguments and what it does. `main.rs` parses the command line
//! and dispatches; what the commands share (connecting to a server, the embedded or remote
//! backend, printing, error reports) stays there.

pub(crate) mod admin;
pub(crate) mod compute;
pub(crate) mod metrics;
pub(crate) mod model;
pub(crate) mod plugin;
pub(crate) mod report;
pub(crate) mod scorecard;
pub(crate) mod serve;
pub(crate) mod sql;
pub(crate) mod token;
