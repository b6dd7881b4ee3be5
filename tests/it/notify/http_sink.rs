//! A real HTTP server on 127.0.0.1:0 that records every request a receiver
//! sends and answers with a reply the test chooses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use warp::http::HeaderMap;
use warp::Filter;

/// One request as the server saw it.
#[derive(Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// The query string exactly as sent (still percent-encoded).
    pub raw_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    /// The query decoded the way any web framework decodes it.
    pub fn query(&self) -> BTreeMap<String, String> {
        let url = reqwest::Url::parse(&format!("http://x/?{}", self.raw_query)).expect("query");
        url.query_pairs().into_owned().collect()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Canned {
    pub fn new(status: u16, body: &str) -> Canned {
        Canned {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Canned {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delay(mut self, d: Duration) -> Canned {
        self.delay = d;
        self
    }
}

pub struct Sink {
    pub addr: SocketAddr,
    reply: Arc<Mutex<Canned>>,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl Sink {
    /// Starts a server answering every request with `reply`.
    pub async fn start(reply: Canned) -> Sink {
        Sink::start_on("127.0.0.1:0".parse().expect("addr"), reply).await
    }

    /// Starts a server on `addr` (e.g. a port a receiver was configured
    /// with while nothing listened there).
    pub async fn start_on(addr: SocketAddr, reply: Canned) -> Sink {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = mpsc::unbounded_channel();
        let reply = Arc::new(Mutex::new(reply));
        let shared = reply.clone();
        let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
        let route = warp::method()
            .and(warp::path::full())
            .and(raw_query)
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(
                move |method: warp::http::Method,
                      path: warp::path::FullPath,
                      raw_query,
                      headers,
                      body| {
                    let tx = tx.clone();
                    let canned = shared.lock().expect("reply lock").clone();
                    async move {
                        let _ = tx.send(Received {
                            method: method.to_string(),
                            path: path.as_str().to_string(),
                            raw_query,
                            headers,
                            body,
                        });
                        tokio::time::sleep(canned.delay).await;
                        let mut response = warp::http::Response::builder().status(canned.status);
                        for (k, v) in &canned.headers {
                            response = response.header(k.as_str(), v.as_str());
                        }
                        response.body(canned.body).expect("response")
                    }
                },
            );
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Sink { addr, reply, rx }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Changes the reply for later requests.
    pub fn reply(&self, reply: Canned) {
        *self.reply.lock().expect("reply lock") = reply;
    }

    /// A request already received, if any.
    pub fn try_next(&mut self) -> Option<Received> {
        self.rx.try_recv().ok()
    }

    /// The next request, waiting up to 5 s.
    pub async fn next(&mut self) -> Received {
        self.next_within(Duration::from_secs(5)).await
    }

    /// The next request, waiting up to `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> Received {
        tokio::time::timeout(limit, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("a request within {limit:?}"))
            .expect("server running")
    }
}
