//! The service as a whole, through the real binary or an in-process
//! daemon on real sockets: SIGKILL at random points, hot reload, hostile
//! input and sandbox escapes, admin API auth from another host, overload.

mod admin_cli;
mod connections;
mod crash;
pub(crate) mod daemon;
mod exit_codes;
mod hostile;
pub(crate) mod netns;
mod overload;
mod quiet;
pub(crate) mod reload;
mod runaway;
mod sandbox;
pub(crate) mod sink;
mod startup_log;
mod token;
mod trace;
