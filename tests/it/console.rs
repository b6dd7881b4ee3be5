//! The console's data over HTTP against the in-process daemon: the live
//! feed of accepted callbacks (server-sent events, the recent ring,
//! per-minute counts) and backtests of a pasted rule over the journal.

mod backtest;
mod events;
