//! `segv`: prints one line, then dies of a fault:
//! * no argument: writes to an unmapped low address (SIGSEGV);
//! * `align`: turns on alignment checking (`AC` in rflags) and loads a word from an odd
//!   address (#AC: SIGBUS, `BUS_ADRALN`).

use std::io::Write;

/// An address in the first page, which Linux never maps (`vm.mmap_min_addr`) and neither does
/// the pvmux guest kernel.
const UNMAPPED: usize = 0x10;

fn main() {
    let mut out = std::io::stdout().lock();
    if std::env::args().nth(1).as_deref() == Some("align") {
        let buf = [0u64; 2];
        let odd = buf.as_ptr() as usize + 1;
        // Ignoring errors: the line is informational, the signal is the point.
        let _ = writeln!(out, "segv: unaligned load with AC set");
        let _ = out.flush();
        let v: u64;
        // SAFETY: sets AC (rflags bit 18; user mode with CR0.AM, which Linux sets), loads 8
        // readable bytes of `buf` from an odd address, which traps with #AC before the load
        // completes, so nothing runs with AC set; the flags are pushed and popped on the
        // stack (no `nostack`).
        unsafe {
            core::arch::asm!(
                "pushfq",
                "or dword ptr [rsp], 0x40000",
                "popfq",
                "mov {v}, qword ptr [{p}]",
                "pushfq",
                "and dword ptr [rsp], 0xfffbffff",
                "popfq",
                v = out(reg) v,
                p = in(reg) odd,
            )
        };
        let _ = writeln!(out, "segv: still alive after the load ({v:#x})");
        std::process::exit(1);
    }
    let _ = writeln!(out, "segv: writing to {UNMAPPED:#x}");
    let _ = out.flush();
    let ptr = std::ptr::with_exposed_provenance_mut::<u32>(UNMAPPED);
    // SAFETY: deliberately faulting: the address is in the never-mapped first page, so the
    // volatile store traps (SIGSEGV) before it can modify any memory.
    unsafe { ptr.write_volatile(0xdead_beef) };
    let _ = writeln!(out, "segv: still alive after the store");
    std::process::exit(1);
}
