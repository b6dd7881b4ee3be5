//! callwatch: a rule-based alerting daemon for Tencent RTC call callbacks.
//!
//! The data path is visible in the layout: receive → decode → journal →
//! windows → rules → alerts → notify.
//!
//! # Layout
//! - [`config`]: serde structs, figment layering, validation.
//! - [`event`]: the normalised call event, the one type that flows.
//! - [`window`]: per-key sliding windows and their incremental aggregates (pure).
//! - [`rules`]: the Rhai engine, rule loading and validation, the `w` API (pure).
//! - [`alert`]: the alert object and its state machine (pure).

pub mod alert;
pub mod config;
pub mod event;
pub mod rules;
pub mod window;
