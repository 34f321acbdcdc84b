//! `hostile=<case>`: an adversarial guest. Each case tries one attack on the host or on the
//! sandbox boundary (raw host system calls, jumps into stub code, forged signal frames, bad
//! hypercall and stub-entry arguments, scribbling on shared pages, storms, memory abuse).
//!
//! Cases that the sandbox *contains* (the attack gets an error or is trapped) print one line
//! `hostile: <case> CONTAINED` and return, so the command line goes on (normally to a clean
//! shutdown with 0); if any attempt was not contained as expected the case prints
//! `hostile: <case> NOT CONTAINED: ...` and shuts down with [`EXIT_NOT_CONTAINED`]. Cases that
//! must end the tenant (a refused stub system call, a bad `iret`, a corrupted page table, ...)
//! print what they are about to do and never return; the host reports why the tenant ended.
//!
//! Parameters come from the boot-argument options: `hostpid=N` (the host's pid, a target for
//! `kill`/`ptrace`), `canary=PATH` (a host file that must never be created), `seed=N`.

mod args;
mod evict;
mod exec;
mod flags;
mod memory;
mod net;
mod shared;
mod stubjump;
mod syscalls;
mod volume;

use alloc::vec::Vec;

use pvmux_hypercalls::layout::CTL_BASE;
use pvmux_hypercalls::{SandboxHeader, StubTable, ABI_MAGIC};

use crate::{hcall, println};

/// Exit code of a contained-style case in which some attempt was not contained.
pub(crate) const EXIT_NOT_CONTAINED: u64 = 99;

/// Runs hostile case `case`.
pub(crate) fn run(case: &str) {
    println!("hostile: case {case}");
    let ok = match case {
        "syscalls" => syscalls::run(),
        "int80" => syscalls::int80(),
        "uprobe-syscalls" => syscalls::uprobe_calls(),
        "args" => args::run(),
        "extra-vcpus" => args::extra_vcpus(),
        "net" => net::run(),
        "exec" => exec::run(),
        "storm" => shared::storm(),
        "scribble" => shared::scribble(),
        "map-beyond" => memory::map_beyond(),
        "write-kernel-text" => memory::write_kernel_text(),
        "vma-flood" => memory::vma_flood(),
        "spin-masked" => spin_masked(),
        "ac-entries" => flags::ac_entries(),
        "evict-in-entry" => evict::evict_in_entry(),
        "double-fault" => crate::commands::crash::double_fault(),
        "stack-overflow" => memory::stack_overflow(),
        "corrupt-pt" => memory::corrupt_page_tables(),
        "oom" => memory::oom(),
        "panic-bad-address" => args::panic_bad_address(),
        "iret-bad-frame" | "iret-unaligned-frame" | "iret-bad-rip" | "iret-bad-rsp" => {
            args::iret(case)
        }
        "sigreturn-mask"
        | "sigreturn-bogus-rip"
        | "sigreturn-bad-stack"
        | "sigreturn-cs32"
        | "sigreturn-no-altstack" => stubjump::sigreturn(case),
        "stub-random" => stubjump::random(seed().unwrap_or(1)),
        "volume" => volume::run(),
        _ => match case.strip_prefix("stub-syscall:") {
            Some(call) => stubjump::stub_syscall(call),
            None => {
                println!("hostile: unknown case {case}");
                hcall::shutdown(EXIT_NOT_CONTAINED)
            }
        },
    };
    if ok {
        println!("hostile: {case} CONTAINED");
    } else {
        println!("hostile: {case} NOT CONTAINED");
        hcall::shutdown(EXIT_NOT_CONTAINED)
    }
}

/// The seed of randomised cases (`seed=N`), if given.
pub(crate) fn seed() -> Option<u64> {
    crate::boot::args().options.seed
}

/// The canary path (`canary=PATH`), or a fixed harmless default.
pub(crate) fn canary_path() -> &'static str {
    crate::boot::args()
        .options
        .canary
        .unwrap_or("/tmp/pvmux-hostile-canary")
}

/// A NUL-terminated copy of `s` (leaked: hostile cases end the tenant anyway).
pub(crate) fn c_string(s: &str) -> &'static [u8] {
    let mut v: Vec<u8> = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v.leak()
}

/// The canary path (NUL-terminated); a fixed harmless default without `canary=`.
pub(crate) fn canary() -> &'static [u8] {
    c_string(canary_path())
}

/// The host pid to attack; our own sandbox would be pointless, so 1 (init) without `hostpid=`.
pub(crate) fn host_pid() -> u64 {
    crate::boot::args().options.host_pid.unwrap_or(1)
}

/// The stub table, found the way a hostile guest would: through the `SandboxHeader` in the
/// control region (not part of the guest ABI, but mapped in the sandbox).
pub(crate) fn stub_table() -> StubTable {
    // SAFETY: the control region's first page (the SandboxHeader) is mapped read-write at
    // CTL_BASE for the sandbox's whole life; `stub_table` is an atomic written by the stub.
    let ptr = unsafe { &*(CTL_BASE as *const SandboxHeader) }
        .stub_table
        .load(core::sync::atomic::Ordering::Relaxed);
    // SAFETY: the stub publishes its table's address before entering the guest; the table is
    // stub memory readable by the guest (its address is also passed at entry).
    let t = unsafe { (ptr as *const StubTable).read_volatile() };
    if t.magic != ABI_MAGIC {
        println!("hostile: stub table not found at {ptr:#x}");
        hcall::shutdown(EXIT_NOT_CONTAINED)
    }
    t
}

/// A small deterministic pseudo-random generator (xorshift64*).
pub(crate) struct Rng(u64);

impl Rng {
    /// Seeds the generator (any seed, 0 included).
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next value.
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `hostile=spin-masked`: events off, then spin forever. Only a host-side watchdog (or a
/// kill) can end this tenant.
fn spin_masked() -> bool {
    crate::stub::irq_disable();
    println!("hostile: spinning forever with events disabled");
    loop {
        core::hint::spin_loop();
    }
}
