//! Reading the stream back as recorded-callback lines (docs/recording.md),
//! for `callwatch export` and `callwatch replay --stream`: from `since`
//! ago (or the stream's start) up to its last message when reading began,
//! in stream order. A reader thread with its own runtime fills a bounded
//! channel, so the blocking line readers of `replay` take it like a file.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use futures_util::StreamExt;

use super::Cluster;
use crate::config::ClusterConfig;

/// Lines are handed over in chunks of about this many bytes.
const CHUNK: usize = 256 * 1024;

/// How long the stream may stay silent before reading gives up.
const STALL: Duration = Duration::from_secs(30);

/// The stream's lines as a reader, or why the stream cannot be read.
pub fn open(
    config: &ClusterConfig,
    since: Option<Duration>,
) -> Result<Box<dyn BufRead + Send>, String> {
    let (tx, rx) = sync_channel::<Result<Vec<u8>, String>>(16);
    let (ready_tx, ready_rx) = sync_channel::<Result<(), String>>(1);
    let config = config.clone();
    std::thread::Builder::new()
        .name("stream-reader".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("starting a runtime: {e}")));
                    return;
                }
            };
            rt.block_on(read(config, since, ready_tx, tx));
        })
        .map_err(|e| format!("starting the stream reader: {e}"))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(Box::new(BufReader::with_capacity(
            CHUNK,
            ChannelReader {
                rx,
                chunk: Vec::new(),
                at: 0,
            },
        ))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the stream reader stopped".into()),
    }
}

async fn read(
    config: ClusterConfig,
    since: Option<Duration>,
    ready: SyncSender<Result<(), String>>,
    tx: SyncSender<Result<Vec<u8>, String>>,
) {
    let opened = async {
        let cluster = Cluster::connect(&config).await.map_err(|e| e.to_string())?;
        let mut stream = cluster
            .js
            .get_stream(&config.stream)
            .await
            .map_err(|e| format!("stream {}: {e}", config.stream))?;
        let last = stream
            .info()
            .await
            .map_err(|e| format!("stream {}: {e}", config.stream))?
            .state
            .last_sequence;
        let deliver_policy = match since {
            Some(d) => DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::now_utc() - d,
            },
            None => DeliverPolicy::All,
        };
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: config.subject(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("reading stream {}: {e}", config.stream))?;
        let pending = consumer.cached_info().num_pending;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| format!("reading stream {}: {e}", config.stream))?;
        Ok::<_, String>((last, pending, messages))
    };
    let (last, pending, messages) = match opened.await {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    if pending == 0 || last == 0 {
        return;
    }
    let mut messages = std::pin::pin!(messages);
    let mut chunk = Vec::with_capacity(CHUNK);
    loop {
        let msg = match tokio::time::timeout(STALL, messages.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => {
                let _ = tx.send(Err(format!("reading stream {}: {e}", config.stream)));
                return;
            }
            Ok(None) => break,
            Err(_) => {
                let _ = tx.send(Err(format!(
                    "reading stream {}: no message for {STALL:?}",
                    config.stream
                )));
                return;
            }
        };
        let (seq, pending) = match msg.info() {
            Ok(i) => (i.stream_sequence, i.pending),
            Err(_) => (0, 1),
        };
        chunk.extend_from_slice(&msg.payload);
        chunk.push(b'\n');
        let done = pending == 0 || seq >= last;
        if chunk.len() >= CHUNK || done {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            // The reading side gone means nobody wants the rest.
            if tx.send(Ok(full)).is_err() {
                return;
            }
        }
        if done {
            return;
        }
    }
    if !chunk.is_empty() {
        let _ = tx.send(Ok(chunk));
    }
}

/// The chunks of the reader thread as one byte stream.
struct ChannelReader {
    rx: Receiver<Result<Vec<u8>, String>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.chunk = c;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(std::io::Error::other(e)),
                // The thread is done: end of the stream's lines.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
