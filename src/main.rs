use std::process::ExitCode;

fn main() -> ExitCode {
    ferkit::util::allocator::keep_freed_memory();
    match ferkit::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
