//! callwatch: a rule-based alerting daemon for Tencent RTC call callbacks.
//!
//! The data path is visible in the layout: receive → decode → journal →
//! windows → rules → alerts → notify.
//!
//! # Layout
//! - [`config`]: serde structs, figment layering, validation.
//! - [`event`]: the normalised call event, the one type that flows.
//! - [`alert`]: the alert object and its state machine (pure).
//! - [`notify`]: receivers (log, email, webhook, chat services,
//!   Alertmanager), routing and grouping of notifications.

pub mod alert;
pub mod config;
pub mod event;
pub mod notify;
