//! The `elbe` command: the demo (no arguments), `run --config FILE`, `check --config FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// glibc's malloc measured as a tenth of elbe's instructions per proxied request (ten small allocations freed
/// within the same request); mimalloc's thread-local free lists make each of them a few instructions.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "elbe",
    version,
    about = "A load balancer that behaves like AWS ELB Classic"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a configuration file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and say exactly what is wrong.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The embedded demonstration (the default).
    Demo,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "elbe=info".into()),
        )
        .init();
    let cli = Cli::parse();
    if let Some(Command::Check { config }) = &cli.command {
        let checked = elbe::config::load(config)
            .map_err(|e| e.to_string())
            .and_then(|parsed| {
                // Certificates and policies too: a file that parses but whose certificate does not load is not ok.
                elbe::server::check(&parsed).map_err(|e| format!("{}: {e}", config.display()))?;
                Ok(parsed)
            });
        return match checked {
            Ok(parsed) => {
                println!(
                    "{}: ok ({} load balancer(s))",
                    config.display(),
                    parsed.load_balancers.len()
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::from(2)
            }
        };
    }
    // The runtime uses every core unless TOKIO_WORKER_THREADS says otherwise (tokio reads it).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("elbe: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(command: Option<Command>) -> anyhow::Result<()> {
    let mut path = None;
    let (config, demo) = match command {
        Some(Command::Run { config }) => {
            let loaded = elbe::config::load(&config)?;
            path = Some(config);
            (loaded, false)
        }
        _ => {
            let text = elbe::demo::start_instances()
                .await
                .context("starting the demo instances on 127.0.0.21-24")?;
            let config = elbe::config::parse(&text, std::path::Path::new("<demo>"))?;
            (config, true)
        }
    };
    let server = elbe::server::start(config).await?;
    if demo {
        elbe::demo::wait_until_in_service(&server).await;
        println!("{}", elbe::demo::banner());
    }
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut hangup = hangup_signal();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(()) = hangup.recv() => match &path {
                Some(path) => {
                    let _ = server.reload_from(path).await;
                }
                None => tracing::info!("SIGHUP: the demo has no configuration file to reload"),
            },
        }
    }
    server.run_until(std::future::ready(())).await;
    Ok(())
}

/// SIGHUP, as a stream of reload requests.
fn hangup_signal() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    if let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while signal.recv().await.is_some() {
                if tx.send(()).await.is_err() {
                    return;
                }
            }
        });
    }
    rx
}

/// SIGTERM or Ctrl-C.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
