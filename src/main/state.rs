//! `elbe state show` and `elbe state reset`: the state store in `state_dir` (DESIGN.md "The state store"), named by
//! the configuration file that sets it (`--config`) or by the folder itself (`--state-dir`).
//!
//! Rule: `show` prints the records as JSON on standard output (each with its key and revision), beside a running
//! elbe too; `reset` forgets them and refuses, exit status 1 and the reason, while an elbe holds the store.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// What to do with the store.
#[derive(Subcommand)]
pub(crate) enum Action {
    /// Print every record the store keeps, with its revision, as JSON (works while elbe runs).
    Show {
        #[command(flatten)]
        location: Location,
    },
    /// Forget every record, so the next start serves the configuration file as written (refused while an elbe
    /// holds the store; the stickiness key stays).
    Reset {
        #[command(flatten)]
        location: Location,
    },
}

/// Where the store is: the configuration file's `state_dir`, or the folder given.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Location {
    /// The configuration file whose `state_dir` holds the store.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The state folder itself.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

impl Location {
    fn state_dir(&self) -> Result<PathBuf, String> {
        match (&self.config, &self.state_dir) {
            (_, Some(dir)) => Ok(dir.clone()),
            (Some(config), None) => elbe::config::load(config)
                .map(|config| config.state_dir)
                .map_err(|error| error.to_string()),
            // clap's group requires one of them.
            (None, None) => Err("give --config FILE or --state-dir DIR".to_owned()),
        }
    }
}

/// Runs `elbe state ...`: 0 done, 1 with the reason on standard error.
pub(crate) fn run(action: Action) -> ExitCode {
    match act(action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("elbe state: {error}");
            ExitCode::FAILURE
        }
    }
}

fn act(action: Action) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    match action {
        Action::Show { location } => {
            let dir = location.state_dir()?;
            let shown = runtime
                .block_on(elbe::server::show_state(&dir))
                .map_err(|error| error.to_string())?;
            let text = serde_json::to_string_pretty(&shown).map_err(|error| error.to_string())?;
            println!("{text}");
        }
        Action::Reset { location } => {
            let dir = location.state_dir()?;
            let forgotten = runtime
                .block_on(elbe::server::reset_state(&dir))
                .map_err(|error| error.to_string())?;
            println!(
                "forgot {forgotten} record(s) in {}; the next start serves the configuration file as written",
                dir.display()
            );
        }
    }
    Ok(())
}
