//! The `hookline` command: parse the command line, load the configuration, run.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use hookline::{Application, config::Config, graphql, telemetry::Telemetry};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "hookline", version, about = "A webhook server: item events to signed, retried HTTP deliveries")]
struct Cli {
    /// A TOML configuration file; HOOKLINE_* environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API and the workers (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Run the delivery benchmark against a fresh server process and print figures.
    Bench(hookline::bench::BenchArgs),
    /// Verify a received webhook's signature: the body on stdin, exit status 0 when valid.
    Verify(hookline::verify::VerifyArgs),
    /// Issue an API token, record it and print it.
    Token(hookline::auth::cli::TokenArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    hookline::crypto::install();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Schema) => {
            print!("{}", graphql::sdl());
            return std::process::ExitCode::SUCCESS;
        }
        Some(Command::Verify(args)) if args.scheme == hookline::verify::Scheme::Cra => {
            return match args.cra() {
                Ok(answer) => {
                    println!("{answer}");
                    std::process::ExitCode::SUCCESS
                }
                Err(rejection) => {
                    println!("invalid: {rejection}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Some(Command::Verify(args)) => {
            let mut body = Vec::new();
            if let Err(err) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut body) {
                eprintln!("hookline verify: cannot read the body from stdin: {err}");
                return std::process::ExitCode::from(2);
            }
            return match args.check(&body, chrono::Utc::now().timestamp()) {
                Ok(()) => {
                    println!("valid");
                    std::process::ExitCode::SUCCESS
                }
                Err(rejection) => {
                    println!("invalid: {rejection}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Some(Command::Bench(args)) => {
            return match hookline::bench::run(args).await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("hookline bench: {err}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("hookline: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    let telemetry = match Telemetry::init(&config.log, config.log_format, config.otlp_endpoint.as_ref()) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("hookline: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Some(Command::Migrate) => {
            hookline::prepare(&config).await.map(|_| tracing::info!("migrations applied")).map_err(|e| e.to_string())
        }
        Some(Command::Token(args)) => hookline::auth::cli::issue(&config, args).await.map(|token| println!("{token}")),
        _ => serve(config).await,
    };
    telemetry.shutdown().await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hookline: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let app = Application::build(config).await.map_err(|e| e.to_string())?;
    tracing::info!(addr = %app.local_addr(), "hookline listening; GraphQL at /graphql");
    let token = app.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        token.cancel();
    });
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                ctrl_c.await.ok();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.ok();
}
