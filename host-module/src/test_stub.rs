//! A tiny sandbox stub for spawn and lifecycle tests (the real stub is built elsewhere),
//! assembled from the source below with every ABI offset and number taken from
//! `pvmux_hypercalls` (`const` operands), wrapped in a minimal static ELF.
//!
//! It first checks that exactly fds 3 and 4 are open (else it exits with 100 + the stray fd),
//! then behaves as asked ([`Behaviour`]). Its doorbell is the guest half of the protocol in its
//! simplest legal form (ring, always wake, spin for the answer; see
//! `pvmux_hypercalls::doorbell`).

use core::mem::offset_of;

use pvmux_hypercalls::layout::CTL_VCPU_OFFSET;
use pvmux_hypercalls::sandbox::{CTL_FD, GUEST_MEM_FD, STUB_EXIT_CRASH};
use pvmux_hypercalls::{
    CrashReason, Hypercall, SandboxHeader, TrapFrame, VcpuShared, Vector, PAGE_SIZE,
};

/// What the test stub does once its fds are checked.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Behaviour {
    /// Exit with this status.
    Exit(u32),
    /// Record a crash in vCPU 0's page (`UnhandledException`, #PF with error code 6 at
    /// 0xdead000, `rip` = the entry point + 4) and exit with `STUB_EXIT_CRASH`.
    Crash,
    /// Map guest memory, copy "hello from stub\n" to gpa 1 MiB and `ConsoleWrite` it through
    /// the doorbell (exit 50 unless it returns 16), then make hypercall `then` with `a0 = arg`
    /// (`a1` still 16, but 0 for `SpaceCreate`: no grant page), then spin forever.
    Hypercalls {
        /// The second call.
        then: Hypercall,
        /// Its first argument.
        arg: u64,
    },
}

/// Guest memory the stub maps (the tests' guests have at least this much).
const MEM_MAP: u64 = 2 << 20;
/// Where the message goes in guest memory.
const MSG_GPA: u64 = 1 << 20;
/// Length of the message.
const MSG_LEN: u64 = 16;
/// Address of the crash record's `rip` word in a `VcpuShared` page.
const CRASH_RIP: usize = offset_of!(VcpuShared, crash_regs) + offset_of!(TrapFrame, rip);

core::arch::global_asm!(
    // Data, not code, in this process: the bytes are copied into the stub's ELF. Every
    // reference inside is RIP-relative within the blob, so it runs wherever it is loaded.
    ".pushsection .rodata.pvmux_test_stub, \"a\"",
    ".globl pvmux_test_stub_start",
    ".hidden pvmux_test_stub_start",
    "pvmux_test_stub_start:",
    // -- for fd in 0..1024: fcntl(fd, F_GETFD) must fail except for the two ABI fds.
    "    xor ebx, ebx",
    "2:  mov edi, ebx",
    "    mov esi, 1",                 // F_GETFD
    "    mov eax, 72",                // fcntl
    "    syscall",
    "    test rax, rax",
    "    js 3f",
    "    cmp ebx, {mem_fd}",
    "    je 3f",
    "    cmp ebx, {ctl_fd}",
    "    je 3f",
    "    lea edi, [rbx + 100]",
    "    mov eax, 231",               // exit_group(100 + fd)
    "    syscall",
    "3:  inc ebx",
    "    cmp ebx, 1024",
    "    jb 2b",
    // -- by mode
    "    mov eax, dword ptr [rip + pvmux_test_stub_params]",
    "    cmp eax, 1",
    "    je 4f",
    "    cmp eax, 2",
    "    je 5f",
    "    mov edi, dword ptr [rip + pvmux_test_stub_params + 4]",
    "    mov eax, 231",               // exit_group(status)
    "    syscall",
    // -- mode 1: a crash record in vCPU 0's page
    "4:  call 8f",
    // (the entry is there once the host has built the domain: `entry_held`)
    "25: pause",
    "    cmp dword ptr [r12 + {entry_held}], 0",
    "    jne 25b",
    "    lea rbx, [r12 + {vcpu0}]",
    "    mov dword ptr [rbx + {crash_vector}], {vec_pf}",
    "    mov qword ptr [rbx + {crash_error_code}], 6",
    "    mov rax, 0xdead000",
    "    mov qword ptr [rbx + {crash_fault_addr}], rax",
    "    mov rax, qword ptr [r12 + {entry_rip}]",
    "    add rax, 4",
    "    mov qword ptr [rbx + {crash_rip}], rax",
    "    mov dword ptr [rbx + {crash_reason}], {unhandled}",
    "    mov edi, {exit_crash}",
    "    mov eax, 231",
    "    syscall",
    // -- mode 2: two hypercalls, then spin
    "5:  call 8f",
    "    mov eax, 9",                 // mmap(0, MEM_MAP, RW, MAP_SHARED, mem_fd, 0)
    "    xor edi, edi",
    "    mov esi, {mem_map}",
    "    mov edx, 3",
    "    mov r10d, 1",
    "    mov r8d, {mem_fd}",
    "    xor r9d, r9d",
    "    syscall",
    "    mov r13, rax",
    "    lea rsi, [rip + 9f]",
    "    lea rdi, [r13 + {msg_gpa}]",
    "    mov ecx, {msg_len}",
    "    rep movsb",
    "    lea rbx, [r12 + {vcpu0}]",
    "    mov qword ptr [rbx + {hc_nr}], {console_write}",
    "    mov qword ptr [rbx + {hc_args}], {msg_gpa}",
    "    mov qword ptr [rbx + {hc_args} + 8], {msg_len}",
    "    call 7f",
    "    cmp qword ptr [rbx + {hc_ret}], {msg_len}",
    "    jne 6f",
    "    mov rax, qword ptr [rip + pvmux_test_stub_params + 8]",
    "    mov qword ptr [rbx + {hc_nr}], rax",
    "    cmp rax, 5",                 // SpaceCreate: a1 = 0 (no grant page)
    "    jne 23f",
    "    mov qword ptr [rbx + {hc_args} + 8], 0",
    "23: mov rax, qword ptr [rip + pvmux_test_stub_params + 16]",
    "    mov qword ptr [rbx + {hc_args}], rax",
    "    call 7f",
    "22: pause",
    "    jmp 22b",
    "6:  mov edi, 50",
    "    mov eax, 231",
    "    syscall",
    // -- ring the doorbell of vCPU 0 (rbx) and spin until the host answers
    "7:  mov eax, dword ptr [rbx + {hc_req}]",
    "    inc eax",
    "    mov r14d, eax",
    "    xchg dword ptr [rbx + {hc_req}], eax",
    "    mov eax, 202",               // futex(&hc_req, FUTEX_WAKE, 1)
    "    lea rdi, [rbx + {hc_req}]",
    "    mov esi, 1",
    "    mov edx, 1",
    "    syscall",
    "23: pause",
    "    cmp dword ptr [rbx + {hc_resp}], r14d",
    "    jne 23b",
    "    ret",
    // -- r12 = mmap(0, header + vCPU 0, RW, MAP_SHARED, ctl_fd, 0)
    "8:  mov eax, 9",
    "    xor edi, edi",
    "    mov esi, {ctl_map}",
    "    mov edx, 3",
    "    mov r10d, 1",
    "    mov r8d, {ctl_fd}",
    "    xor r9d, r9d",
    "    syscall",
    "    mov r12, rax",
    "    ret",
    "9:  .ascii \"hello from stub\\n\"",
    // -- parameters, patched into the copy: mode: u32, status: u32, then: u64, arg: u64
    "    .balign 8",
    ".globl pvmux_test_stub_params",
    ".hidden pvmux_test_stub_params",
    "pvmux_test_stub_params:",
    "    .long 0, 0",
    "    .quad 0, 0",
    ".globl pvmux_test_stub_end",
    ".hidden pvmux_test_stub_end",
    "pvmux_test_stub_end:",
    // -- a second program: spin forever
    ".globl pvmux_test_spin_start",
    ".hidden pvmux_test_spin_start",
    "pvmux_test_spin_start:",
    "24: pause",
    "    jmp 24b",
    ".globl pvmux_test_spin_end",
    ".hidden pvmux_test_spin_end",
    "pvmux_test_spin_end:",
    ".popsection",
    mem_fd = const GUEST_MEM_FD,
    ctl_fd = const CTL_FD,
    vcpu0 = const CTL_VCPU_OFFSET,
    ctl_map = const CTL_VCPU_OFFSET + PAGE_SIZE,
    mem_map = const MEM_MAP,
    msg_gpa = const MSG_GPA,
    msg_len = const MSG_LEN,
    entry_rip = const offset_of!(SandboxHeader, entry_rip),
    entry_held = const offset_of!(SandboxHeader, entry_held),
    crash_reason = const offset_of!(VcpuShared, crash_reason),
    crash_vector = const offset_of!(VcpuShared, crash_vector),
    crash_error_code = const offset_of!(VcpuShared, crash_error_code),
    crash_fault_addr = const offset_of!(VcpuShared, crash_fault_addr),
    crash_rip = const CRASH_RIP,
    vec_pf = const Vector::PageFault as u64,
    unhandled = const CrashReason::UnhandledException as u32,
    exit_crash = const STUB_EXIT_CRASH,
    hc_req = const offset_of!(VcpuShared, hc_req),
    hc_nr = const offset_of!(VcpuShared, hc_nr),
    hc_args = const offset_of!(VcpuShared, hc_args),
    hc_resp = const offset_of!(VcpuShared, hc_resp),
    hc_ret = const offset_of!(VcpuShared, hc_ret),
    console_write = const Hypercall::ConsoleWrite as u32,
);

extern "C" {
    #[link_name = "pvmux_test_stub_start"]
    static STUB_START: u8;
    #[link_name = "pvmux_test_stub_params"]
    static STUB_PARAMS: u8;
    #[link_name = "pvmux_test_stub_end"]
    static STUB_END: u8;
    #[link_name = "pvmux_test_spin_start"]
    static SPIN_START: u8;
    #[link_name = "pvmux_test_spin_end"]
    static SPIN_END: u8;
}

/// The bytes between two labels of the blob above.
fn blob(start: *const u8, end: *const u8) -> Vec<u8> {
    let len = end as usize - start as usize;
    // SAFETY: both labels lie in the same read-only section of this executable, `start`
    // before `end`; the bytes are immutable data for the life of the process.
    unsafe { core::slice::from_raw_parts(start, len) }.to_vec()
}

/// The test stub as an ELF executable.
pub(crate) fn stub(behaviour: Behaviour) -> Vec<u8> {
    let (start, params, end) = (
        &raw const STUB_START,
        &raw const STUB_PARAMS,
        &raw const STUB_END,
    );
    let mut code = blob(start, end);
    let (mode, status, then, arg) = match behaviour {
        Behaviour::Exit(status) => (0u32, status, 0u64, 0u64),
        Behaviour::Crash => (1, 0, 0, 0),
        Behaviour::Hypercalls { then, arg } => (2, 0, then as u64, arg),
    };
    let p = params as usize - start as usize;
    code[p..p + 4].copy_from_slice(&mode.to_le_bytes());
    code[p + 4..p + 8].copy_from_slice(&status.to_le_bytes());
    code[p + 8..p + 16].copy_from_slice(&then.to_le_bytes());
    code[p + 16..p + 24].copy_from_slice(&arg.to_le_bytes());
    raw_elf(&code)
}

/// A sandbox process that spins forever (it never looks at its fds).
pub(crate) fn spin_forever() -> Vec<u8> {
    let (start, end) = (&raw const SPIN_START, &raw const SPIN_END);
    raw_elf(&blob(start, end))
}

/// A minimal static ELF executable whose entry point runs `code` (for tests that need a
/// sandbox process with a given behaviour, e.g. spin forever or exit with a status).
pub(crate) fn raw_elf(code: &[u8]) -> Vec<u8> {
    let total = (64 + 56 + code.len()) as u64;
    let mut e = Vec::new();
    e.extend(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    e.extend(2u16.to_le_bytes()); // ET_EXEC
    e.extend(62u16.to_le_bytes()); // EM_X86_64
    e.extend(1u32.to_le_bytes());
    e.extend(0x400078u64.to_le_bytes()); // entry
    e.extend(64u64.to_le_bytes()); // phoff
    e.extend(0u64.to_le_bytes()); // shoff
    e.extend(0u32.to_le_bytes());
    for h in [64u16, 56, 1, 64, 0, 0] {
        e.extend(h.to_le_bytes());
    }
    e.extend(1u32.to_le_bytes()); // PT_LOAD
    e.extend(5u32.to_le_bytes()); // R+X
    for x in [0u64, 0x400000, 0x400000, total, total, 0x1000] {
        e.extend(x.to_le_bytes());
    }
    e.extend(code);
    e
}
