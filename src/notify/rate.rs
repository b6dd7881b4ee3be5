//! Per-receiver rate limiting: at most N messages in any sliding minute.
//! Chat robots ban or silently drop senders that exceed their documented
//! limits, so a receiver that would exceed its limit fails the attempt as
//! retryable with the wait, and the outbox tries again later. Time is
//! passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

const MINUTE: Duration = Duration::from_secs(60);

/// The documented per-robot limits, used when `rate_limit_per_minute` is 0.
pub(crate) fn service_default(kind: &str) -> u32 {
    match kind {
        // WeCom and DingTalk robots: 20 messages a minute.
        "wecom" | "dingtalk" => 20,
        // Telegram: about 20 messages a minute to one group.
        "telegram" => 20,
        // Discord webhooks: 30 requests a minute.
        "discord" => 30,
        // Slack incoming webhooks: one message a second.
        "slack" => 60,
        // Feishu bots: 100 a minute.
        "feishu" => 100,
        _ => 0,
    }
}

/// A sliding-window limiter; 0 means unlimited.
#[derive(Debug)]
pub(crate) struct RateLimit {
    per_minute: u32,
    sent: VecDeque<Instant>,
}

impl RateLimit {
    pub fn new(per_minute: u32) -> RateLimit {
        RateLimit {
            per_minute,
            sent: VecDeque::new(),
        }
    }

    /// Counts a message sent at `now`, or says how long until one may be.
    pub fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        while let Some(first) = self.sent.front() {
            if now.saturating_duration_since(*first) >= MINUTE {
                self.sent.pop_front();
            } else {
                break;
            }
        }
        if self.sent.len() < self.per_minute as usize {
            self.sent.push_back(now);
            return Ok(());
        }
        let oldest = self.sent.front().copied().unwrap_or(now);
        Err(MINUTE.saturating_sub(now.saturating_duration_since(oldest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_within_a_sliding_minute() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut r = RateLimit::new(2);
        assert_eq!(r.admit(at(0)), Ok(()));
        assert_eq!(r.admit(at(10)), Ok(()));
        assert_eq!(r.admit(at(20)), Err(Duration::from_secs(40)));
        assert_eq!(r.admit(at(60)), Ok(()));
        assert_eq!(r.admit(at(61)), Err(Duration::from_secs(9)));
        assert_eq!(r.admit(at(70)), Ok(()));
    }

    #[test]
    fn zero_is_unlimited() {
        let mut r = RateLimit::new(0);
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(r.admit(now), Ok(()));
        }
        assert_eq!(service_default("dingtalk"), 20);
        assert_eq!(service_default("webhook"), 0);
    }
}
