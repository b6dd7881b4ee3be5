//! The console's data over HTTP against the in-process daemon: the live
//! feed of accepted callbacks (server-sent events, the recent ring,
//! per-minute counts), backtests of a pasted rule over the journal, and
//! one alert's history.

mod backtest;
mod events;
mod history;
