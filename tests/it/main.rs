//! The integration tests: one binary, one module per area.

mod support;

mod ingest;
mod props;
mod shutdown;
