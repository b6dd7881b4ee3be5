//! callwatch: a rule-based alerting daemon for Tencent RTC call callbacks.
//!
//! The data path is visible in the layout: receive → decode → journal →
//! windows → rules → alerts → notify.
//!
//! # Layout
//! - [`config`]: serde structs, figment layering, validation.
//! - [`event`]: the normalised call event, the one type that flows.
//! - [`ingest`]: `POST /callback`: checks, decoding, dedup, hand-off.
//! - [`journal`]: append-only segments of accepted callbacks.
//! - [`alert`]: the alert object and its state machine (pure).
//! - [`metrics`]: the Prometheus registry.
//! - [`api`]: health, readiness, metrics and admin endpoints.
//! - [`app`]: wiring, startup recovery and ordered shutdown.

pub mod alert;
pub mod api;
pub mod app;
pub mod config;
pub mod event;
pub mod ingest;
pub mod journal;
pub mod metrics;
