//! The pvmux host runtime.
//!
//! A [`Host`] holds the sandbox stub and launches [`Tenant`]s: each tenant is a guest kernel
//! loaded by the [`domain_builder`] into its own sealed memfd of [`GuestMemory`], run in an
//! unprivileged sandbox process, and served by one host thread per vCPU ([`Vcpu`]) that
//! answers hypercalls. Every tenant failure ends in a [`TenantOutcome`], a crash as a
//! human-readable [`CrashReport`], a guest whose program was killed with how it died
//! ([`ProgramDeath`]).
#![deny(unsafe_op_in_unsafe_fn)]

pub mod balloon;
pub mod channel;
pub mod clock;
mod console;
pub mod console_input;
pub mod control;
mod cpu_features;
mod cpu_spread;
pub mod crash;
pub mod disk;
pub mod domain_builder;
pub mod dump;
mod error;
pub mod escape;
pub mod exec;
#[cfg(test)]
mod fuzz_tests;
mod host;
pub mod hostfs;
mod hypercall;
mod image_file;
pub mod initramfs;
pub mod jail;
pub mod kernel_image;
#[cfg(test)]
mod lifecycle_tests;
pub mod limits;
pub mod memory;
pub mod net;
pub mod page_table;
pub mod pause;
pub mod program_end;
pub mod resources;
pub mod restart;
pub mod sandbox;
mod shm;
pub mod snapshot;
mod space;
mod tenant;
#[cfg(test)]
mod test_elf;
#[cfg(test)]
mod test_stub;
pub mod upgrade;
pub mod vcpu;
pub mod vcpu_figures;
pub mod volume;
pub mod watchdog;
mod window;

pub use balloon::{BalloonError, MemoryFigures};
pub use console::{KernelLog, TokenBucket, CONSOLE_TAIL_LINES};
pub use console_input::ConsoleInput;
pub use crash::{CrashCause, CrashReport, Frame};
pub use error::{HostError, ImageError, MemoryError};
pub use exec::{ExecError, ExecExit, ExecHandle, ExecSession, ExecSpec};
pub use host::{warm_up, Host, DEFAULT_FAULT_AROUND};
pub use kernel_image::KernelImage;
pub use memory::GuestMemory;
pub use pause::PauseError;
pub use program_end::{DeathCause, ProgramDeath, Sender, Signal};
pub use resources::{ResourceError, TaskLimit};
pub use restart::{run_with_restarts, RestartPolicy};
pub use snapshot::{SnapshotError, SnapshotFigures};
pub use space::{DESTROY_WAIT, MAX_PROCESSES, MAX_SPACES};
pub use tenant::{
    BootTimes, Tenant, TenantConfig, TenantHandle, TenantOutcome, TenantState, MAX_HOST_SIGNAL,
};
pub use vcpu::{Vcpu, VcpuExit};
