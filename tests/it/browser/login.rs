//! The console with `server.admin_token` set, seen from another host:
//! the daemon runs in a network namespace, the browser outside it, so
//! the daemon sees a real non-loopback peer.

use std::time::Duration;

use super::driver::Browser;
use crate::service::daemon::{free_addr, Home};
use crate::service::netns::netns_or_skip;

const TOKEN: &str = "s3cret-t0ken";

/// A page on another origin (the test's own server) that posts a
/// silence to the console when opened, as a hostile site would.
async fn hostile_site(target: String) -> std::net::SocketAddr {
    use warp::Filter;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind hostile site");
    let addr = listener.local_addr().expect("addr");
    let page = format!(
        "<!doctype html><form id=f method=post action=\"{target}/ui/silences\">\
         <input name=matchers value=\"rule=x\"><input name=comment value=pwned>\
         <input name=duration value=1h><input name=csrf value=guess></form>\
         <script>document.getElementById('f').submit()</script>"
    );
    let route = warp::any().map(move || warp::reply::html(page.clone()));
    tokio::spawn(warp::serve(route).incoming(listener).run());
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_login_from_another_host_in_a_real_browser() {
    let Some(ns) = netns_or_skip() else { return };
    let Some(b) = Browser::start_or_skip().await else {
        return;
    };
    let port = free_addr("127.0.0.1").port();
    let addr = format!("{}:{port}", ns.ns_ip).parse().expect("addr");
    let home = Home::listening(
        addr,
        &[] as &[(&str, &str)],
        &format!("[server]\nadmin_token = \"{TOKEN}\"\n"),
    );
    let mut daemon = home.spawn_via(&["ip", "netns", "exec", &ns.name]);
    daemon.wait_ready(Duration::from_secs(60), &home).await;
    let base = home.url("");

    // No session: the login form, which comes back to the page asked for.
    b.client
        .goto(&home.url("/ui/silences"))
        .await
        .expect("goto");
    b.wait_for("#login-form").await;
    assert!(b.console_errors().await.is_empty());
    b.shoot("login").await;
    let api = reqwest::get(home.url("/api/v1/alerts")).await.expect("api");
    assert_eq!(api.status(), 401, "the API too wants the token");

    // A wrong token is refused.
    b.set_value("#token", "wrong").await;
    b.click("#login-form button").await;
    b.wait_text("#login-error", "wrong token", |t| t.contains("wrong token"))
        .await;
    let cookies = b.client.get_all_cookies().await.expect("cookies");
    assert!(
        cookies.is_empty(),
        "no session for a wrong token: {cookies:?}"
    );
    // The browser logs the 401 of the refused login: expected, not an error.
    let _ = b.console_errors().await;

    // The right token opens a session and goes on to the page asked for.
    b.set_value("#token", TOKEN).await;
    b.click("#login-form button").await;
    b.wait_for("#matchers").await;
    let url = b.client.current_url().await.expect("url");
    assert_eq!(url.path(), "/ui/silences");
    assert!(!url.as_str().contains(TOKEN), "the token is never in a URL");
    let cookie = b
        .client
        .get_named_cookie("callwatch_session")
        .await
        .expect("session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(
        cookie.same_site().map(|s| format!("{s:?}")).as_deref(),
        Some("Strict")
    );
    let session = cookie.value().to_string();
    // The session lets the browser's scripts use the API.
    let status = b
        .client
        .execute(
            "return fetch('/api/v1/alerts').then(r => r.status);",
            vec![],
        )
        .await
        .expect("fetch");
    assert_eq!(status, 200);

    // A silence made in the console works with the session's CSRF token.
    b.set_value("#matchers", "rule=maintenance").await;
    b.set_value("#comment", "from the browser").await;
    b.click("form.stack button[type=submit]").await;
    b.wait_for("li.silence.state-active").await;
    assert!(b.console_errors().await.is_empty());

    // A hostile page posting to the console is refused: SameSite keeps
    // the cookie back, and the Origin check stands behind it.
    let evil = hostile_site(base.clone()).await;
    b.client
        .goto(&format!("http://{evil}/"))
        .await
        .expect("goto hostile site");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let here = b.client.current_url().await.expect("url");
        if here.as_str().starts_with(&base) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the form never posted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = b.client.source().await.expect("page");
    assert!(body.contains("401") || body.contains("403"), "{body}");
    let _ = b.console_errors().await;

    // The same with the cookie attached by hand (a browser without
    // SameSite): the Origin refuses it; so does a missing CSRF token.
    let http = reqwest::Client::new();
    let cookie = format!("callwatch_session={session}");
    let post = |origin: Option<&str>, csrf: &str| {
        let mut r = http
            .post(home.url("/ui/silences"))
            .header("Cookie", &cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("matchers=rule%3Dx&comment=pwned&csrf={csrf}"));
        if let Some(o) = origin {
            r = r.header("Origin", o);
        }
        r.send()
    };
    let r = post(Some(&format!("http://{evil}")), "guess")
        .await
        .expect("post");
    assert_eq!(r.status(), 403, "cross-site Origin");
    let r = post(None, "guess").await.expect("post");
    assert_eq!(r.status(), 403, "wrong CSRF token");
    let r = http
        .post(home.url("/api/v1/silences"))
        .header("Cookie", &cookie)
        .body(r#"{"matchers":[{"name":"rule","value":"x"}],"endsAt":"2099-01-01T00:00:00Z","comment":"pwned"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        403,
        "API post with the cookie but no X-CSRF-Token"
    );
    let silences: serde_json::Value = http
        .get(home.url("/api/v1/silences"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert!(!silences.to_string().contains("pwned"), "{silences}");
    assert!(
        silences.to_string().contains("from the browser"),
        "{silences}"
    );

    // Logging out ends the session.
    b.open(&home.url("/ui/alerts"), ".logout button").await;
    b.click(".logout button").await;
    b.wait_for("#login-form").await;
    let r = http
        .get(home.url("/api/v1/alerts"))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401, "the session is gone");
    b.close().await;
    daemon.kill();
}
