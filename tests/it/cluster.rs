//! Cluster mode against a real NATS JetStream cluster: `nats-server`
//! processes started by the tests (tests/it/support/nats.rs).

mod harness;
mod lease;
mod outbox;
mod silences;
