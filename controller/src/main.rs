//! `benchctl`: parse the command line, set up logging, run, exit non-zero on failure.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = controller::cli::Cli::parse();
    controller::cli::init_tracing(&cli);
    let runtime = tokio::runtime::Runtime::new().expect("cannot start the tokio runtime");
    match runtime.block_on(controller::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
