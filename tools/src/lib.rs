//! The pvmux command-line interface: argument parsing and the commands (`run`, `bench`), plus
//! the images (sandbox stub and default kernel) embedded at build time.
#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod images;
