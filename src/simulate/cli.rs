//! The `callwatch simulate` command line: its options, their checks (a bad
//! anomaly, family or start is a user error, exit 1), and writing or
//! posting the trace with the summary on stderr.

use std::io::Write;
use std::path::PathBuf;

use super::post::{post_trace, PostOptions};
use super::{write_trace, Anomaly, Family, SimOptions};

/// Options of `callwatch simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Random seed: the same options and seed give the same bytes
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Calls to place
    #[arg(long, default_value_t = 1000)]
    pub calls: u64,
    /// Mean calls started per second
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Distinct users (u0001, u0002, ...)
    #[arg(long, default_value_t = 200)]
    pub users: u32,
    /// Unix seconds of the trace's start, or `now` [default: 1767225600, 2026-01-01 UTC]
    #[arg(long, value_name = "UNIX|now")]
    pub start: Option<String>,
    /// SDKAppID the callbacks carry
    #[arg(long, default_value_t = 1_400_000_001)]
    pub sdkappid: u64,
    /// Callback family: a (legacy call events), b (IM-style) or mixed
    #[arg(long, default_value = "mixed", value_name = "a|b|mixed")]
    pub family: String,
    /// Inject a problem, e.g. `offline:user=u0042:from=600:to=1500` (repeatable; see docs/simulate.md)
    #[arg(long, value_name = "ANOMALY")]
    pub anomaly: Vec<String>,
    /// Probability that a callback is delivered again, as Tencent retries
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub retries: f64,
    /// Write the trace here instead of stdout
    #[arg(long, value_name = "FILE", conflicts_with = "post")]
    pub out: Option<PathBuf>,
    /// Send the callbacks to a running callwatch (e.g. http://127.0.0.1:8080/callback), paced in real time
    #[arg(long, value_name = "URL")]
    pub post: Option<String>,
    /// With --post: simulated seconds per second of wall clock
    #[arg(long, default_value_t = 1.0, value_name = "F", requires = "post")]
    pub speed: f64,
    /// With --post: the app's token; requests are signed with it
    #[arg(long, value_name = "T", requires = "post")]
    pub token: Option<String>,
    /// With --post: requests in flight at most
    #[arg(long, default_value_t = 32, value_name = "N", requires = "post")]
    pub concurrency: usize,
}

/// How the command failed: bad options or refused callbacks (exit 1), or
/// something else (exit 2).
#[derive(Debug)]
pub enum SimulateError {
    User(String),
    Runtime(anyhow::Error),
}

use crate::time::now_secs;

impl SimulateArgs {
    /// The options, checked.
    pub fn options(&self) -> Result<SimOptions, String> {
        let start = match self.start.as_deref().map(str::trim) {
            None => super::DEFAULT_START,
            Some("now") => now_secs(),
            Some(s) => s
                .parse()
                .map_err(|_| format!("--start {s:?}: expected Unix seconds or `now`"))?,
        };
        let anomalies = self
            .anomaly
            .iter()
            .map(|a| a.parse::<Anomaly>())
            .collect::<Result<Vec<_>, _>>()?;
        let opts = SimOptions {
            seed: self.seed,
            calls: self.calls,
            rate: self.rate,
            users: self.users,
            start,
            sdkappid: self.sdkappid,
            family: self
                .family
                .parse::<Family>()
                .map_err(|e| format!("--{e}"))?,
            anomalies,
            retries: self.retries,
        };
        opts.validate()?;
        Ok(opts)
    }
}

/// Runs `callwatch simulate`.
pub fn run(args: SimulateArgs) -> Result<(), SimulateError> {
    let mut opts = args.options().map_err(SimulateError::User)?;
    if let Some(url) = &args.post {
        if args.start.as_deref().is_some_and(|s| s.trim() != "now") {
            return Err(SimulateError::User(
                "--start cannot be used with --post: posted event times are now".into(),
            ));
        }
        opts.start = now_secs();
        let post = PostOptions {
            url: url.clone(),
            speed: args.speed,
            token: args.token.clone(),
            concurrency: args.concurrency,
        };
        let rt = tokio::runtime::Runtime::new().map_err(|e| SimulateError::Runtime(e.into()))?;
        let report = rt
            .block_on(post_trace(&opts, &post))
            .map_err(SimulateError::User)?;
        eprint!("{}", report.summary);
        let reasons: Vec<String> = report
            .reasons
            .iter()
            .map(|(why, n)| format!("{why}: {n}"))
            .collect();
        if reasons.is_empty() {
            println!("accepted {}, refused 0", report.accepted);
        } else {
            println!(
                "accepted {}, refused {} ({})",
                report.accepted,
                report.refused,
                reasons.join(", ")
            );
        }
        if report.refused > 0 {
            return Err(SimulateError::User(format!(
                "{} callback(s) refused",
                report.refused
            )));
        }
        return Ok(());
    }
    // A spinner with callbacks written and their rate, on stderr when it
    // is a terminal (nothing when piped, as in tests and CI).
    let progress = crate::progress::Progress::for_bytes(None);
    let summary = match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| SimulateError::User(format!("{}: {e}", path.display())))?;
            let mut file = Counted::new(file, &progress);
            write_trace(&opts, &mut file)
                .map_err(|e| SimulateError::Runtime(anyhow::anyhow!("{}: {e}", path.display())))?
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = Counted::new(stdout.lock(), &progress);
            match write_trace(&opts, &mut out) {
                Ok(s) => s,
                // A closed pipe (`simulate | head`) is the reader's choice.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(SimulateError::Runtime(anyhow::anyhow!("stdout: {e}"))),
            }
        }
    };
    progress.finish();
    let _ = std::io::stderr().write_all(summary.to_string().as_bytes());
    Ok(())
}

/// A writer that counts the lines (callbacks) going through it into a
/// progress display, redrawn every few thousand lines.
struct Counted<'a, W> {
    inner: W,
    lines: u64,
    progress: &'a crate::progress::Progress,
}

impl<'a, W: Write> Counted<'a, W> {
    fn new(inner: W, progress: &'a crate::progress::Progress) -> Self {
        Counted {
            inner,
            lines: 0,
            progress,
        }
    }
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let before = self.lines;
        self.lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        if self.progress.is_visible() && before / 8192 != self.lines / 8192 {
            self.progress.update(self.lines, "callbacks");
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
