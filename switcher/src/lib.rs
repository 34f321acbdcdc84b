//! pvmux world switch: the pieces of the sandbox that can be built and tested on the host.
//!
//! The sandbox stub itself (a `no_std`, libc-free static-pie) lives in `src/bin/pvmux-stub`;
//! this library holds what it shares with the host and with tests: the seccomp filter
//! ([`seccomp`]), built at run time by the stub from its own code range, and the
//! classification of host signals into guest exceptions ([`exception`]), and the host-memory
//! limits a sandbox sets on itself ([`host_memory`]).
#![no_std]
#![forbid(unsafe_code)]

pub mod exception;
pub mod host_memory;
pub mod seccomp;
