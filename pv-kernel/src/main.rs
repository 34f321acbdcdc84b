//! The pvmux guest kernel (placeholder).
#![no_std]
#![no_main]

core::arch::global_asm!(".globl _start", "_start:", "ud2");

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
