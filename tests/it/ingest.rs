//! `POST /callback` over real HTTP against the in-process daemon: every
//! command of both families decoded into the event model (docs/events.md), every
//! callback check (docs/callbacks.md) with its status, message and order, deduplication, the
//! journal as the durable record of each 200, and the ops endpoints.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use callwatch::config::AppConfig;
use callwatch::event::Event;
use callwatch::ingest::auth;
use callwatch::ingest::decode::{CALL_STATUS_COMMANDS, FAMILY_A_COMMANDS};

use crate::support::{
    assert_no_event, decode_record, fixture_trace, journal_records, metric, next_event, now_secs,
    query, query_string, TestDaemon,
};

const APP: &str = "1400000001";
const SIGNED_APP: &str = "1400000002";
const TOKEN: &str = "s3cret-token";

fn a_query(command: &str) -> String {
    query(&[
        ("sdkappid", APP),
        ("command", command),
        ("contenttype", "json"),
        ("clientip", "1.2.3.4"),
        ("optplatform", "iOS"),
    ])
}

fn b_query(command: &str) -> String {
    query(&[
        ("SdkAppid", APP),
        ("CallbackCommand", command),
        ("contenttype", "json"),
        ("ClientIP", "5.6.7.8"),
        ("OptPlatform", "Android"),
    ])
}

/// Two configured apps: one without and one with a sign token.
fn with_apps(c: &mut callwatch::config::Config) {
    c.apps = vec![
        AppConfig {
            sdkappid: APP.parse().expect("app id"),
            token: String::new(),
        },
        AppConfig {
            sdkappid: SIGNED_APP.parse().expect("app id"),
            token: TOKEN.into(),
        },
    ];
}

/// The role prefix and bare event of a family A event command.
fn split_command(cmd: &str) -> (Option<&str>, &str) {
    match cmd.split_once('_') {
        Some((r @ ("caller" | "callee"), rest)) => (Some(r), rest),
        _ => (None, cmd),
    }
}

/// Callbacks counted under `labels` in the metrics text `m`.
fn callbacks(m: &str, labels: &[(&str, &str)]) -> f64 {
    metric(m, "callwatch_callbacks_total", labels)
}

/// Asserts each family A command was accepted `n` times.
fn assert_accepted(m: &str, commands: &[&str], n: f64) {
    for cmd in commands {
        let labels = [
            ("family", "call_event"),
            ("command", cmd),
            ("outcome", "accepted"),
        ];
        assert_eq!(callbacks(m, &labels), n, "{cmd}");
    }
}

mod checks;
mod decoding;
mod durability;
