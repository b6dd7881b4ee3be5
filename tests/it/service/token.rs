//! Reloading the config of the real binary: a rotated `admin_token` is in
//! force at once (old token 401, new 200), and a key that only a restart
//! can apply is refused, named, with the running config kept.

use std::time::{Duration, Instant};

use super::daemon::Home;

async fn alerts_status(client: &reqwest::Client, home: &Home, token: &str) -> u16 {
    client
        .get(home.url("/api/v1/alerts"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /api/v1/alerts")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_the_admin_token_and_refuses_restart_only_keys() {
    let home = Home::new::<&str, &str>(&[], "[server]\nadmin_token = \"old-token\"\n");
    let daemon = home.start().await;
    let client = reqwest::Client::new();
    assert_eq!(alerts_status(&client, &home, "old-token").await, 200);
    assert_eq!(alerts_status(&client, &home, "new-token").await, 401);

    home.write_config("[server]\nadmin_token = \"new-token\"\n");
    daemon.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(15);
    while alerts_status(&client, &home, "new-token").await != 200 {
        assert!(
            Instant::now() < deadline,
            "new token not accepted after SIGHUP; stderr:\n{}",
            home.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(alerts_status(&client, &home, "old-token").await, 401);

    // The engine queue is sized at start: a reload cannot apply it.
    home.write_config("[server]\nadmin_token = \"third-token\"\nqueue_capacity = 8\n");
    let r = client
        .post(home.url("/api/v1/reload"))
        .bearer_auth("new-token")
        .send()
        .await
        .expect("POST /api/v1/reload");
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.expect("reload answer");
    let errors = body["errors"].to_string();
    assert!(
        errors.contains("restart required: server.queue_capacity"),
        "{body}"
    );
    assert!(
        errors.contains("server.admin_token"),
        "lists the live keys: {body}"
    );
    // Nothing of the refused reload was applied.
    assert_eq!(alerts_status(&client, &home, "new-token").await, 200);
    assert_eq!(alerts_status(&client, &home, "third-token").await, 401);
}
