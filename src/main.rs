//! The `goalcast` binary: parses the command line, sets up logging, and runs the command.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use goalcast::cli::{Cli, Command, run};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`goalcast sql ... | head`) would
    // panic. The default action ends the process quietly, as other command-line tools do.
    #[cfg(unix)]
    // SAFETY: called before any other thread starts; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // The scheduler is a long-running service, so it logs its starts, stops and runs by default.
    let service = matches!(cli.command, Command::Schedule(_));
    init_logging(cli.verbose.max(u8::from(service)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            if let Some(file) = error.missing_file() {
                eprintln!(
                    "  hint: {file} was missing. If another goalcast command committed to the \
                     warehouse meanwhile, run this command again; if not, the file was deleted \
                     outside goalcast: restore it, or write its table again"
                );
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs to standard error; `RUST_LOG` overrides the level picked by `-v`.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "warn,goalcast=info",
        2 => "info,goalcast=debug",
        _ => "debug,goalcast=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
