//! The `ferkit` command: one subcommand per task ([`cli`]), each a thin layer over the `ferkit`
//! library. It parses flags, shows progress ([`cli::progress`]) and turns library errors into
//! messages; the work itself is the library's.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    ferkit::util::allocator::keep_freed_memory();
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            cli::lines::tell(&format!("error: {e:#}"));
            if let Some(hint) = cli::hints::hint(&e) {
                cli::lines::tell(&format!("hint: {hint}"));
            }
            ExitCode::FAILURE
        }
    }
}
