//! The one integration-test binary: each module drives callwatch through
//! real parts (HTTP servers, an SMTP server, the disk, the real binary).

mod support;

mod console;
mod contrib;
mod delivery;
mod faults;
mod ingest;
mod layers;
mod notify;
mod props;
mod quiet;
mod rules;
mod service;
mod shutdown;
mod simulate;
