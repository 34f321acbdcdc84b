//! The bootable pvmux guest kernel: `_start` and the panic handler. Everything else is the
//! `pvmux-kernel` library.
#![no_std]
#![no_main]

core::arch::global_asm!(
    ".pushsection .text._start, \"ax\", @progbits",
    ".globl _start",
    ".p2align 4",
    // rdi = &BootInfo, rsi = &StubTable, rsp ≡ 8 (mod 16), events disabled.
    "_start:",
    // A restored snapshot resumes instead of booting (pvmux-kernel's `suspend`).
    "    test dword ptr [rdi + {flags}], {resume}",
    "    jnz pvmux_resume_entry",
    "    and rsp, -16",
    "    xor ebp, ebp",
    "    call {entry}",
    "    ud2",
    ".popsection",
    entry = sym pvmux_kernel::kernel_entry,
    flags = const pvmux_kernel::BOOT_FLAGS_OFFSET,
    resume = const pvmux_kernel::BOOT_FLAG_RESUME,
);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    pvmux_kernel::panic::report(info)
}
