//! The engine tick as stream messages. A window emptying, a `for:`
//! ripening and a flatline are decided at a tick; were each node to tick
//! on its own clock, each would stamp such a transition at its own time
//! and publish it under its own id. Instead every node publishes, at each
//! multiple of `rules.tick` on its clock, a tick message carrying that
//! time, with `Nats-Msg-Id` = the time: the stream keeps one per instant,
//! and every node's engine ticks when it reads it, at that time, between
//! the same callbacks. No node needs to lead for the cluster to tick;
//! with NATS out of reach nobody ticks, as nobody can deliver either.

use std::time::Duration;

use async_nats::HeaderMap;

use super::{Cluster, ACK_TIMEOUT};
use crate::ingest::now_ms;
use crate::lograte::LogRate;

/// The header naming a tick's time (Unix milliseconds); the body repeats
/// it for people reading the stream with `nats stream view`.
pub const TICK_HEADER: &str = "Callwatch-Tick";

/// The tick time of a stream message on the tick subject: `None` if it is
/// not a readable tick.
pub fn tick_of(headers: Option<&HeaderMap>) -> Option<i64> {
    headers?.get(TICK_HEADER)?.as_str().parse().ok()
}

/// The first multiple of `every_ms` after `now_ms`.
fn next_tick(now_ms: i64, every_ms: i64) -> i64 {
    (now_ms.div_euclid(every_ms) + 1) * every_ms
}

/// Publishes this node's ticks until `stop` resolves.
pub async fn publish(
    cluster: Cluster,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let every_ms = (every.as_millis() as i64).max(100);
    let subject = cluster.config.tick_subject();
    let errors = LogRate::new(Duration::from_secs(60));
    let mut stop = std::pin::pin!(stop);
    loop {
        let at = next_tick(now_ms(), every_ms);
        let wait = Duration::from_millis((at - now_ms()).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut stop => return,
        }
        if !cluster.connected() {
            continue;
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("tick.{at}").as_str(),
        );
        headers.insert(TICK_HEADER, at.to_string().as_str());
        let sent = tokio::time::timeout(ACK_TIMEOUT, async {
            cluster
                .js
                .publish_with_headers(subject.clone(), headers, at.to_string().into())
                .await?
                .await
        })
        .await;
        let error = match sent {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no acknowledgement within {} ms", ACK_TIMEOUT.as_millis()),
        };
        // Another node's tick of the same instant serves as well; a
        // cluster where no node can publish is not ready anyway.
        if let Some(n) = errors.check("tick", std::time::Instant::now()) {
            tracing::warn!(error = %error, repeated = n, "cannot publish the engine tick to the stream");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_fall_on_multiples_of_the_period_after_now() {
        assert_eq!(next_tick(0, 10_000), 10_000);
        assert_eq!(next_tick(9_999, 10_000), 10_000);
        assert_eq!(next_tick(10_000, 10_000), 20_000);
        assert_eq!(next_tick(1_764_280_001_234, 1_000), 1_764_280_002_000);
    }

    #[test]
    fn a_tick_is_read_from_its_header() {
        let mut h = HeaderMap::new();
        h.insert(TICK_HEADER, "1764280002000");
        assert_eq!(tick_of(Some(&h)), Some(1_764_280_002_000));
        assert_eq!(tick_of(None), None);
        let mut bad = HeaderMap::new();
        bad.insert(TICK_HEADER, "soon");
        assert_eq!(tick_of(Some(&bad)), None);
        assert_eq!(tick_of(Some(&HeaderMap::new())), None);
    }
}
