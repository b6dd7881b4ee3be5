//! A real headless Chromium driven over WebDriver: chromedriver started
//! by the test on a free port, a fresh profile per browser, the flags
//! that keep Chromium from reaching for the network (this machine has
//! none, and it would stall), the browser's console log read back
//! through chromedriver, and screenshots at phone and desktop widths.
//!
//! Needs Debian's `chromium` and `chromium-driver`. Without them the
//! tests skip loudly, unless `CALLWATCH_REQUIRE_CHROMIUM` is set (CI),
//! which makes that a failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// Phone and desktop widths every page is shot at.
pub const WIDTHS: [u32; 2] = [360, 1440];

pub struct Browser {
    pub client: Client,
    driver: Child,
    driver_url: String,
    session: String,
    _profile: tempfile::TempDir,
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

impl Browser {
    /// A browser, or `None` (with a loud message) when Chromium or its
    /// driver is missing and nobody required them.
    pub async fn start_or_skip() -> Option<Browser> {
        let chromium = which(&["chromium", "chromium-browser"]);
        let driver = which(&["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let msg = "chromium and chromedriver are needed (apt-get install -y chromium chromium-driver)";
            if std::env::var_os("CALLWATCH_REQUIRE_CHROMIUM").is_some() {
                panic!("CALLWATCH_REQUIRE_CHROMIUM is set but {msg}");
            }
            eprintln!("\n!!! SKIPPED console browser test: {msg} !!!\n");
            return None;
        };
        Some(Browser::start(&chromium, &driver).await)
    }

    async fn start(chromium: &std::path::Path, driver: &std::path::Path) -> Browser {
        let port = super::super::service::daemon::free_addr("127.0.0.1").port();
        let mut child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let driver_url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{driver_url}/status"))
                .send()
                .await
                .ok()
                .and_then(|r| r.status().is_success().then_some(()))
                .is_some();
            if ready {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("chromedriver exited with {status}");
            }
            assert!(Instant::now() < deadline, "chromedriver not ready in 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1440,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("an object literal"),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver_url)
            .await
            .expect("a chromium session");
        let session = client
            .session_id()
            .await
            .expect("session id")
            .expect("a session");
        Browser {
            client,
            driver: child,
            driver_url,
            session,
            _profile: profile,
        }
    }

    /// The browser console's entries since the last call, as
    /// `LEVEL source: message`, errors (SEVERE) only.
    pub async fn console_errors(&self) -> Vec<String> {
        let r: serde_json::Value = reqwest::Client::new()
            .post(format!(
                "{}/session/{}/se/log",
                self.driver_url, self.session
            ))
            .json(&serde_json::json!({"type": "browser"}))
            .send()
            .await
            .expect("read the browser log")
            .json()
            .await
            .expect("log as JSON");
        r["value"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| format!("{} {}: {}", e["level"], e["source"], e["message"]))
            .collect()
    }

    /// Opens `url` and waits until `css` is on the page.
    pub async fn open(&self, url: &str, css: &str) {
        self.client.goto(url).await.expect("goto");
        self.wait_for(css).await;
    }

    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css:?} on the page: {e}"))
    }

    /// Waits until the text of `css` satisfies `ok`; returns it.
    pub async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = String::new();
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                last = e.text().await.unwrap_or_default();
                if ok(&last) {
                    return last;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{css:?} never showed {what}; last text: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the element `css` selects.
    pub async fn click(&self, css: &str) {
        self.wait_for(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css:?}: {e}"));
    }

    /// Sets a form field's value as a paste would (typing a whole rule
    /// key by key is slow and fights the editor's auto-indent).
    pub async fn set_value(&self, css: &str, value: &str) {
        self.client
            .execute(
                "const e = document.querySelector(arguments[0]); e.value = arguments[1]; \
                 e.dispatchEvent(new Event('input', {bubbles: true}));",
                vec![css.into(), value.into()],
            )
            .await
            .expect("set value");
    }

    /// Screenshots of the page at both widths, to
    /// `target/console-screenshots/{name}-{width}.png`.
    pub async fn shoot(&self, name: &str) {
        self.shoot_at(name, None).await
    }

    /// Like [`Browser::shoot`], with the element `css` scrolled into view
    /// (what a page shows below the fold after an action).
    pub async fn shoot_at(&self, name: &str, css: Option<&str>) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        for w in WIDTHS {
            self.client
                .set_window_size(w, 900)
                .await
                .expect("window size");
            if let Some(css) = css {
                self.client
                    .execute(
                        "document.querySelector(arguments[0]).scrollIntoView();",
                        vec![css.into()],
                    )
                    .await
                    .expect("scroll");
            }
            let png = self.client.screenshot().await.expect("screenshot");
            std::fs::write(dir.join(format!("{name}-{w}.png")), png).expect("write screenshot");
        }
        self.client
            .set_window_size(1440, 900)
            .await
            .expect("window size");
    }

    /// Whether the page's content is wider than a 360 px viewport (it
    /// must not be: on a phone that is sideways scrolling).
    pub async fn overflows_phone(&self) -> bool {
        self.client
            .set_window_size(360, 800)
            .await
            .expect("window size");
        let wide = self
            .client
            .execute(
                "return document.documentElement.scrollWidth > document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .expect("measure");
        self.client
            .set_window_size(1440, 900)
            .await
            .expect("window size");
        wide.as_bool().unwrap_or(true)
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test never reaches `close`: end the session (which
        // quits Chromium) by hand, so no browser outlives the test.
        if let Some(addr) = self.driver_url.strip_prefix("http://") {
            if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = write!(
                    s,
                    "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                    self.session
                );
                let _ = s.read(&mut [0u8; 512]);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
