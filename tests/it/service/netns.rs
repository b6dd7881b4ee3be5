//! The admin API seen from another host: a network namespace joined to
//! this one by a veth pair, so requests come from a real non-loopback
//! address. Without `server.admin_token` such clients are refused (and an
//! `X-Forwarded-For: 127.0.0.1` header does not help); with a token they
//! are served when they present it.
//!
//! Needs root (CAP_NET_ADMIN), `ip` and `curl`. Skips loudly without them
//! unless `CALLWATCH_REQUIRE_NETNS` is set, in which case it fails.

use std::process::Command;

use super::daemon::{free_addr, Home};

/// A namespace and veth pair, removed on drop (also when a test fails).
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
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
        // Unique per process so parallel runs on one host do not collide.
        let id = std::process::id() % 250 + 1;
        let ns = Netns {
            name: format!("cwtest{id}"),
            host_if: format!("cwh{id}"),
            host_ip: format!("10.77.{id}.1"),
        };
        let peer = format!("cwn{id}");
        let ns_ip = format!("10.77.{id}.2/24");
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

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// The namespace, or `None` (with a loud message) when this machine
/// cannot make one and nobody required it.
fn netns_or_skip() -> Option<Netns> {
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
