//! The `callwatch` binary: parses the command line, sets up logging, loads
//! the config and calls into the library. Exit codes: 0 ok, 1 user error
//! (bad config, bad rule, bad input file), 2 runtime failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use callwatch::config::{Config, LogConfig, LogFormat};

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
    },
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

fn init_logging(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr; stdout belongs to the `log` receiver and replay output.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
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
            let config = Config::load(config.as_deref())?;
            init_logging(&config.log);
            let rt = tokio::runtime::Runtime::new().map_err(|e| Failure::Runtime(e.into()))?;
            rt.block_on(callwatch::app::run(config, shutdown_signal()))
                .map_err(Failure::Runtime)
        }
        Command::Check { config } => {
            let config = Config::load(config.as_deref())?;
            println!(
                "config ok: {} receiver(s), {} route(s), {} app(s)",
                config.receivers.len(),
                config.routes.len(),
                config.apps.len()
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
