//! The trap frame and exception vectors.
//!
//! When the stub delivers an exception or an event to the guest it writes a [`TrapFrame`] on
//! the guest's current stack, below the 128-byte red zone, 16-byte aligned, and enters the
//! registered entry with `rdi` = the frame's address and `rsp` = frame address - 8 (a zero
//! "return address": the entry must never return, it leaves through `StubTable::iret`). The
//! virtual interrupt flag is cleared on entry; `rflags` bit 9 (IF) in the frame is the virtual
//! flag at the time of interruption. FPU/SSE/AVX state is live (the interrupted context's):
//! the handler must preserve it if it uses it (e.g. `fxsave64`/`fxrstor64`).

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Registers of an interrupted guest context plus the exception information.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
#[allow(missing_docs)]
pub struct TrapFrame {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    /// A [`Vector`] as `u64`.
    pub vector: u64,
    /// Error code: the x86 error code for #PF/#GP, the Linux system-call number for
    /// [`Vector::Syscall`], the pending-event bits for [`Vector::Event`], else 0.
    pub error_code: u64,
    /// Faulting address for #PF (CR2), else 0.
    pub fault_addr: u64,
    /// Instruction pointer to resume at.
    pub rip: u64,
    /// Flags to resume with; bit 9 is the virtual interrupt flag.
    pub rflags: u64,
    /// Stack pointer to resume with.
    pub rsp: u64,
}

impl TrapFrame {
    /// The registers with their names, in the order crash reports print them.
    pub const fn named_registers(&self) -> [(&'static str, u64); 18] {
        [
            ("rax", self.rax),
            ("rbx", self.rbx),
            ("rcx", self.rcx),
            ("rdx", self.rdx),
            ("rsi", self.rsi),
            ("rdi", self.rdi),
            ("rbp", self.rbp),
            ("rsp", self.rsp),
            ("r8", self.r8),
            ("r9", self.r9),
            ("r10", self.r10),
            ("r11", self.r11),
            ("r12", self.r12),
            ("r13", self.r13),
            ("r14", self.r14),
            ("r15", self.r15),
            ("rip", self.rip),
            ("rflags", self.rflags),
        ]
    }
}

/// Size of [`TrapFrame`] in bytes.
pub const TRAP_FRAME_SIZE: usize = 168;
/// Bytes below the interrupted `rsp` the stub leaves untouched (the System V red zone).
pub const RED_ZONE: u64 = 128;
/// `rflags` bit holding the virtual interrupt flag in a [`TrapFrame`].
pub const RFLAGS_IF: u64 = 1 << 9;
/// `rflags` bits the guest may change through `iret` (CF PF AF ZF SF TF DF OF AC).
pub const RFLAGS_USER_MASK: u64 = 0x0004_0dd5;

const _: () = assert!(size_of::<TrapFrame>() == TRAP_FRAME_SIZE);
const _: () = assert!(offset_of!(TrapFrame, vector) == 120);
const _: () = assert!(offset_of!(TrapFrame, rip) == 144);
const _: () = assert!(offset_of!(TrapFrame, rflags) == 152);
const _: () = assert!(offset_of!(TrapFrame, rsp) == 160);

/// Exception and event vectors delivered to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[repr(u64)]
pub enum Vector {
    /// #DE divide error.
    DivideError = 0,
    /// #DB debug (single step, `int1`).
    Debug = 1,
    /// #BP breakpoint (`int3`); `rip` is after the `int3`.
    Breakpoint = 3,
    /// #OF overflow (`into` is invalid in 64-bit mode; kept for completeness).
    Overflow = 4,
    /// #UD invalid opcode.
    InvalidOpcode = 6,
    /// #GP general protection (privileged instruction, non-canonical address, bad `int n`).
    GeneralProtection = 13,
    /// #PF page fault; `fault_addr` is the address, `error_code` the x86 #PF error code
    /// (bit 0 present, bit 1 write, bit 3 reserved/bad physical address, bit 4 fetch).
    PageFault = 14,
    /// #MF x87 floating-point error.
    X87Fp = 16,
    /// #AC alignment check.
    AlignmentCheck = 17,
    /// #XM SIMD floating-point exception.
    SimdFp = 19,
    /// A virtual interrupt (event); `error_code` holds the pending bits that were taken
    /// (see [`crate::vcpu::pending`]). Delivered at the event entry.
    Event = 32,
    /// The guest executed a raw Linux `syscall` (or `int 0x80`); it was not executed.
    /// `error_code` is the system-call number ([`SYSCALL_COMPAT`] set for `int 0x80`); `rip`
    /// is after the instruction.
    Syscall = 128,
}

impl Vector {
    /// Decodes a raw vector; `None` for values this ABI version does not know.
    pub const fn from_raw(raw: u64) -> Option<Self> {
        Some(match raw {
            0 => Self::DivideError,
            1 => Self::Debug,
            3 => Self::Breakpoint,
            4 => Self::Overflow,
            6 => Self::InvalidOpcode,
            13 => Self::GeneralProtection,
            14 => Self::PageFault,
            16 => Self::X87Fp,
            17 => Self::AlignmentCheck,
            19 => Self::SimdFp,
            32 => Self::Event,
            128 => Self::Syscall,
            _ => return None,
        })
    }

    /// Short mnemonic ("#PF", "event", ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::DivideError => "#DE",
            Self::Debug => "#DB",
            Self::Breakpoint => "#BP",
            Self::Overflow => "#OF",
            Self::InvalidOpcode => "#UD",
            Self::GeneralProtection => "#GP",
            Self::PageFault => "#PF",
            Self::X87Fp => "#MF",
            Self::AlignmentCheck => "#AC",
            Self::SimdFp => "#XM",
            Self::Event => "event",
            Self::Syscall => "syscall",
        }
    }
}

/// Bit of a [`Vector::Syscall`] error code: the call used a non-x86-64 system-call ABI
/// (`int 0x80`, `AUDIT_ARCH_I386`); the low 32 bits are its number in that ABI.
pub const SYSCALL_COMPAT: u64 = 1 << 63;

/// #PF error code bits.
pub mod pf {
    /// The page was present (protection violation).
    pub const PRESENT: u64 = 1 << 0;
    /// The access was a write.
    pub const WRITE: u64 = 1 << 1;
    /// The access came from guest user mode (set only in a user sandbox's exits; the kernel
    /// sandbox has one privilege level).
    pub const USER: u64 = 1 << 2;
    /// A page-table entry pointed outside guest memory or had reserved bits set.
    pub const RESERVED: u64 = 1 << 3;
    /// The access was an instruction fetch.
    pub const FETCH: u64 = 1 << 4;
}
