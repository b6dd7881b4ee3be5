//! The admin API seen from another host: a network namespace joined to
//! this one by a veth pair, so requests come from a real non-loopback
//! address. Without `server.admin_token` such clients are refused (and an
//! `X-Forwarded-For: 127.0.0.1` header does not help); with a token they
//! are served when they present it.
//!
//! The same setup checks `server.callback_allow`: a callback from the
//! namespace's address outside the list gets 403 before any other check.
//!
//! Needs root (CAP_NET_ADMIN), `ip` and `curl`. Skips loudly without them
//! unless `CALLWATCH_REQUIRE_NETNS` is set, in which case it fails.

use std::process::Command;

use super::daemon::{free_addr, Home};

/// A namespace and veth pair, removed on drop (also when a test fails).
pub(crate) struct Netns {
    pub(crate) name: String,
    host_if: String,
    pub(crate) host_ip: String,
    /// The namespace's own address, as the daemon sees its clients.
    pub(crate) ns_ip: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    fn create() -> Result<Netns, String> {
        // Unique per process and per test so parallel runs on one host,
        // and the tests of this file, do not collide.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = (std::process::id() * 7 + n) % 250 + 1;
        let ns = Netns {
            name: format!("cwtest{id}"),
            host_if: format!("cwh{id}"),
            host_ip: format!("10.77.{id}.1"),
            ns_ip: format!("10.77.{id}.2"),
        };
        let peer = format!("cwn{id}");
        let ns_ip = format!("{}/24", ns.ns_ip);
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", &ns.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", ns.host_ip),
            "dev",
            &ns.host_if,
        ])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", ns.name.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &ns_ip, "dev", &peer])?;
        inside(&["link", "set", &peer, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `curl` from inside the namespace; returns the HTTP status.
    fn curl(&self, url: &str, headers: &[&str]) -> u16 {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, "curl", "-s", "-o", "/dev/null"])
            .args(["-w", "%{http_code}", "--max-time", "5"]);
        for h in headers {
            cmd.args(["-H", h]);
        }
        let out = cmd.arg(url).output().expect("run curl in the namespace");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Netns {
    /// `curl -X POST` from inside the namespace; returns status and body.
    fn post(&self, url: &str, body: &str) -> (u16, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "curl", "-s", "-X", "POST"])
            .args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
            ])
            .args(["-w", "\n%{http_code}", "--max-time", "5", url])
            .output()
            .expect("run curl in the namespace");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// The namespace, or `None` (with a loud message) when this machine
/// cannot make one and nobody required it.
pub(crate) fn netns_or_skip() -> Option<Netns> {
    let tools = ["ip", "curl"]
        .iter()
        .all(|t| Command::new(t).arg("-V").output().is_ok());
    let made = if tools {
        Netns::create()
    } else {
        Err("`ip` and `curl` are needed (apt-get install -y iproute2 curl)".into())
    };
    match made {
        Ok(ns) => Some(ns),
        Err(e) if std::env::var_os("CALLWATCH_REQUIRE_NETNS").is_some() => {
            panic!("CALLWATCH_REQUIRE_NETNS is set but no network namespace: {e}")
        }
        Err(e) => {
            eprintln!(
                "\n!!! SKIPPED admin API auth from another host: cannot create a network \
                 namespace ({e}); run as root with CAP_NET_ADMIN, or set \
                 CALLWATCH_REQUIRE_NETNS=1 to make this a failure !!!\n"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_refuses_other_hosts_without_the_token() {
    let Some(ns) = netns_or_skip() else { return };
    let forged = "X-Forwarded-For: 127.0.0.1";
    let real_ip = "X-Real-IP: 127.0.0.1";

    // No token: loopback only.
    let home = Home::listening(free_addr("0.0.0.0"), &[] as &[(&str, &str)], "");
    let daemon = home.start().await;
    let port = home.addr.port();
    let remote = |path: &str| format!("http://{}:{port}{path}", ns.host_ip);
    assert_eq!(
        ns.curl(&remote("/healthz"), &[]),
        200,
        "namespace reaches the daemon"
    );
    for path in ["/api/v1/alerts", "/api/v1/rules", "/api/v1/silences"] {
        assert_eq!(ns.curl(&remote(path), &[]), 403, "{path} from another host");
        assert_eq!(
            ns.curl(&remote(path), &[forged, real_ip]),
            403,
            "{path} forged"
        );
    }
    let local = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/alerts"))
        .await
        .expect("local request");
    assert_eq!(local.status(), 200, "loopback is served");
    daemon.kill();

    // With a token: anyone presenting it, nobody else.
    let home = Home::listening(
        free_addr("0.0.0.0"),
        &[] as &[(&str, &str)],
        "[server]\nadmin_token = \"s3cret-t0ken\"\n",
    );
    let _daemon = home.start().await;
    let port = home.addr.port();
    let remote = |path: &str| format!("http://{}:{port}{path}", ns.host_ip);
    let url = remote("/api/v1/alerts");
    assert_eq!(ns.curl(&url, &[]), 401);
    assert_eq!(ns.curl(&url, &[forged]), 401);
    assert_eq!(ns.curl(&url, &["Authorization: Bearer wrong"]), 401);
    assert_eq!(ns.curl(&url, &["Authorization: Bearer s3cret-t0ken"]), 200);
    assert_eq!(
        ns.curl(&url, &["Authorization: Bearer s3cret-t0ken", forged]),
        200
    );
}

/// A real legacy-family callback (the README's sample), timestamped now.
fn sample_callback() -> (String, String) {
    let query = "sdkappid=1400000001&command=caller_start_call&contenttype=json\
                 &clientip=1.2.3.4&optplatform=iOS";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let body = format!(
        r#"{{"UserId":"alice","RoomId":"1","TotalNum":2,"MediaType":"Audio","CallType":"Single","CallId":"c-allow","Role":"Caller","Event":"start_call","CallResult":"","EventTime":{now}}}"#
    );
    (query.to_string(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_allow_refuses_other_networks_first() {
    let Some(ns) = netns_or_skip() else { return };
    // Loopback is in the list, the namespace is not.
    let home = Home::listening(
        free_addr("0.0.0.0"),
        &[] as &[(&str, &str)],
        "[server]\ncallback_allow = [\"127.0.0.0/8\", \"192.0.2.0/24\"]\n",
    );
    let _daemon = home.start().await;
    let port = home.addr.port();
    let (query, body) = sample_callback();
    let (status, answer) = ns.post(
        &format!("http://{}:{port}/callback?{query}", ns.host_ip),
        &body,
    );
    assert_eq!(status, 403, "callback from outside the list: {answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON failure body");
    assert_eq!(answer["ActionStatus"], "FAIL");
    assert_eq!(answer["ErrorCode"], 403);
    let message = answer["ErrorMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains(&ns.ns_ip) && message.contains("server.callback_allow"),
        "{message}"
    );
    // Refused before the size check: an oversized body is still a 403.
    let (status, _) = ns.post(
        &format!("http://{}:{port}/callback?{query}", ns.host_ip),
        &"x".repeat(100 * 1024),
    );
    assert_eq!(status, 403, "oversized body from outside the list");
    // Other endpoints are not affected.
    assert_eq!(
        ns.curl(&format!("http://{}:{port}/healthz", ns.host_ip), &[]),
        200
    );

    let local = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/callback?{query}"))
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("local callback");
    assert_eq!(local.status(), 200, "loopback is in the list");
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("outcome=\"not_allowed\""),
        "refusals are counted"
    );

    // The namespace's own /32 in the list lets it in.
    let home = Home::listening(
        free_addr("0.0.0.0"),
        &[] as &[(&str, &str)],
        &format!("[server]\ncallback_allow = [\"{}/32\"]\n", ns.ns_ip),
    );
    let _daemon = home.start().await;
    let port = home.addr.port();
    let (status, answer) = ns.post(
        &format!("http://{}:{port}/callback?{query}", ns.host_ip),
        &body,
    );
    assert_eq!(status, 200, "{answer}");
}
