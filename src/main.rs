//! The `libwarden` binary: parse, run, map the result to an exit code.

use clap::Parser;

fn main() {
    libwarden::scan::limit_allocator_slack();
    let cli = match libwarden::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not usage errors.
            std::process::exit(if e.use_stderr() {
                libwarden::error::code::USAGE
            } else {
                0
            });
        }
    };
    let code = match libwarden::run(&cli) {
        Ok(code) => code,
        Err(e) => {
            libwarden::output::messages::error(&format!("libwarden: error: {e}"));
            e.exit_code()
        }
    };
    std::process::exit(code);
}
