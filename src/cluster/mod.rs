//! Cluster mode over NATS JetStream (docs/cluster.md).
//!
//! # Layout
//! - [`lease`]: the leader lease in a KV bucket, with its term as fencing token.
//! - [`outbox`]: transitions in the OUTBOX stream, delivered by the leader once.
//! - [`silences`]: silences in a KV bucket, applied on every node.
//! - [`leader`]: those three bound to the dispatcher and the delivery queue.

pub mod leader;
pub mod lease;
pub mod outbox;
pub mod silences;
