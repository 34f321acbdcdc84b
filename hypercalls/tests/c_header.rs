//! Checks the C header `include/pvmux_abi.h` against the Rust ABI definitions.
//!
//! 1. The header is compiled with the system C compiler (`cc -std=c11 -c`), so its
//!    `_Static_assert`s run on every `cargo test`.
//! 2. A tiny C program prints sizes, offsets and constants as the C compiler sees them; the
//!    test compares every value with `size_of`/`offset_of!`/the Rust constants.
//!
//! `cc` is required: without it the test fails with a clear message instead of skipping.

use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use pvmux_hypercalls::boot::{MemRegion, CMDLINE_MAX, MAX_MEM_REGIONS};
use pvmux_hypercalls::frame::{pf, RED_ZONE, RFLAGS_IF, RFLAGS_USER_MASK, TRAP_FRAME_SIZE};
use pvmux_hypercalls::hypercall::{CONSOLE_WRITE_MAX, HC_NR_MASK, PANIC_MSG_MAX};
use pvmux_hypercalls::layout::{
    ctl_size, vcpu_shared_addr, CTL_BASE, CTL_HEADER_OFFSET, CTL_VCPU_OFFSET, DIRECT_MAP_BASE,
    GUARD_END, GUEST_FREE_BASE, KERNEL_REGION_BASE, KERNEL_REGION_SIZE, MAX_GUEST_MEM,
    PHYSMAP_BASE, WINDOW_BASE, WINDOW_END, WINDOW_SIZE,
};
use pvmux_hypercalls::sandbox::{status, CTL_FD, GUEST_MEM_FD, STUB_EXIT_CRASH, STUB_EXIT_SETUP};
use pvmux_hypercalls::stub::{STUB_ENTRIES, STUB_STACK_NEED};
use pvmux_hypercalls::vcpu::{pending, stat};
use pvmux_hypercalls::{
    BootInfo, CrashReason, HcError, Hypercall, KernelAbiHeader, MemRegionKind, SandboxHeader,
    StubTable, TrapFrame, VcpuShared, Vector, ABI_MAGIC, ABI_VERSION, HC_FLAG_NOSPIN, MAX_VCPUS,
    PAGE_SIZE,
};

/// The directory holding `pvmux_abi.h`.
fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
}

/// A fresh scratch directory for one test.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pvmux-c-header-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

/// The C compiler: `$CC` if set, else `cc`.
fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".to_owned())
}

/// Runs the C compiler with `args`, failing the test with its diagnostics.
fn run_cc(args: &[&str]) {
    let compiler = cc();
    let out = Command::new(&compiler)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the C compiler `{compiler}` ({e}): a C compiler is required to \
                 check hypercalls/include/pvmux_abi.h (install `cc`, e.g. gcc or clang, or set CC)"
            )
        });
    assert!(
        out.status.success(),
        "`{compiler} {}` failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn header_compiles_with_static_asserts() {
    let dir = scratch_dir("compile");
    let src = dir.join("check.c");
    std::fs::write(
        &src,
        "#include \"pvmux_abi.h\"\n\
         PVMUX_DECLARE_KERNEL_ABI_HEADER();\n\
         /* Use every entry type once so that the prototypes are checked too. */\n\
         int64_t pvmux_check_calls(const struct pvmux_stub_table *t, struct pvmux_trap_frame *f);\n\
         int64_t pvmux_check_calls(const struct pvmux_stub_table *t, struct pvmux_trap_frame *f) {\n\
             int64_t r = t->hypercall(PVMUX_HC_CONSOLE_WRITE | PVMUX_HC_FLAG_NOSPIN, 0, 0, 0, 0, 0);\n\
             r += t->set_callbacks((pvmux_entry_fn)0, (pvmux_entry_fn)0);\n\
             t->irq_enable();\n\
             r += (int64_t)t->irq_disable();\n\
             t->halt();\n\
             r += t->timer_arm(t->clock_ns() + 1000000);\n\
             r += t->vcpu_start(1, 0, 0, 0) + t->vcpu_kick(1);\n\
             r += (int64_t)t->vcpu_self()->pending + (int64_t)t->vcpu_id();\n\
             r += t->load_root(0) + t->tlb_flush(PVMUX_WINDOW_BASE, 4096) + t->tlb_flush_all();\n\
             r += t->prefault(PVMUX_WINDOW_BASE, 4096, 1) + t->set_fault_around(16);\n\
             r += (int64_t)t->null() + pvmux_in_window(PVMUX_WINDOW_BASE, 1);\n\
             if (r == PVMUX_EBADADDR) t->iret(f);\n\
             return r;\n\
         }\n",
    )
    .expect("write check.c");
    let inc = include_dir();
    let obj = dir.join("check.o");
    for std in ["-std=c11", "-std=gnu11"] {
        run_cc(&[
            std,
            "-Wall",
            "-Wextra",
            "-Wpedantic",
            "-Werror",
            "-I",
            inc.to_str().expect("utf-8 path"),
            "-c",
            src.to_str().expect("utf-8 path"),
            "-o",
            obj.to_str().expect("utf-8 path"),
        ]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every value the C program prints, as `name value` lines.
const PRINTER: &str = r#"#include <inttypes.h>
#include <stdio.h>
#include "pvmux_abi.h"
#define P(name, v) printf("%s %" PRIu64 "\n", name, (uint64_t)(v))
#define S(t) P("sizeof " #t, sizeof(struct t))
#define A(t) P("alignof " #t, _Alignof(struct t))
#define O(t, f) P(#t "." #f, offsetof(struct t, f))
int main(void) {
    S(pvmux_kernel_abi_header); S(pvmux_mem_region); S(pvmux_boot_info);
    S(pvmux_trap_frame); S(pvmux_stub_table); S(pvmux_sandbox_header); S(pvmux_vcpu_shared);
    A(pvmux_boot_info); A(pvmux_trap_frame); A(pvmux_stub_table); A(pvmux_sandbox_header);
    A(pvmux_vcpu_shared);
    O(pvmux_kernel_abi_header, abi_version); O(pvmux_kernel_abi_header, flags);
    O(pvmux_mem_region, len); O(pvmux_mem_region, kind);
    O(pvmux_boot_info, nr_vcpus); O(pvmux_boot_info, mem_size); O(pvmux_boot_info, mem_map);
    O(pvmux_boot_info, cmdline); O(pvmux_boot_info, initrd_gpa); O(pvmux_boot_info, tsc_khz);
    O(pvmux_boot_info, tsc_base); O(pvmux_boot_info, clock_mult); O(pvmux_boot_info, clock_shift);
    O(pvmux_boot_info, wall_clock_epoch_ns); O(pvmux_boot_info, kernel_phys_base);
    O(pvmux_boot_info, kernel_virt_base); O(pvmux_boot_info, kernel_size);
    O(pvmux_boot_info, direct_map_base); O(pvmux_boot_info, page_table_root);
    O(pvmux_boot_info, boot_stack_top); O(pvmux_boot_info, boot_stack_size);
    O(pvmux_boot_info, first_free_gpa); O(pvmux_boot_info, vcpu_shared_base);
    O(pvmux_boot_info, _reserved);
    O(pvmux_trap_frame, rdi); O(pvmux_trap_frame, r15); O(pvmux_trap_frame, vector);
    O(pvmux_trap_frame, error_code); O(pvmux_trap_frame, fault_addr); O(pvmux_trap_frame, rip);
    O(pvmux_trap_frame, rflags); O(pvmux_trap_frame, rsp);
    O(pvmux_stub_table, nr_entries); O(pvmux_stub_table, hypercall); O(pvmux_stub_table, iret);
    O(pvmux_stub_table, halt); O(pvmux_stub_table, vcpu_start); O(pvmux_stub_table, load_root);
    O(pvmux_stub_table, prefault); O(pvmux_stub_table, null);
    O(pvmux_sandbox_header, entry_rip); O(pvmux_sandbox_header, mono_base_ns);
    O(pvmux_sandbox_header, clock_shift); O(pvmux_sandbox_header, fault_around_pages);
    O(pvmux_sandbox_header, stub_status); O(pvmux_sandbox_header, stub_step);
    O(pvmux_sandbox_header, stub_error); O(pvmux_sandbox_header, stub_table);
    O(pvmux_sandbox_header, first_insn_tsc); O(pvmux_sandbox_header, stub_start_tsc);
    O(pvmux_vcpu_shared, pending); O(pvmux_vcpu_shared, halted); O(pvmux_vcpu_shared, online);
    O(pvmux_vcpu_shared, tid); O(pvmux_vcpu_shared, vcpu_id); O(pvmux_vcpu_shared, hc_req);
    O(pvmux_vcpu_shared, guest_waiting); O(pvmux_vcpu_shared, hc_nr);
    O(pvmux_vcpu_shared, hc_args); O(pvmux_vcpu_shared, hc_resp);
    O(pvmux_vcpu_shared, host_waiting); O(pvmux_vcpu_shared, hc_ret);
    O(pvmux_vcpu_shared, hc_caller_rip); O(pvmux_vcpu_shared, hc_caller_rsp);
    O(pvmux_vcpu_shared, hc_caller_rbp); O(pvmux_vcpu_shared, crash_reason);
    O(pvmux_vcpu_shared, crash_vector); O(pvmux_vcpu_shared, crash_error_code);
    O(pvmux_vcpu_shared, crash_fault_addr); O(pvmux_vcpu_shared, crash_detail);
    O(pvmux_vcpu_shared, crash_regs); O(pvmux_vcpu_shared, stats); O(pvmux_vcpu_shared, guest);
    P("ABI_MAGIC", PVMUX_ABI_MAGIC); P("ABI_VERSION", PVMUX_ABI_VERSION);
    P("PAGE_SIZE", PVMUX_PAGE_SIZE); P("MAX_VCPUS", PVMUX_MAX_VCPUS);
    P("CTL_BASE", PVMUX_CTL_BASE); P("CTL_HEADER_OFFSET", PVMUX_CTL_HEADER_OFFSET);
    P("CTL_VCPU_OFFSET", PVMUX_CTL_VCPU_OFFSET); P("CTL_SIZE(3)", PVMUX_CTL_SIZE(3));
    P("VCPU_SHARED_ADDR(5)", PVMUX_VCPU_SHARED_ADDR(5));
    P("PHYSMAP_BASE", PVMUX_PHYSMAP_BASE); P("MAX_GUEST_MEM", PVMUX_MAX_GUEST_MEM);
    P("WINDOW_BASE", PVMUX_WINDOW_BASE); P("WINDOW_SIZE", PVMUX_WINDOW_SIZE);
    P("WINDOW_END", PVMUX_WINDOW_END); P("GUARD_END", PVMUX_GUARD_END);
    P("DIRECT_MAP_BASE", PVMUX_DIRECT_MAP_BASE); P("KERNEL_REGION_BASE", PVMUX_KERNEL_REGION_BASE);
    P("KERNEL_REGION_SIZE", PVMUX_KERNEL_REGION_SIZE); P("GUEST_FREE_BASE", PVMUX_GUEST_FREE_BASE);
    P("MAX_MEM_REGIONS", PVMUX_MAX_MEM_REGIONS); P("CMDLINE_MAX", PVMUX_CMDLINE_MAX);
    P("MEM_USABLE", PVMUX_MEM_USABLE); P("MEM_KERNEL", PVMUX_MEM_KERNEL);
    P("MEM_BOOT", PVMUX_MEM_BOOT); P("MEM_INITRD", PVMUX_MEM_INITRD);
    P("TRAP_FRAME_SIZE", PVMUX_TRAP_FRAME_SIZE); P("RED_ZONE", PVMUX_RED_ZONE);
    P("RFLAGS_IF", PVMUX_RFLAGS_IF); P("RFLAGS_USER_MASK", PVMUX_RFLAGS_USER_MASK);
    P("VEC_DE", PVMUX_VEC_DE); P("VEC_DB", PVMUX_VEC_DB); P("VEC_BP", PVMUX_VEC_BP);
    P("VEC_OF", PVMUX_VEC_OF); P("VEC_UD", PVMUX_VEC_UD); P("VEC_GP", PVMUX_VEC_GP);
    P("VEC_PF", PVMUX_VEC_PF); P("VEC_MF", PVMUX_VEC_MF); P("VEC_AC", PVMUX_VEC_AC);
    P("VEC_XM", PVMUX_VEC_XM); P("VEC_EVENT", PVMUX_VEC_EVENT);
    P("VEC_SYSCALL", PVMUX_VEC_SYSCALL);
    P("PF_PRESENT", PVMUX_PF_PRESENT); P("PF_WRITE", PVMUX_PF_WRITE);
    P("PF_RESERVED", PVMUX_PF_RESERVED); P("PF_FETCH", PVMUX_PF_FETCH);
    P("STUB_STACK_NEED", PVMUX_STUB_STACK_NEED); P("STUB_ENTRIES", PVMUX_STUB_ENTRIES);
    P("HC_FLAG_NOSPIN", PVMUX_HC_FLAG_NOSPIN); P("HC_NR_MASK", PVMUX_HC_NR_MASK);
    P("CONSOLE_WRITE_MAX", PVMUX_CONSOLE_WRITE_MAX); P("PANIC_MSG_MAX", PVMUX_PANIC_MSG_MAX);
    P("HC_NOP", PVMUX_HC_NOP); P("HC_CONSOLE_WRITE", PVMUX_HC_CONSOLE_WRITE);
    P("HC_SHUTDOWN", PVMUX_HC_SHUTDOWN); P("HC_PANIC", PVMUX_HC_PANIC);
    P("HC_WALL_CLOCK", PVMUX_HC_WALL_CLOCK);
    P("-EUNKNOWN_CALL", -PVMUX_EUNKNOWN_CALL); P("-EINVAL", -PVMUX_EINVAL);
    P("-EBADADDR", -PVMUX_EBADADDR); P("-ETOOLARGE", -PVMUX_ETOOLARGE);
    P("-EBUSY", -PVMUX_EBUSY); P("-ENORESOURCES", -PVMUX_ENORESOURCES);
    P("GUEST_MEM_FD", PVMUX_GUEST_MEM_FD); P("CTL_FD", PVMUX_CTL_FD);
    P("STUB_EXIT_CRASH", PVMUX_STUB_EXIT_CRASH); P("STUB_EXIT_SETUP", PVMUX_STUB_EXIT_SETUP);
    P("STATUS_STARTING", PVMUX_STUB_STATUS_STARTING); P("STATUS_READY", PVMUX_STUB_STATUS_READY);
    P("STATUS_RUNNING", PVMUX_STUB_STATUS_RUNNING); P("STATUS_FAILED", PVMUX_STUB_STATUS_FAILED);
    P("PENDING_TIMER", PVMUX_PENDING_TIMER); P("PENDING_KICK", PVMUX_PENDING_KICK);
    P("PENDING_HOST", PVMUX_PENDING_HOST); P("PENDING_ALL", PVMUX_PENDING_ALL);
    P("STAT_SHADOW_FILLS", PVMUX_STAT_SHADOW_FILLS); P("STAT_SHADOW_PAGES", PVMUX_STAT_SHADOW_PAGES);
    P("STAT_EXCEPTIONS", PVMUX_STAT_EXCEPTIONS); P("STAT_EVENTS", PVMUX_STAT_EVENTS);
    P("STAT_HYPERCALLS", PVMUX_STAT_HYPERCALLS); P("STAT_TLB_FLUSHES", PVMUX_STAT_TLB_FLUSHES);
    P("STAT_EVICTIONS", PVMUX_STAT_EVICTIONS); P("STAT_SYSCALL_TRAPS", PVMUX_STAT_SYSCALL_TRAPS);
    P("CRASH_UNHANDLED_EXCEPTION", PVMUX_CRASH_UNHANDLED_EXCEPTION);
    P("CRASH_DOUBLE_FAULT", PVMUX_CRASH_DOUBLE_FAULT);
    P("CRASH_STUB_FAULT", PVMUX_CRASH_STUB_FAULT);
    P("CRASH_ABI_VIOLATION", PVMUX_CRASH_ABI_VIOLATION);
    P("CRASH_OUT_OF_HOST_MAPPINGS", PVMUX_CRASH_OUT_OF_HOST_MAPPINGS);
    P("CRASH_STUB_SYSCALL_FAILED", PVMUX_CRASH_STUB_SYSCALL_FAILED);
    return 0;
}
"#;

/// The values the Rust definitions give for every name [`PRINTER`] prints.
fn rust_values() -> Vec<(&'static str, u64)> {
    macro_rules! o {
        ($c:literal, $t:ty, $f:ident) => {
            (concat!($c, ".", stringify!($f)), offset_of!($t, $f) as u64)
        };
    }
    vec![
        (
            "sizeof pvmux_kernel_abi_header",
            size_of::<KernelAbiHeader>() as u64,
        ),
        ("sizeof pvmux_mem_region", size_of::<MemRegion>() as u64),
        ("sizeof pvmux_boot_info", size_of::<BootInfo>() as u64),
        ("sizeof pvmux_trap_frame", size_of::<TrapFrame>() as u64),
        ("sizeof pvmux_stub_table", size_of::<StubTable>() as u64),
        (
            "sizeof pvmux_sandbox_header",
            size_of::<SandboxHeader>() as u64,
        ),
        ("sizeof pvmux_vcpu_shared", size_of::<VcpuShared>() as u64),
        ("alignof pvmux_boot_info", align_of::<BootInfo>() as u64),
        ("alignof pvmux_trap_frame", align_of::<TrapFrame>() as u64),
        ("alignof pvmux_stub_table", align_of::<StubTable>() as u64),
        (
            "alignof pvmux_sandbox_header",
            align_of::<SandboxHeader>() as u64,
        ),
        ("alignof pvmux_vcpu_shared", align_of::<VcpuShared>() as u64),
        o!("pvmux_kernel_abi_header", KernelAbiHeader, abi_version),
        o!("pvmux_kernel_abi_header", KernelAbiHeader, flags),
        o!("pvmux_mem_region", MemRegion, len),
        o!("pvmux_mem_region", MemRegion, kind),
        o!("pvmux_boot_info", BootInfo, nr_vcpus),
        o!("pvmux_boot_info", BootInfo, mem_size),
        o!("pvmux_boot_info", BootInfo, mem_map),
        o!("pvmux_boot_info", BootInfo, cmdline),
        o!("pvmux_boot_info", BootInfo, initrd_gpa),
        o!("pvmux_boot_info", BootInfo, tsc_khz),
        o!("pvmux_boot_info", BootInfo, tsc_base),
        o!("pvmux_boot_info", BootInfo, clock_mult),
        o!("pvmux_boot_info", BootInfo, clock_shift),
        o!("pvmux_boot_info", BootInfo, wall_clock_epoch_ns),
        o!("pvmux_boot_info", BootInfo, kernel_phys_base),
        o!("pvmux_boot_info", BootInfo, kernel_virt_base),
        o!("pvmux_boot_info", BootInfo, kernel_size),
        o!("pvmux_boot_info", BootInfo, direct_map_base),
        o!("pvmux_boot_info", BootInfo, page_table_root),
        o!("pvmux_boot_info", BootInfo, boot_stack_top),
        o!("pvmux_boot_info", BootInfo, boot_stack_size),
        o!("pvmux_boot_info", BootInfo, first_free_gpa),
        o!("pvmux_boot_info", BootInfo, vcpu_shared_base),
        o!("pvmux_boot_info", BootInfo, _reserved),
        o!("pvmux_trap_frame", TrapFrame, rdi),
        o!("pvmux_trap_frame", TrapFrame, r15),
        o!("pvmux_trap_frame", TrapFrame, vector),
        o!("pvmux_trap_frame", TrapFrame, error_code),
        o!("pvmux_trap_frame", TrapFrame, fault_addr),
        o!("pvmux_trap_frame", TrapFrame, rip),
        o!("pvmux_trap_frame", TrapFrame, rflags),
        o!("pvmux_trap_frame", TrapFrame, rsp),
        o!("pvmux_stub_table", StubTable, nr_entries),
        o!("pvmux_stub_table", StubTable, hypercall),
        o!("pvmux_stub_table", StubTable, iret),
        o!("pvmux_stub_table", StubTable, halt),
        o!("pvmux_stub_table", StubTable, vcpu_start),
        o!("pvmux_stub_table", StubTable, load_root),
        o!("pvmux_stub_table", StubTable, prefault),
        o!("pvmux_stub_table", StubTable, null),
        o!("pvmux_sandbox_header", SandboxHeader, entry_rip),
        o!("pvmux_sandbox_header", SandboxHeader, mono_base_ns),
        o!("pvmux_sandbox_header", SandboxHeader, clock_shift),
        o!("pvmux_sandbox_header", SandboxHeader, fault_around_pages),
        o!("pvmux_sandbox_header", SandboxHeader, stub_status),
        o!("pvmux_sandbox_header", SandboxHeader, stub_step),
        o!("pvmux_sandbox_header", SandboxHeader, stub_error),
        o!("pvmux_sandbox_header", SandboxHeader, stub_table),
        o!("pvmux_sandbox_header", SandboxHeader, first_insn_tsc),
        o!("pvmux_sandbox_header", SandboxHeader, stub_start_tsc),
        o!("pvmux_vcpu_shared", VcpuShared, pending),
        o!("pvmux_vcpu_shared", VcpuShared, halted),
        o!("pvmux_vcpu_shared", VcpuShared, online),
        o!("pvmux_vcpu_shared", VcpuShared, tid),
        o!("pvmux_vcpu_shared", VcpuShared, vcpu_id),
        o!("pvmux_vcpu_shared", VcpuShared, hc_req),
        o!("pvmux_vcpu_shared", VcpuShared, guest_waiting),
        o!("pvmux_vcpu_shared", VcpuShared, hc_nr),
        o!("pvmux_vcpu_shared", VcpuShared, hc_args),
        o!("pvmux_vcpu_shared", VcpuShared, hc_resp),
        o!("pvmux_vcpu_shared", VcpuShared, host_waiting),
        o!("pvmux_vcpu_shared", VcpuShared, hc_ret),
        o!("pvmux_vcpu_shared", VcpuShared, hc_caller_rip),
        o!("pvmux_vcpu_shared", VcpuShared, hc_caller_rsp),
        o!("pvmux_vcpu_shared", VcpuShared, hc_caller_rbp),
        o!("pvmux_vcpu_shared", VcpuShared, crash_reason),
        o!("pvmux_vcpu_shared", VcpuShared, crash_vector),
        o!("pvmux_vcpu_shared", VcpuShared, crash_error_code),
        o!("pvmux_vcpu_shared", VcpuShared, crash_fault_addr),
        o!("pvmux_vcpu_shared", VcpuShared, crash_detail),
        o!("pvmux_vcpu_shared", VcpuShared, crash_regs),
        o!("pvmux_vcpu_shared", VcpuShared, stats),
        o!("pvmux_vcpu_shared", VcpuShared, guest),
        ("ABI_MAGIC", ABI_MAGIC),
        ("ABI_VERSION", u64::from(ABI_VERSION)),
        ("PAGE_SIZE", PAGE_SIZE),
        ("MAX_VCPUS", u64::from(MAX_VCPUS)),
        ("CTL_BASE", CTL_BASE),
        ("CTL_HEADER_OFFSET", CTL_HEADER_OFFSET),
        ("CTL_VCPU_OFFSET", CTL_VCPU_OFFSET),
        ("CTL_SIZE(3)", ctl_size(3)),
        ("VCPU_SHARED_ADDR(5)", vcpu_shared_addr(5)),
        ("PHYSMAP_BASE", PHYSMAP_BASE),
        ("MAX_GUEST_MEM", MAX_GUEST_MEM),
        ("WINDOW_BASE", WINDOW_BASE),
        ("WINDOW_SIZE", WINDOW_SIZE),
        ("WINDOW_END", WINDOW_END),
        ("GUARD_END", GUARD_END),
        ("DIRECT_MAP_BASE", DIRECT_MAP_BASE),
        ("KERNEL_REGION_BASE", KERNEL_REGION_BASE),
        ("KERNEL_REGION_SIZE", KERNEL_REGION_SIZE),
        ("GUEST_FREE_BASE", GUEST_FREE_BASE),
        ("MAX_MEM_REGIONS", MAX_MEM_REGIONS as u64),
        ("CMDLINE_MAX", CMDLINE_MAX as u64),
        ("MEM_USABLE", MemRegionKind::Usable as u64),
        ("MEM_KERNEL", MemRegionKind::Kernel as u64),
        ("MEM_BOOT", MemRegionKind::Boot as u64),
        ("MEM_INITRD", MemRegionKind::Initrd as u64),
        ("TRAP_FRAME_SIZE", TRAP_FRAME_SIZE as u64),
        ("RED_ZONE", RED_ZONE),
        ("RFLAGS_IF", RFLAGS_IF),
        ("RFLAGS_USER_MASK", RFLAGS_USER_MASK),
        ("VEC_DE", Vector::DivideError as u64),
        ("VEC_DB", Vector::Debug as u64),
        ("VEC_BP", Vector::Breakpoint as u64),
        ("VEC_OF", Vector::Overflow as u64),
        ("VEC_UD", Vector::InvalidOpcode as u64),
        ("VEC_GP", Vector::GeneralProtection as u64),
        ("VEC_PF", Vector::PageFault as u64),
        ("VEC_MF", Vector::X87Fp as u64),
        ("VEC_AC", Vector::AlignmentCheck as u64),
        ("VEC_XM", Vector::SimdFp as u64),
        ("VEC_EVENT", Vector::Event as u64),
        ("VEC_SYSCALL", Vector::Syscall as u64),
        ("PF_PRESENT", pf::PRESENT),
        ("PF_WRITE", pf::WRITE),
        ("PF_RESERVED", pf::RESERVED),
        ("PF_FETCH", pf::FETCH),
        ("STUB_STACK_NEED", STUB_STACK_NEED),
        ("STUB_ENTRIES", u64::from(STUB_ENTRIES)),
        ("HC_FLAG_NOSPIN", HC_FLAG_NOSPIN),
        ("HC_NR_MASK", HC_NR_MASK),
        ("CONSOLE_WRITE_MAX", CONSOLE_WRITE_MAX),
        ("PANIC_MSG_MAX", PANIC_MSG_MAX),
        ("HC_NOP", Hypercall::Nop as u64),
        ("HC_CONSOLE_WRITE", Hypercall::ConsoleWrite as u64),
        ("HC_SHUTDOWN", Hypercall::Shutdown as u64),
        ("HC_PANIC", Hypercall::Panic as u64),
        ("HC_WALL_CLOCK", Hypercall::WallClock as u64),
        (
            "-EUNKNOWN_CALL",
            HcError::UnknownCall.to_ret().unsigned_abs(),
        ),
        ("-EINVAL", HcError::InvalidArgument.to_ret().unsigned_abs()),
        ("-EBADADDR", HcError::BadAddress.to_ret().unsigned_abs()),
        ("-ETOOLARGE", HcError::TooLarge.to_ret().unsigned_abs()),
        ("-EBUSY", HcError::Busy.to_ret().unsigned_abs()),
        (
            "-ENORESOURCES",
            HcError::NoResources.to_ret().unsigned_abs(),
        ),
        ("GUEST_MEM_FD", GUEST_MEM_FD as u64),
        ("CTL_FD", CTL_FD as u64),
        ("STUB_EXIT_CRASH", STUB_EXIT_CRASH as u64),
        ("STUB_EXIT_SETUP", STUB_EXIT_SETUP as u64),
        ("STATUS_STARTING", u64::from(status::STARTING)),
        ("STATUS_READY", u64::from(status::READY)),
        ("STATUS_RUNNING", u64::from(status::RUNNING)),
        ("STATUS_FAILED", u64::from(status::FAILED)),
        ("PENDING_TIMER", u64::from(pending::TIMER)),
        ("PENDING_KICK", u64::from(pending::KICK)),
        ("PENDING_HOST", u64::from(pending::HOST)),
        ("PENDING_ALL", u64::from(pending::ALL)),
        ("STAT_SHADOW_FILLS", stat::SHADOW_FILLS as u64),
        ("STAT_SHADOW_PAGES", stat::SHADOW_PAGES as u64),
        ("STAT_EXCEPTIONS", stat::EXCEPTIONS as u64),
        ("STAT_EVENTS", stat::EVENTS as u64),
        ("STAT_HYPERCALLS", stat::HYPERCALLS as u64),
        ("STAT_TLB_FLUSHES", stat::TLB_FLUSHES as u64),
        ("STAT_EVICTIONS", stat::EVICTIONS as u64),
        ("STAT_SYSCALL_TRAPS", stat::SYSCALL_TRAPS as u64),
        (
            "CRASH_UNHANDLED_EXCEPTION",
            CrashReason::UnhandledException as u64,
        ),
        ("CRASH_DOUBLE_FAULT", CrashReason::DoubleFault as u64),
        ("CRASH_STUB_FAULT", CrashReason::StubFault as u64),
        ("CRASH_ABI_VIOLATION", CrashReason::AbiViolation as u64),
        (
            "CRASH_OUT_OF_HOST_MAPPINGS",
            CrashReason::OutOfHostMappings as u64,
        ),
        (
            "CRASH_STUB_SYSCALL_FAILED",
            CrashReason::StubSyscallFailed as u64,
        ),
    ]
}

#[test]
fn c_layout_matches_rust() {
    let dir = scratch_dir("layout");
    let src = dir.join("print.c");
    let exe = dir.join("print");
    std::fs::write(&src, PRINTER).expect("write print.c");
    let inc = include_dir();
    run_cc(&[
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-I",
        inc.to_str().expect("utf-8 path"),
        src.to_str().expect("utf-8 path"),
        "-o",
        exe.to_str().expect("utf-8 path"),
    ]);
    let out = Command::new(&exe)
        .output()
        .expect("run the C layout printer");
    assert!(
        out.status.success(),
        "C layout printer failed: {}",
        out.status
    );
    let text = String::from_utf8(out.stdout).expect("printer output is UTF-8");
    let mut c: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines() {
        let (name, value) = line.rsplit_once(' ').expect("`name value` line");
        let value = value.parse().expect("decimal value");
        assert!(
            c.insert(name.to_owned(), value).is_none(),
            "{name} printed twice"
        );
    }
    println!("C sizes as compiled by `{}`:", cc());
    for (name, value) in c.iter().filter(|(n, _)| n.starts_with("sizeof")) {
        println!("  {name} = {value}");
    }
    let rust = rust_values();
    for (name, value) in &rust {
        let c_value = c
            .get(*name)
            .unwrap_or_else(|| panic!("the C printer did not print {name}"));
        assert_eq!(
            *c_value, *value,
            "{name}: C {c_value:#x} != Rust {value:#x}"
        );
    }
    assert_eq!(
        c.len(),
        rust.len(),
        "the C printer prints values the Rust side does not check"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
