//! `segv`: prints one line, then writes to an unmapped low address and dies of SIGSEGV.

use std::io::Write;

/// An address in the first page, which Linux never maps (`vm.mmap_min_addr`) and neither does
/// the pvmux guest kernel.
const UNMAPPED: usize = 0x10;

fn main() {
    let mut out = std::io::stdout().lock();
    // Ignoring errors: the line is informational, the signal is the point.
    let _ = writeln!(out, "segv: writing to {UNMAPPED:#x}");
    let _ = out.flush();
    let ptr = std::ptr::with_exposed_provenance_mut::<u32>(UNMAPPED);
    // SAFETY: deliberately faulting: the address is in the never-mapped first page, so the
    // volatile store traps (SIGSEGV) before it can modify any memory.
    unsafe { ptr.write_volatile(0xdead_beef) };
    let _ = writeln!(out, "segv: still alive after the store");
    std::process::exit(1);
}
