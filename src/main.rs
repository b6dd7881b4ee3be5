//! The `callwatch` binary: parses the command line, sets up logging, loads
//! the config and calls into the library. Exit codes: 0 ok, 1 user error
//! (bad config, bad rule, bad input file), 2 runtime failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use callwatch::config::{Config, LogConfig};
use callwatch::startup::init_logging;

// The daemon allocates many small, short-lived objects per callback (JSON
// values, event strings); mimalloc handles that pattern markedly faster
// than the system allocator (see BENCHMARKS.md, Recovery).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rule-based alerting for Tencent RTC (TUICallKit) call callbacks.
///
/// callwatch receives TUICallKit call callbacks, keeps sliding windows of
/// call events per user, platform or app, runs Rhai rules over them and
/// notifies by email, webhook or chat when a rule fires and resolves.
#[derive(Parser)]
#[command(name = "callwatch", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (receive callbacks, evaluate rules, notify).
    Run {
        /// Config file [default: config/callwatch.toml if present, else built-in defaults]
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Check the config and every rule; print `path:line:col: message` per problem.
    Check {
        /// Config file [default: config/callwatch.toml if present, else built-in defaults]
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Rules directory [default: rules.dir from the config]
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
    },
    /// Feed recorded callbacks through the rules offline, in event time, and
    /// print one JSON line per alert that fires, repeats or resolves.
    Replay {
        /// Config file [default: config/callwatch.toml if present, else built-in defaults]
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Rules directory [default: rules.dir from the config]
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// After the output, print a table per rule on stderr: alerts fired,
        /// repeated and resolved, keys, failed evaluations, time in `check`
        #[arg(long)]
        summary: bool,
        /// Read the cluster's JetStream stream (the config's `[cluster]`)
        /// instead of files
        #[arg(long, conflicts_with = "files")]
        stream: bool,
        /// With --stream: only callbacks stored this long ago or later (e.g. 6h)
        #[arg(long, value_name = "DURATION", requires = "stream", value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Recorded callbacks, one JSON object per line, plain or gzipped (`-` = stdin)
        #[arg(required_unless_present = "stream", value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Write the cluster's stream of accepted callbacks to stdout as
    /// recorded callbacks (one JSON line each), as `replay` reads them.
    Export {
        /// Config file [default: config/callwatch.toml if present, else built-in defaults]
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Only callbacks stored this long ago or later (e.g. 6h) [default: the whole stream]
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
    },
    /// Run rule tests (`*.test.toml` files; a directory means every such
    /// file under it) and print PASS or FAIL per file.
    Test {
        /// Config file [default: config/callwatch.toml if present, else built-in defaults]
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Test files or directories of them
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Write realistic TUICallKit callback traffic as recorded callbacks
    /// (one JSON line each), with injected anomalies, or post it to a
    /// running callwatch. A summary goes to stderr.
    Simulate(callwatch::simulate::cli::SimulateArgs),
    /// Send a clearly marked test notification through one receiver and
    /// report the outcome.
    NotifyTest {
        /// Config file [default: config/callwatch.toml if present, else built-in defaults]
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Name of a `[[receivers]]` entry
        receiver: String,
    },
    /// List a running daemon's active alerts (admin API).
    Alerts {
        #[command(flatten)]
        api: callwatch::client::ApiArgs,
        /// Print the API's JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Add, list or expire silences on a running daemon (admin API).
    Silence {
        #[command(subcommand)]
        command: callwatch::client::SilenceCommand,
    },
    /// Print a shell completion script (for packaging).
    #[command(hide = true)]
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Print the man page, in roff (for packaging).
    #[command(hide = true)]
    Man,
}

/// How a command failed, which decides the exit code.
enum Failure {
    /// Bad config, rule or input: exit 1.
    User(String),
    /// Anything else: exit 2.
    Runtime(anyhow::Error),
}

impl From<callwatch::config::ConfigError> for Failure {
    fn from(e: callwatch::config::ConfigError) -> Self {
        Failure::User(e.to_string())
    }
}

impl From<callwatch::client::ClientError> for Failure {
    fn from(e: callwatch::client::ClientError) -> Self {
        if e.is_user_error() {
            Failure::User(e.to_string())
        } else {
            Failure::Runtime(e.into())
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Run { config } => {
            let path = config;
            let config = Config::load(path.as_deref())?;
            init_logging(&config.log);
            // Receiver problems (bad URL, bad address) are config errors.
            callwatch::notify::Receivers::from_config(&config)
                .map_err(|e| Failure::User(e.to_string()))?;
            let rt = tokio::runtime::Runtime::new().map_err(|e| Failure::Runtime(e.into()))?;
            let source = callwatch::app::ConfigSource::Load(path);
            rt.block_on(callwatch::app::run(config, source, shutdown_signal()))
                .map_err(|e| match e.downcast::<callwatch::startup::SetupError>() {
                    Ok(setup) => Failure::User(setup.0),
                    Err(e) => Failure::Runtime(e),
                })
        }
        Command::Check { config, rules } => {
            let mut config = Config::load(config.as_deref()).map_err(|e| {
                // `check` prints problems on stdout, one per line.
                println!("{e}");
                Failure::User(String::from("config has errors"))
            })?;
            if let Some(dir) = rules {
                config.rules.dir = dir;
            }
            let mut problems: Vec<String> = Vec::new();
            if let Err(e) = callwatch::notify::Receivers::from_config(&config) {
                problems.push(format!("config: {e}"));
            }
            let rules = match callwatch::app::load_rules(&config) {
                Ok(r) => r,
                Err(errs) => {
                    problems.extend(errs.iter().map(ToString::to_string));
                    Vec::new()
                }
            };
            // Warnings do not fail the check; they are printed first.
            for w in rules.iter().flat_map(|r| r.warnings()) {
                println!("{w}");
            }
            if !problems.is_empty() {
                for p in &problems {
                    println!("{p}");
                }
                return Err(Failure::User(format!(
                    "{} problem(s) found",
                    problems.len()
                )));
            }
            println!(
                "ok: {} rule(s), {} receiver(s), {} route(s), {} app(s)",
                rules.len(),
                config.receivers.len(),
                config.routes.len(),
                config.apps.len()
            );
            Ok(())
        }
        Command::Replay {
            config,
            rules,
            summary,
            stream,
            since,
            files,
        } => {
            let mut config = Config::load(config.as_deref())?;
            init_logging(&LogConfig {
                level: "warn".into(),
                ..config.log.clone()
            });
            if let Some(dir) = rules {
                config.rules.dir = dir;
            }
            let rules = callwatch::app::load_rules(&config).map_err(|errs| {
                let lines: Vec<String> = errs.iter().map(ToString::to_string).collect();
                Failure::User(lines.join("\n"))
            })?;
            let progress =
                callwatch::progress::Progress::for_bytes(callwatch::replay::total_size(&files));
            let inputs = if stream {
                vec![open_stream(&config, since)?]
            } else {
                callwatch::replay::open_all(&files, &progress)
                    .map_err(|e| Failure::User(e.to_string()))?
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let result =
                callwatch::replay::replay_with(&config, rules, inputs, &mut out, &progress);
            progress.finish();
            let report = result.map_err(|e| match e {
                callwatch::replay::ReplayError::Input(m) => Failure::User(m),
                other => Failure::Runtime(other.into()),
            })?;
            for name in &report.empty_inputs {
                eprintln!("callwatch: warning: {name}: no callbacks in this input");
            }
            if summary {
                eprint!("{}", callwatch::replay::summary_table(&report));
            }
            // Script errors were contained (each is logged as it happens);
            // say once per rule how many there were, and fail the run, so a
            // failing rule is not mistaken for a quiet one.
            eprint!("{}", callwatch::replay::error_report(&report));
            match report.errors() {
                0 => Ok(()),
                n => Err(Failure::User(format!(
                    "{n} rule evaluation(s) failed (those rules' alerts may be missing above)"
                ))),
            }
        }
        Command::Export { config, since } => {
            let config = Config::load(config.as_deref())?;
            init_logging(&LogConfig {
                level: "warn".into(),
                ..config.log.clone()
            });
            let (_, mut lines) = open_stream(&config, since)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            std::io::copy(&mut lines, &mut out)
                .and_then(|_| std::io::Write::flush(&mut out))
                .map_err(|e| Failure::Runtime(anyhow::anyhow!("exporting the stream: {e}")))?;
            Ok(())
        }
        Command::Test { config, paths } => {
            let config = Config::load(config.as_deref())?;
            init_logging(&LogConfig {
                level: "warn".into(),
                ..config.log.clone()
            });
            let files = callwatch::ruletest::collect(&paths).map_err(Failure::User)?;
            let stdout = std::io::stdout();
            let summary = callwatch::ruletest::run(
                &config,
                &files,
                &mut stdout.lock(),
                &mut std::io::stderr(),
            )
            .map_err(|e| Failure::Runtime(e.into()))?;
            if summary.ok() {
                return Ok(());
            }
            Err(Failure::User(format!(
                "{} of {} test file(s) failed ({} could not run, {} had script errors)",
                summary.failed + summary.broken,
                files.len(),
                summary.broken,
                summary.with_script_errors,
            )))
        }
        Command::Completions { shell } => {
            let mut out = std::io::stdout();
            clap_complete::generate(shell, &mut Cli::command(), "callwatch", &mut out);
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(|e| Failure::Runtime(e.into())),
        Command::Alerts { api, json } => Ok(callwatch::client::alerts(&api, json)?),
        Command::Silence { command } => Ok(callwatch::client::silence(&command)?),
        Command::Simulate(args) => {
            use callwatch::simulate::cli::{run, SimulateError};
            run(args).map_err(|e| match e {
                SimulateError::User(m) => Failure::User(m),
                SimulateError::Runtime(e) => Failure::Runtime(e),
            })
        }
        Command::NotifyTest { config, receiver } => {
            let config = Config::load(config.as_deref())?;
            init_logging(&config.log);
            let receivers = callwatch::notify::Receivers::from_config(&config)
                .map_err(|e| Failure::User(e.to_string()))?;
            let Some(r) = receivers.get(&receiver) else {
                let known: Vec<&str> = receivers.iter().map(|r| r.name()).collect();
                return Err(Failure::User(format!(
                    "no receiver named {receiver:?} (configured: {})",
                    known.join(", ")
                )));
            };
            let rt = tokio::runtime::Runtime::new().map_err(|e| Failure::Runtime(e.into()))?;
            match rt.block_on(callwatch::notify::notify_test(r)) {
                Ok(()) => {
                    println!("ok: test notification sent via {}", r.describe());
                    Ok(())
                }
                Err(e) => Err(Failure::Runtime(anyhow::anyhow!(
                    "test notification via {} failed: {e}",
                    r.describe()
                ))),
            }
        }
    }
}

/// The cluster's stream as a replay input (`replay --stream`, `export`).
fn open_stream(
    config: &Config,
    since: Option<std::time::Duration>,
) -> Result<callwatch::replay::Input, Failure> {
    let Some(cluster) = &config.cluster else {
        return Err(Failure::User(
            "reading the stream needs a [cluster] section in the config (docs/cluster.md)".into(),
        ));
    };
    let reader = callwatch::cluster::export::open(cluster, since)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!(e)))?;
    Ok((format!("stream {}", cluster.stream), reader))
}

fn main() -> ExitCode {
    // A usage error is a user error (exit 1), not clap's default 2.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::User(msg)) => {
            eprintln!("callwatch: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("callwatch: {e:#}");
            ExitCode::from(2)
        }
    }
}
