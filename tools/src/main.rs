//! `pvmux`: run paravirtual guest kernels in unprivileged sandboxes.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    pvmux::cli::main()
}
