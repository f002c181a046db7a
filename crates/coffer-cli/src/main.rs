//! `coffer`: back up, restore, verify and check repositories.

mod cli;
mod commands;
mod context;
mod output;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A closed pipe (`coffer snapshots | head`) ends the process quietly, as it does for other
    // Unix tools, instead of a panic on the next print.
    // SAFETY: setting a signal's disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::Cli::parse();
    output::init_logging(args.global.verbose, args.global.quiet);
    let json = args.global.json;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(commands::run(args));
    let code = match result {
        Ok(code) => code,
        Err(err) => {
            let code = output::exit_code_of(&err);
            output::print_error(&err, code, json);
            code
        }
    };
    // Do not wait for background tasks (lock refreshers) to notice the runtime is gone.
    rt.shutdown_background();
    ExitCode::from(code)
}
