//! The JetStream publish ceiling of the machine: what a NATS cluster
//! stores per second when a client does nothing but publish callbacks to
//! a replicated stream, the way cluster-mode ingest does (one message per
//! callback, `Nats-Msg-Id` set, each publish awaiting its PubAck), with no
//! HTTP server, no decoding and no rules in the way.
//!
//! `bench/cluster.sh` runs it in the same round as the cluster node, so
//! the node's rate can be read against what the servers themselves allow
//! on the same cores.
//!
//! Run: `cargo bench --bench nats_publish` with
//! - `NATS_URLS`: comma-separated server URLs (required);
//! - `STREAM`: the stream to create (default `PUBLISH_PROBE`), replaced if
//!   it exists;
//! - `REPLICAS` (default 3), `IN_FLIGHT` publishes at once (default 64,
//!   wrk's connections), `SECONDS` (default 5);
//! - `PAYLOADS`: a `callwatch simulate` trace (JSON lines, each about the
//!   size of the recorded-callback line the node publishes), its lines
//!   published round-robin (default: 600-byte messages).
//!
//! Prints one line: `published/s p50_ms p99_ms errors published`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use bytes::Bytes;

mod stats;
use stats::percentile;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}: cannot parse {v:?}")),
        Err(_) => Ok(default),
    }
}

/// The messages to publish: the trace's lines, or one synthetic message.
fn payloads() -> anyhow::Result<Vec<Bytes>> {
    let Ok(path) = std::env::var("PAYLOADS") else {
        return Ok(vec![Bytes::from(vec![b'x'; 600])]);
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("PAYLOADS {path}"))?;
    let bodies: Vec<Bytes> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| Bytes::copy_from_slice(l.as_bytes()))
        .collect();
    if bodies.is_empty() {
        bail!("PAYLOADS {path}: no lines");
    }
    Ok(bodies)
}

/// A latency in milliseconds, as the shell scripts read them.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let urls = std::env::var("NATS_URLS").context("NATS_URLS is required")?;
    let stream_name: String = env_or("STREAM", "PUBLISH_PROBE".to_string())?;
    let replicas: usize = env_or("REPLICAS", 3)?;
    let in_flight: usize = env_or("IN_FLIGHT", 64)?;
    let seconds: f64 = env_or("SECONDS", 5.0)?;
    let bodies = Arc::new(payloads()?);

    let addrs: Vec<&str> = urls.split(',').map(str::trim).collect();
    let client = async_nats::connect(addrs).await.context("connecting")?;
    let js = jetstream::new(client);
    let subject = format!("{}.callbacks", stream_name.to_lowercase());
    let _ = js.delete_stream(&stream_name).await;
    // As the cluster node's stream: file storage, replicated, a duplicate
    // window of ten minutes (the server keeps every id seen within it).
    js.create_stream(stream::Config {
        name: stream_name.clone(),
        subjects: vec![subject.clone()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        max_age: Duration::from_secs(7200),
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    })
    .await
    .context("creating the stream")?;

    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::with_capacity(in_flight);
    for _ in 0..in_flight {
        let (js, subject, bodies) = (js.clone(), subject.clone(), bodies.clone());
        let (next, errors) = (next.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let body = bodies[(n as usize) % bodies.len()].clone();
                // A SHA-256-sized hex id, as the node's dedup identity.
                let mut headers = HeaderMap::new();
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    format!("{n:064x}").as_str(),
                );
                let t = Instant::now();
                let acked = async {
                    js.publish_with_headers(subject.clone(), headers, body)
                        .await?
                        .await
                }
                .await;
                match acked {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.context("publisher task")?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let _ = js.delete_stream(&stream_name).await;
    println!(
        "{:.0} {:.3} {:.3} {} {}",
        all.len() as f64 / elapsed,
        ms(percentile(&all, 50.0)),
        ms(percentile(&all, 99.0)),
        errors.load(Ordering::Relaxed),
        all.len()
    );
    Ok(())
}
