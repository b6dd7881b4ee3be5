//! The baseline for `bench/ingest.sh`: a bare warp handler on the same
//! listener setup as callwatch that reads the body (with the same size
//! limit) and answers the same success body, without any checks,
//! decoding, dedup or journal. What callwatch costs is measured against it.
//!
//! Usage: `cargo run --release --example bare_warp -- 127.0.0.1:18081`

use std::net::SocketAddr;

use callwatch::ingest::SUCCESS_BODY;
use warp::Filter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into())
        .parse()?;
    let route = warp::path!("callback")
        .and(warp::post())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::bytes())
        .map(|_query: String, _body: bytes::Bytes| {
            warp::reply::with_header(SUCCESS_BODY, "content-type", "application/json")
        });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("bare_warp listening on {}", listener.local_addr()?);
    warp::serve(route).incoming(listener).run().await;
    Ok(())
}
