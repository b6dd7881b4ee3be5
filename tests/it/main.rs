//! The one integration-test binary: each module drives callwatch through
//! real parts (HTTP servers, an SMTP server, the disk).

mod notify;
mod service;
