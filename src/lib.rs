//! callwatch: a rule-based alerting daemon for Tencent RTC call callbacks.
//!
//! The data path is visible in the layout: receive → decode → journal →
//! windows → rules → alerts → notify.
//!
//! # Layout
//! - [`config`]: serde structs, figment layering, validation.
//! - [`event`]: the normalised call event, the one type that flows.
//! - [`ingest`]: `POST /callback`: checks, decoding, dedup, hand-off.
//! - [`feed`]: the newest accepted callbacks and per-minute counts, for the console.
//! - [`journal`]: append-only segments of accepted callbacks.
//! - [`window`]: per-key sliding windows and their incremental aggregates (pure).
//! - [`rules`]: the Rhai engine, rule loading and validation, the `w` API (pure).
//! - [`engine`]: windows per rule and key, check scheduling, alert states (pure).
//! - [`alert`]: the alert object and its state machine (pure).
//! - [`builtin`]: alerts the engine raises about rules themselves (pure).
//! - [`budget`]: the per-rule CPU budget that suspends a runaway rule.
//! - [`annotations`]: `RULE.annotations` templates, checked at load (pure).
//! - [`store`]: SQLite store for the outbox, silences and persisted state.
//! - [`history`]: each alert's transitions and notifications, for people looking back.
//! - [`time`]: the wall clock (read only here) and RFC 3339 times.
//! - [`timeline`]: engine time from event time, shared by `replay` and `test`.
//! - [`replay`]: offline evaluation of recorded callbacks in event time.
//! - [`backtest`]: one pasted rule over the journal, on a budget, for the console.
//! - [`ruletest`]: `callwatch test`, rule tests written as `*.test.toml` data.
//! - [`simulate`]: realistic callback traffic with injected anomalies.
//! - [`metrics`]: the Prometheus registry.
//! - [`lograte`]: one log line per interval for repeated errors.
//! - [`progress`]: progress bars on stderr for long offline runs.
//! - [`api`]: health, readiness, metrics and admin endpoints.
//! - [`server`]: the HTTP accept loop: connection cap, header and idle timeouts.
//! - [`client`]: `callwatch alerts` and `callwatch silence`, clients of the admin API.
//! - [`notify`]: receivers (log, email, webhook, chat services,
//!   Alertmanager), grouping and the durable outbox.
//! - [`quiet`]: inhibit rules, time intervals and regex label matchers (pure).
//! - [`daemon`]: wiring, startup recovery, the engine thread, hot reload,
//!   housekeeping and the one shutdown order.
//! - [`startup`]: logging setup, the startup summary, start-up errors.

pub mod alert;
pub mod annotations;
pub mod api;
pub mod backtest;
pub mod budget;
pub mod builtin;
pub mod client;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod event;
pub mod feed;
pub mod history;
pub mod ingest;
pub mod journal;
pub mod lograte;
pub mod metrics;
pub mod notify;
pub mod progress;
pub mod quiet;
pub mod replay;
pub mod rules;
pub mod ruletest;
pub mod server;
pub mod simulate;
pub mod startup;
pub mod store;
pub mod time;
pub mod timeline;
pub mod window;

// The names these modules had before `daemon/` gathered them.
pub use daemon as app;
pub use daemon::reload;
