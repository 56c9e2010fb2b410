//! The `elihu` command-line tool: a thin layer over the `elihu` library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
