//! Error types of the host runtime.

use std::io;

/// Why a kernel image was refused by [`crate::KernelImage::parse`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The bytes are not an ELF file at all.
    #[error("not an ELF file")]
    NotElf,
    /// The ELF file is malformed (truncated headers, bad offsets...).
    #[error("malformed ELF file: {0}")]
    Malformed(String),
    /// The ELF file is not a 64-bit x86-64 image.
    #[error("not an x86-64 ELF64 image")]
    WrongArch,
    /// The ELF file is not position independent (`ET_DYN`, a static-pie).
    #[error("not a position-independent (ET_DYN) image; build the kernel as a static-pie")]
    NotPie,
    /// The image has no `.pvmux_abi` section.
    #[error("not a pvmux kernel (no .pvmux_abi section)")]
    NotPvmuxKernel,
    /// The `.pvmux_abi` section does not hold a valid header.
    #[error("not a pvmux kernel (bad .pvmux_abi header)")]
    BadAbiHeader,
    /// The kernel was built for another ABI version.
    #[error("kernel built for ABI v{kernel}, host speaks v{host}")]
    AbiVersionMismatch {
        /// Version the kernel declares.
        kernel: u32,
        /// Version this host implements.
        host: u32,
    },
    /// The image has a relocation the domain builder does not apply.
    #[error("unsupported relocation type {0} (only R_X86_64_RELATIVE and R_X86_64_NONE)")]
    UnsupportedRelocation(u32),
    /// The image uses a relocation table format the domain builder does not apply.
    #[error("unsupported relocation table: {0}")]
    UnsupportedRelocationTable(&'static str),
    /// A relocation targets an address outside the loaded image.
    #[error("relocation at offset {0:#x} lies outside the loaded image")]
    RelocationOutOfImage(u64),
    /// Two loadable segments overlap.
    #[error("loadable segments overlap at {0:#x}")]
    OverlappingSegments(u64),
    /// The image has no loadable segment.
    #[error("image has no loadable segment")]
    NoSegments,
    /// The image is larger than the kernel placement region allows.
    #[error("image spans {span:#x} bytes, more than the {max:#x} allowed")]
    TooBig {
        /// The image's memory footprint.
        span: u64,
        /// The largest footprint allowed.
        max: u64,
    },
    /// The entry point is not inside an executable segment.
    #[error("entry point {0:#x} is not inside an executable segment")]
    BadEntry(u64),
}

/// Errors of the host runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The embedded sandbox stub is not usable.
    #[error("invalid sandbox stub: {0}")]
    BadStub(&'static str),
    /// An invalid tenant configuration.
    #[error("invalid tenant configuration: {0}")]
    InvalidConfig(String),
    /// A signal number the guest cannot be sent (1..=63 can).
    #[error("signal {0} cannot be sent to a guest (1 to 63 can)")]
    InvalidSignal(u32),
    /// The guest memory is too small for the kernel, the boot structures and the user pool.
    #[error(
        "guest memory of {mem_size:#x} bytes is too small: the boot layout, the kernel and the \
         user pool need {needed:#x}"
    )]
    MemoryTooSmall {
        /// Configured guest memory size.
        mem_size: u64,
        /// Guest memory size (a multiple of 2 MiB) the boot layout, the kernel, some free
        /// memory and the user pool (half of it) need.
        needed: u64,
    },
    /// The initial RAM disk does not fit in guest memory.
    #[error(
        "the initial RAM disk ({initrd_len} bytes) does not fit in guest memory of {} MiB: \
         guest memory of at least {} MiB is needed",
        mem_size >> 20,
        needed >> 20
    )]
    InitrdTooBig {
        /// Length of the initial RAM disk.
        initrd_len: u64,
        /// Configured guest memory size.
        mem_size: u64,
        /// Guest memory size (a multiple of 2 MiB) that the boot layout, the kernel, the
        /// minimum free memory and the initial RAM disk need below the user pool (which takes
        /// the rest, three quarters of memory).
        needed: u64,
    },
    /// A system call failed while setting up a tenant.
    #[error("{what} failed: {source}")]
    Os {
        /// What the host was doing.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A guest memory access was out of bounds (a host bug in the domain builder).
    #[error("guest memory access out of bounds: {0}")]
    OutOfBounds(#[from] MemoryError),
}

impl HostError {
    /// Wraps an OS error with a short description of what failed.
    pub(crate) fn os(what: &'static str, err: impl Into<io::Error>) -> Self {
        Self::Os {
            what,
            source: err.into(),
        }
    }
}

/// A guest-physical access outside guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("guest-physical range {gpa:#x}+{len:#x} is outside guest memory of {size:#x} bytes")]
pub struct MemoryError {
    /// Start of the access.
    pub gpa: u64,
    /// Length of the access.
    pub len: u64,
    /// Size of guest memory.
    pub size: u64,
}
