//! The `elbe` command: the demo (no arguments), `run --config FILE`, `check --config FILE [--print]`, and the
//! operator's tools around them: `state show|reset` (the state store in `state_dir`), `healthcheck` (for
//! container HEALTHCHECKs and probes), `completions <shell>` and `man`, both generated from this file's clap
//! definition so they never drift from it.
//!
//! Rule: the exit status is the contract with scripts and service managers, and it is the one documented in
//! [`EXIT_CODES`] (also in `--help` and the man page): 0 ok, 1 a runtime failure (including `run` with a bad
//! configuration, as it always was), 2 a bad configuration found by `check` or a bad command line (clap's own
//! exit status for usage errors).
//!
//! Trade-off: logs are human text by default and JSON with `--log-format json` (tracing-subscriber's formatter,
//! one object a line, fields at the top level), both on standard output as before; the effective configuration of
//! `check --print` is rendered here from the validated types (the `effective` module) rather than by making the
//! configuration types serializable, so the configuration module stays read-only.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// glibc's malloc measured as a tenth of elbe's instructions per proxied request (ten small allocations freed
/// within the same request); mimalloc's thread-local free lists make each of them a few instructions.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The binary's own modules live in `src/main/` (`name.rs` + `name/`); a crate root looks for `mod` files beside
// itself, hence the paths.
#[path = "main/effective.rs"]
mod effective;
#[path = "main/probe.rs"]
mod probe;
#[path = "main/state.rs"]
mod state;

/// `elbe --version`: the crate version and the git commit it was built from (build.rs; "unknown" outside git).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ELBE_GIT_COMMIT"),
    ")"
);

/// The exit statuses, as `--help` and the man page show them.
const EXIT_CODES: &str = "\
Exit status:
  0  success: `check` found the configuration valid; `run` or the demo drained and stopped on SIGTERM/Ctrl-C;
     `healthcheck` got 200 from /healthz
  1  runtime failure: `run` could not start (a bad or unreadable configuration, a port in use, a certificate
     that does not load, a state_dir another elbe holds) or failed while serving; `healthcheck` got no answer
     or not 200; `state` could not read the store, or `state reset` found an elbe holding it
  2  `check` refused the configuration (the message names file, key path and reason), or the command line
     itself is wrong";

#[derive(Parser)]
#[command(
    name = "elbe",
    version = VERSION,
    about = "A load balancer that behaves like AWS ELB Classic",
    after_help = EXIT_CODES
)]
struct Cli {
    /// How log lines are written to standard output. RUST_LOG filters them (default: elbe=info).
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line (timestamp, level, target, message and fields at the top level).
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a configuration file. SIGHUP reloads it; SIGTERM or Ctrl-C drains and exits.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and say exactly what is wrong.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Print the effective configuration (every default filled in) as TOML on standard output.
        #[arg(long)]
        print: bool,
    },
    /// The embedded demonstration (the default).
    Demo,
    /// The state store in state_dir: the registrations made at run time, which survive restarts.
    State {
        #[command(subcommand)]
        action: state::Action,
    },
    /// Ask a running elbe's admin listener for /healthz (for container HEALTHCHECKs and exec probes).
    Healthcheck {
        /// The admin listener; an unspecified address (0.0.0.0, [::]) means this host's loopback.
        #[arg(long, default_value_t = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9900))]
        admin: SocketAddr,
        /// Liveness: succeed on any answer, 503 included (elbe is up even when no instance is InService).
        #[arg(long)]
        live: bool,
        /// Give up after this long, e.g. "2s".
        #[arg(long, default_value = "2s", value_parser = elbe::config::parse_duration)]
        timeout: Duration,
    },
    /// Print a shell completion script on standard output.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on standard output, or write it and one page per subcommand into a folder.
    Man {
        /// Write elbe.1, elbe-run.1, elbe-check.1, ... here instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match cli.command {
        Some(Command::Check { config, print }) => check(&config, print),
        Some(Command::Healthcheck {
            admin,
            live,
            timeout,
        }) => probe::healthcheck(admin, live, timeout),
        Some(Command::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "elbe", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Some(Command::Man { dir }) => man(dir.as_deref()),
        Some(Command::State { action }) => state::run(action),
        command => run(command),
    }
}

/// Logs to standard output, text or JSON; RUST_LOG filters (default `elbe=info`).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "elbe=info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

/// `elbe check`: exit 0 when the file and its certificates load, 2 (with the reason) when not.
fn check(config: &std::path::Path, print: bool) -> ExitCode {
    match validate(config) {
        Ok(parsed) => {
            let summary = format!(
                "{}: ok ({} load balancer(s))",
                config.display(),
                parsed.load_balancers.len()
            );
            if !print {
                println!("{summary}");
                return ExitCode::SUCCESS;
            }
            match effective::render(&parsed) {
                Ok(text) => {
                    println!(
                        "# {summary}; the effective configuration, every default filled in\n{text}"
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!(
                        "{}: cannot print the configuration: {error}",
                        config.display()
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(2)
        }
    }
}

/// Parses and validates the file, then loads every certificate and policy: a file that parses but whose
/// certificate does not load is not ok.
fn validate(config: &std::path::Path) -> Result<elbe::config::Config, String> {
    let parsed = elbe::config::load(config).map_err(|e| e.to_string())?;
    elbe::server::check(&parsed).map_err(|e| format!("{}: {e}", config.display()))?;
    Ok(parsed)
}

/// `elbe man`: the command's page, with the exit statuses as an EXIT STATUS section; with `dir`, also one page
/// per subcommand (for packages: `/usr/share/man/man1`).
fn man(dir: Option<&std::path::Path>) -> ExitCode {
    let written = match dir {
        None => main_page().and_then(|page| std::io::stdout().write_all(&page)),
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), dir))
            .and_then(|()| main_page())
            .and_then(|page| std::fs::write(dir.join("elbe.1"), page)),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("elbe: cannot write the man page: {error}");
            ExitCode::FAILURE
        }
    }
}

/// elbe(1): clap_mangen's sections, with [`EXIT_CODES`] under the standard EXIT STATUS heading rather than
/// clap_mangen's "EXTRA" (which is where `after_help` would go).
fn main_page() -> std::io::Result<Vec<u8>> {
    let page = clap_mangen::Man::new(
        Cli::command()
            .after_help(None::<&str>)
            .disable_help_subcommand(true),
    );
    let mut out = Vec::new();
    page.render_title(&mut out)?;
    page.render_name_section(&mut out)?;
    page.render_synopsis_section(&mut out)?;
    page.render_description_section(&mut out)?;
    page.render_options_section(&mut out)?;
    page.render_subcommands_section(&mut out)?;
    out.extend_from_slice(b".SH \"EXIT STATUS\"\n");
    for line in EXIT_CODES.lines().skip(1) {
        let line = line.trim_start().replace('\\', "\\\\").replace('-', "\\-");
        match line.split_once("  ") {
            Some((code, text)) if code.len() == 1 => {
                out.extend_from_slice(format!(".TP\n{code}\n{text}\n").as_bytes());
            }
            _ => out.extend_from_slice(format!("{line}\n").as_bytes()),
        }
    }
    page.render_version_section(&mut out)?;
    Ok(out)
}

/// `elbe run` (its registrations kept in `state_dir`) and the demo (kept in memory: it has no state to keep):
/// serve until SIGTERM or Ctrl-C; 1 when elbe cannot start.
fn run(command: Option<Command>) -> ExitCode {
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
    match runtime.block_on(serve(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("elbe: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(command: Option<Command>) -> anyhow::Result<()> {
    // Signal handlers first: a SIGTERM that arrives while elbe starts (systemd may send one right after READY=1)
    // then drains instead of killing the process by the default action.
    let mut stop = stop_signals();
    let mut hangup = hangup_signal();
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
    let server = if demo {
        elbe::server::start(config).await?
    } else {
        elbe::server::start_durable(config).await?
    };
    // `start` returns once every listener is bound: that is readiness for a Type=notify unit.
    let serving = format!(
        "serving {} listener(s); admin on {}",
        server.listeners().len(),
        server.admin_address()
    );
    elbe::notify::ready(&serving);
    if demo {
        elbe::demo::wait_until_in_service(&server).await;
        println!("{}", elbe::demo::banner());
    }
    loop {
        tokio::select! {
            Some(()) = stop.recv() => break,
            Some(()) = hangup.recv() => match &path {
                Some(path) => {
                    elbe::notify::reloading();
                    // A refused reload keeps the previous configuration serving: ready again either way.
                    let _ = server.reload_from(path).await;
                    elbe::notify::ready(&serving);
                }
                None => tracing::info!("SIGHUP: the demo has no configuration file to reload"),
            },
        }
    }
    elbe::notify::stopping();
    // Cluster mode: out of every member's DNS answers first, serving on for dns_drain (a second SIGTERM cuts it
    // short), then the drain below.
    #[cfg(feature = "cluster")]
    server
        .leave_cluster(async {
            stop.recv().await;
        })
        .await;
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

/// SIGTERM or Ctrl-C, as a stream: the first stops elbe, a second (cluster mode) cuts its DNS drain short. The
/// handlers are installed when this is called; a handler that cannot be installed leaves its default action.
fn stop_signals() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        for kind in [SignalKind::terminate(), SignalKind::interrupt()] {
            if let Ok(mut signal) = signal(kind) {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while signal.recv().await.is_some() {
                        if tx.send(()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
        // The stream never ends, even with no handler installed: a stop then never comes, as before.
        tokio::spawn(async move {
            let _open = tx;
            std::future::pending::<()>().await;
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_version_names_the_commit() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")));
        assert!(VERSION.contains("(commit "), "{VERSION}");
    }
}
