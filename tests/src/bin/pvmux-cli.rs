//! The `pvmux` command line, built inside the test package so that integration tests can run
//! it as `env!("CARGO_BIN_EXE_pvmux-cli")`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    pvmux::cli::main()
}
