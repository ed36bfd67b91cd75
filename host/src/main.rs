//! The `weft` command.

fn main() -> std::process::ExitCode {
    weft_host::cli::main()
}
