//! The `talis` command-line interface: every Talis RPC method as a subcommand, the original CLI's
//! create.json / delete.json files, live progress for fleets, tables for people and JSON for
//! scripts.

mod cli;
mod commands;
mod config;
mod events;
mod input;
mod output;
mod watch;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// One readable line: the server's message with the field path, or the cause chain, plus a hint
/// for the two mistakes everyone makes (stack not running, key missing).
fn describe(e: &anyhow::Error) -> String {
    let (text, hint) = match e.downcast_ref::<talis_client::Error>() {
        Some(ce @ talis_client::Error::Connect { .. }) => (
            ce.to_string(),
            Some("is the API running? (`cargo xtask up`, or set --api-url / TALIS_API_URL)"),
        ),
        Some(talis_client::Error::Api(a)) if a.status == 401 => {
            (a.to_string(), Some("set --api-key or TALIS_API_KEY"))
        }
        Some(ce) => (ce.to_string(), None),
        None => (format!("{e:#}"), None),
    };
    let mut line = text.replace('\n', " ");
    if let Some(h) = hint {
        line.push_str(" — ");
        line.push_str(h);
    }
    line
}
