//! The `kiln` binary: parses arguments, runs a command, and turns the outcome
//! into an exit status CI can use (0 success, 1 a failed check or gate,
//! 2 a usage or input error).

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;
mod output;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It did what was asked.
    Success,
    /// It ran, and a check or gate failed.
    Failure,
}

// mimalloc: per-thread free lists make the many small allocations of
// serving (one request: JSON values, a typed batch, the answer) cheaper, and
// return freed memory instead of holding it per arena as glibc does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.global.verbose, cli.global.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: Failed to start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(commands::run(cli));
    match result {
        Ok(ExitStatus::Success) => ExitCode::SUCCESS,
        Ok(ExitStatus::Failure) => ExitCode::from(1),
        Err(err) => {
            // A closed pipe (`kiln data ls | head`) is not an error.
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            report(&err);
            ExitCode::from(2)
        }
    }
}

/// Prints an error, its causes and a hint, uv style.
fn report(err: &anyhow::Error) {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    let hint = err.chain().find_map(|c| {
        c.downcast_ref::<kiln_pipeline::PipelineError>()
            .and_then(kiln_pipeline::PipelineError::hint)
            .or_else(|| {
                c.downcast_ref::<kiln_project::ProjectError>()
                    .and_then(kiln_project::ProjectError::hint)
            })
            .or_else(|| {
                c.downcast_ref::<kiln_store::StoreError>()
                    .and_then(kiln_store::StoreError::hint)
            })
            .or_else(|| {
                c.downcast_ref::<kiln_data::DataError>()
                    .and_then(kiln_data::DataError::hint)
            })
            .or_else(|| {
                c.downcast_ref::<kiln_ml::MlError>()
                    .and_then(kiln_ml::MlError::hint)
            })
    });
    if let Some(h) = hint {
        eprintln!("hint: {h}");
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info,sqlx=warn",
        (false, _) => "debug",
    };
    let filter = std::env::var(kiln_core::EnvVars::KILN_LOG)
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::env::var_os(kiln_core::EnvVars::NO_COLOR).is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        )
        .without_time()
        .init();
}
