//! The command-line clients of a running daemon's admin API:
//! `callwatch alerts` and `callwatch silence add|ls|expire`. They find the
//! daemon at `--url` (default `http://` + `server.listen`) and send
//! `--token` (default `server.admin_token`) as the bearer token. This
//! module owns the HTTP calls, the matcher syntax and the errors an
//! operator sees; the tables are in `table`. It never touches the
//! daemon's state directly.

mod table;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Config;
use crate::store::Matcher;

/// Where the admin API is and how to authenticate (shared by every
/// client command).
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// Config file to take server.listen and server.admin_token from [default: config/callwatch.toml if present, else built-in defaults]
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Base URL of the daemon [default: http:// + server.listen]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Bearer token for the admin API [default: server.admin_token]
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

/// `callwatch silence ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SilenceCommand {
    /// Silence the alerts matching every matcher; prints the new id.
    Add {
        #[command(flatten)]
        api: ApiArgs,
        /// NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX (regexes match the whole value)
        #[arg(required = true, value_name = "MATCHER")]
        matchers: Vec<String>,
        /// How long the silence lasts, from now (e.g. 90m, 2h, 1d)
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        duration: String,
        /// Why (shown in the list and to whoever wonders where the alerts went)
        #[arg(long, value_name = "TEXT")]
        comment: String,
        /// Who [default: $USER]
        #[arg(long, value_name = "NAME")]
        author: Option<String>,
    },
    /// List silences (active and pending; --all adds expired ones).
    Ls {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON instead of a table
        #[arg(long)]
        json: bool,
        /// Include expired silences
        #[arg(long)]
        all: bool,
    },
    /// Expire silences now (an id, or a prefix of one that is unique).
    Expire {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
}

/// What went wrong, worded for the operator at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad arguments or config: exit 1.
    #[error("{0}")]
    Usage(String),
    /// Nothing answered at the URL: exit 2.
    #[error("cannot reach callwatch at {url}: {reason} (is `callwatch run` up there? --url sets where to look)")]
    Unreachable { url: String, reason: String },
    /// The daemon refused the token or the client: exit 1.
    #[error("{url}: {message} ({status}); pass the admin token with --token or set server.admin_token in the config")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    /// Any other error answer: exit 1 for 4xx, 2 for 5xx.
    #[error("{url}: {message} ({status})")]
    Api {
        url: String,
        status: u16,
        message: String,
    },
    /// An answer that is not what the API sends: exit 2.
    #[error("{url}: unexpected answer: {message}")]
    BadAnswer { url: String, message: String },
}

impl ClientError {
    /// Whether the operator can fix it by changing the command or config
    /// (exit 1) rather than it being a runtime failure (exit 2).
    pub fn is_user_error(&self) -> bool {
        match self {
            ClientError::Usage(_) | ClientError::Refused { .. } => true,
            ClientError::Api { status, .. } => *status < 500,
            ClientError::Unreachable { .. } | ClientError::BadAnswer { .. } => false,
        }
    }
}

/// A client of one daemon's admin API.
struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// `http://` + `listen`, with a wildcard address replaced by loopback
/// (a daemon listening on every interface is reachable there).
fn default_url(config: &Config) -> Result<String, ClientError> {
    let mut addr = config
        .listen_addr()
        .map_err(|e| ClientError::Usage(e.to_string()))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(format!("http://{addr}"))
}

impl Client {
    fn new(args: &ApiArgs) -> Result<Client, ClientError> {
        // The config is read only for what the flags leave open.
        let config = if args.url.is_none() || args.token.is_none() {
            Some(
                Config::load(args.config.as_deref())
                    .map_err(|e| ClientError::Usage(e.to_string()))?,
            )
        } else {
            None
        };
        let base = match (&args.url, &config) {
            (Some(u), _) => u.trim_end_matches('/').to_string(),
            (None, Some(c)) => default_url(c)?,
            // Not reached: the config is loaded whenever --url is missing.
            (None, None) => return Err(ClientError::Usage("--url is needed".into())),
        };
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| ClientError::Usage(format!("--url {base:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::Usage(format!(
                "--url {base:?}: expected an http:// or https:// URL"
            )));
        }
        let token = match (&args.token, &config) {
            (Some(t), _) => t.clone(),
            (None, Some(c)) => c.server.admin_token.clone(),
            (None, None) => String::new(),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| ClientError::Usage(format!("HTTP client: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Usage(format!("runtime: {e}")))?;
        Ok(Client {
            base,
            token,
            http,
            rt,
        })
    }

    /// One admin API call; the JSON answer of a 2xx, else the error the
    /// answer's `{"error"}` names.
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        self.rt.block_on(async {
            let resp = req.send().await.map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: send_failure(&e),
            })?;
            let status = resp.status().as_u16();
            let text = resp.text().await.map_err(|e| ClientError::BadAnswer {
                url: url.clone(),
                message: e.to_string(),
            })?;
            let value: Option<Value> = serde_json::from_str(&text).ok();
            if (200..300).contains(&status) {
                return value.ok_or_else(|| ClientError::BadAnswer {
                    url: url.clone(),
                    message: format!("not JSON: {}", clip(&text)),
                });
            }
            let message = value
                .as_ref()
                .and_then(|v| v["error"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| clip(&text));
            Err(match status {
                401 | 403 => ClientError::Refused {
                    url,
                    status,
                    message,
                },
                _ => ClientError::Api {
                    url,
                    status,
                    message,
                },
            })
        })
    }

    fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call(reqwest::Method::GET, path, None)
    }
}

/// The first 200 characters of an unexpected answer.
fn clip(text: &str) -> String {
    let t: String = text.trim().chars().take(200).collect();
    if t.is_empty() {
        "(empty answer)".into()
    } else {
        t
    }
}

/// Why a request got no answer, in a few words ("connection refused").
fn send_failure(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer within 15 s".into();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                _ => io.to_string(),
            };
        }
        last = s.to_string();
        source = s.source();
    }
    last
}

/// Parses `NAME=VALUE`, `NAME!=VALUE`, `NAME=~REGEX` or `NAME!~REGEX`
/// (amtool's syntax; a value may be in double quotes).
pub fn parse_matcher(arg: &str) -> Result<Matcher, String> {
    let syntax =
        || format!("matcher {arg:?}: expected NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX");
    let end = arg
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .ok_or_else(syntax)?;
    let (name, rest) = arg.split_at(end);
    if name.is_empty() {
        return Err(syntax());
    }
    let (is_equal, is_regex, value) = if let Some(v) = rest.strip_prefix("=~") {
        (true, true, v)
    } else if let Some(v) = rest.strip_prefix("!~") {
        (false, true, v)
    } else if let Some(v) = rest.strip_prefix("!=") {
        (false, false, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (true, false, v)
    } else {
        return Err(syntax());
    };
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    if is_regex {
        regex::Regex::new(value).map_err(|e| format!("matcher {arg:?}: invalid regex: {e}"))?;
    }
    Ok(Matcher::new(name, value, is_regex, is_equal))
}

use crate::time::now_secs;

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn array<'v>(v: &'v Value, url: &str) -> Result<&'v Vec<Value>, ClientError> {
    v.as_array().ok_or_else(|| ClientError::BadAnswer {
        url: url.to_string(),
        message: "expected a JSON array".into(),
    })
}

/// `callwatch alerts [--json]`: the daemon's active alerts.
pub fn alerts(api: &ApiArgs, as_json: bool) -> Result<(), ClientError> {
    let client = Client::new(api)?;
    let answer = client.get("/api/v1/alerts")?;
    let alerts = array(&answer["alerts"], "/api/v1/alerts")?;
    if as_json {
        print_json(&answer["alerts"]);
    } else if alerts.is_empty() {
        println!("no active alerts");
    } else {
        print!("{}", table::alerts(alerts, now_secs()));
    }
    Ok(())
}

/// `callwatch silence add|ls|expire`.
pub fn silence(command: &SilenceCommand) -> Result<(), ClientError> {
    match command {
        SilenceCommand::Add {
            api,
            matchers,
            duration,
            comment,
            author,
        } => {
            let matchers = matchers
                .iter()
                .map(|m| parse_matcher(m))
                .collect::<Result<Vec<_>, _>>()
                .map_err(ClientError::Usage)?;
            let lasts = humantime::parse_duration(duration)
                .map_err(|e| ClientError::Usage(format!("--duration {duration:?}: {e}")))?;
            if lasts.is_zero() {
                return Err(ClientError::Usage("--duration must be more than 0".into()));
            }
            let author = author
                .clone()
                .or_else(|| std::env::var("USER").ok())
                .or_else(|| std::env::var("LOGNAME").ok())
                .unwrap_or_else(|| "callwatch".into());
            let ends_at = now_secs().saturating_add(lasts.as_secs().max(1) as i64);
            let body = json!({
                "matchers": matchers,
                "endsAt": crate::time::format_rfc3339(ends_at),
                "createdBy": author,
                "comment": comment,
            });
            let client = Client::new(api)?;
            let answer = client.call(reqwest::Method::POST, "/api/v1/silences", Some(&body))?;
            let id = answer["silenceID"]
                .as_str()
                .ok_or_else(|| ClientError::BadAnswer {
                    url: format!("{}/api/v1/silences", client.base),
                    message: "no silenceID".into(),
                })?;
            println!("{id}");
            Ok(())
        }
        SilenceCommand::Ls { api, json, all } => {
            let client = Client::new(api)?;
            let answer = client.get("/api/v1/silences")?;
            let mut list: Vec<Value> = array(&answer, "/api/v1/silences")?
                .iter()
                .filter(|s| *all || s["status"]["state"] != "expired")
                .cloned()
                .collect();
            list.sort_by(|a, b| a["endsAt"].as_str().cmp(&b["endsAt"].as_str()));
            if *json {
                print_json(&Value::from(list));
            } else if list.is_empty() {
                println!("no silences{}", if *all { "" } else { " in effect" });
            } else {
                print!("{}", table::silences(&list, now_secs()));
            }
            Ok(())
        }
        SilenceCommand::Expire { api, ids } => {
            let client = Client::new(api)?;
            let answer = client.get("/api/v1/silences")?;
            let known: Vec<&str> = array(&answer, "/api/v1/silences")?
                .iter()
                .filter_map(|s| s["id"].as_str())
                .collect();
            for arg in ids {
                let id = resolve_id(&known, arg)?;
                let path = format!("/api/v1/silences/{id}");
                client.call(reqwest::Method::DELETE, &path, None)?;
                println!("expired {id}");
            }
            Ok(())
        }
    }
}

/// The silence id `arg` names: itself, or the one id it is a prefix of.
fn resolve_id<'a>(known: &[&'a str], arg: &str) -> Result<&'a str, ClientError> {
    if let Some(id) = known.iter().find(|id| **id == arg) {
        return Ok(id);
    }
    let matches: Vec<&str> = known
        .iter()
        .filter(|id| !arg.is_empty() && id.starts_with(arg))
        .copied()
        .collect();
    match matches[..] {
        [id] => Ok(id),
        [] => Err(ClientError::Usage(format!(
            "no silence {arg:?} (`callwatch silence ls --all` lists them)"
        ))),
        _ => Err(ClientError::Usage(format!(
            "{arg:?} is the start of {} silence ids; give more of it",
            matches.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_syntax() {
        let ok = |s: &str| parse_matcher(s).expect(s);
        assert_eq!(
            ok("platform=Android"),
            Matcher::new("platform", "Android", false, true)
        );
        assert_eq!(
            ok("platform!=iOS"),
            Matcher::new("platform", "iOS", false, false)
        );
        assert_eq!(
            ok("user_id=~u00.*"),
            Matcher::new("user_id", "u00.*", true, true)
        );
        assert_eq!(
            ok("user_id!~\"a|b\""),
            Matcher::new("user_id", "a|b", true, false)
        );
        // Only the first operator counts; the value may hold more.
        assert_eq!(
            ok("summary=a=b"),
            Matcher::new("summary", "a=b", false, true)
        );
        assert_eq!(ok("team="), Matcher::new("team", "", false, true));
        for bad in ["platform", "=x", "platform~x", "a b=c"] {
            let err = parse_matcher(bad).unwrap_err();
            assert!(err.contains("NAME=VALUE"), "{bad}: {err}");
        }
        let err = parse_matcher("user_id=~(").unwrap_err();
        assert!(err.contains("invalid regex"), "{err}");
    }

    #[test]
    fn ids_resolve_by_unique_prefix() {
        let known = ["abc123", "abd456", "ff"];
        assert_eq!(resolve_id(&known, "abc123").expect("exact"), "abc123");
        assert_eq!(resolve_id(&known, "abd").expect("prefix"), "abd456");
        assert!(resolve_id(&known, "ab").is_err());
        assert!(resolve_id(&known, "zz").is_err());
        assert!(resolve_id(&known, "").is_err());
    }

    #[test]
    fn wildcard_listen_addresses_are_reached_on_loopback() {
        let mut c = Config::default();
        c.server.listen = "0.0.0.0:9090".into();
        assert_eq!(default_url(&c).expect("url"), "http://127.0.0.1:9090");
        c.server.listen = "[::]:9090".into();
        assert_eq!(default_url(&c).expect("url"), "http://[::1]:9090");
        c.server.listen = "10.1.2.3:8080".into();
        assert_eq!(default_url(&c).expect("url"), "http://10.1.2.3:8080");
    }
}
