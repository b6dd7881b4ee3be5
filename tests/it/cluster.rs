//! Cluster mode against a real NATS JetStream cluster: `nats-server`
//! processes started by the tests (tests/it/support/nats.rs).

mod harness;
mod ingest;
mod lease;
mod nodes;
mod notify;
mod outbox;
mod procs;
mod sigkill;
mod silences;
mod ticks;
