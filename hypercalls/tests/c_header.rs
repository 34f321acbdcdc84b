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

use pvmux_hypercalls::boot::{MemRegion, BOOT_ARGS_MAX, MAX_MEM_REGIONS};
use pvmux_hypercalls::bootargs::{
    command as boot_cmd, flag, tty, BootArgsHeader, RecordHeader, BOOT_ARGS_MAGIC,
    BOOT_ARGS_VERSION,
};
use pvmux_hypercalls::channel;
use pvmux_hypercalls::exec;
use pvmux_hypercalls::frame::{
    pf, RED_ZONE, RFLAGS_IF, RFLAGS_USER_MASK, SYSCALL_COMPAT, TRAP_FRAME_SIZE,
};
use pvmux_hypercalls::hostfs::{
    self, record_len, HostfsEntry, ENTRY_ALIGN, ENTRY_HEADER, LIST_MAX_BUF, LIST_MIN_BUF, NAME_MAX,
    PATH_MAX, READ_MAX, TARGET_MAX,
};
use pvmux_hypercalls::hypercall::{stream, CONSOLE_WRITE_MAX, HC_NR_MASK, PANIC_MSG_MAX};
use pvmux_hypercalls::layout::{
    ctl_size, vcpu_shared_addr, CTL_BASE, CTL_HEADER_OFFSET, CTL_VCPU_OFFSET, DIRECT_MAP_BASE,
    GUARD_END, GUEST_FREE_BASE, KERNEL_REGION_BASE, KERNEL_REGION_SIZE, MAX_GUEST_MEM,
    PHYSMAP_BASE, WINDOW_BASE, WINDOW_END, WINDOW_SIZE,
};
use pvmux_hypercalls::resources::GuestStats;
use pvmux_hypercalls::sandbox::{
    kind, status, SharedImageRange, CTL_FD, GUEST_MEM_FD, KERNEL_IMAGE_FD, MAX_SHARED_IMAGE_RANGES,
    STUB_EXIT_CRASH, STUB_EXIT_SETUP,
};
use pvmux_hypercalls::shutdown::{self, ProgramEnd, ShutdownRecord};
use pvmux_hypercalls::stub::{FS_VCPU_ID, FS_VCPU_SHARED, STUB_ENTRIES, STUB_STACK_NEED};
use pvmux_hypercalls::user::{
    command, op, prot, user_ctx_size, user_slot_offset, user_stat, UserCtxHeader, UserExit, UserOp,
    UserSlot, USER_BASE, USER_CTX_BASE, USER_CTX_MAGIC, USER_END, USER_FPSTATE_MAX, USER_OPS_MAX,
    USER_SLOT_OFFSET, USER_SLOT_SIZE,
};
use pvmux_hypercalls::vcpu::{pending, stat};
use pvmux_hypercalls::volume;
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
             r += t->user_wait(0x1000, 1, 0) + t->user_wake(0x1000);\n\
             r += pvmux_in_user_window(PVMUX_USER_BASE, 4096);\n\
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
    S(pvmux_user_ctx_header); S(pvmux_user_op); S(pvmux_user_slot); S(pvmux_hostfs_entry);
    S(pvmux_net_addr); S(pvmux_net_publish);
    O(pvmux_net_addr, port); O(pvmux_net_addr, scope_id); O(pvmux_net_addr, addr);
    O(pvmux_net_publish, proto); O(pvmux_net_publish, peer);
    S(pvmux_boot_args_header); S(pvmux_boot_args_record);
    S(pvmux_shutdown_record); A(pvmux_shutdown_record);
    S(pvmux_guest_stats); O(pvmux_guest_stats, task_limit); O(pvmux_guest_stats, processes);
    O(pvmux_guest_stats, mem_total); O(pvmux_guest_stats, mem_free);
    A(pvmux_boot_info); A(pvmux_trap_frame); A(pvmux_stub_table); A(pvmux_sandbox_header);
    A(pvmux_vcpu_shared); A(pvmux_user_ctx_header); A(pvmux_user_op); A(pvmux_user_slot);
    A(pvmux_hostfs_entry);
    S(pvmux_volume_request); S(pvmux_volume_response);
    O(pvmux_volume_request, volume); O(pvmux_volume_request, path_gpa);
    O(pvmux_volume_request, path_len); O(pvmux_volume_request, path2_gpa);
    O(pvmux_volume_request, path2_len); O(pvmux_volume_request, buf_gpa);
    O(pvmux_volume_request, buf_len); O(pvmux_volume_request, offset);
    O(pvmux_volume_request, mode); O(pvmux_volume_request, flags);
    O(pvmux_volume_request, atime_ns); O(pvmux_volume_request, mtime_ns);
    O(pvmux_volume_request, uid); O(pvmux_volume_request, gid);
    O(pvmux_volume_response, reserved); O(pvmux_volume_response, value);
    O(pvmux_volume_response, stat);
    P("HC_VOLUME_OP", PVMUX_HC_VOLUME_OP); P("BOOT_CMD_VOLUME", PVMUX_BOOT_CMD_VOLUME);
    P("BOOT_VOLUME_READ_ONLY", PVMUX_BOOT_VOLUME_READ_ONLY);
    P("BOOT_VOLUME_HEAD_LEN", PVMUX_BOOT_VOLUME_HEAD_LEN);
    P("VOLUME_IO_MAX", PVMUX_VOLUME_IO_MAX); P("MAX_VOLUMES", PVMUX_MAX_VOLUMES);
    P("VOLUME_PERM_MASK", PVMUX_VOLUME_PERM_MASK);
    P("VOLUME_UTIME_OMIT", PVMUX_VOLUME_UTIME_OMIT); P("VOLUME_NO_ID", PVMUX_VOLUME_NO_ID);
    P("VOLUME_LOOKUP", PVMUX_VOLUME_LOOKUP); P("VOLUME_LIST", PVMUX_VOLUME_LIST);
    P("VOLUME_READ", PVMUX_VOLUME_READ); P("VOLUME_WRITE", PVMUX_VOLUME_WRITE);
    P("VOLUME_CREATE", PVMUX_VOLUME_CREATE); P("VOLUME_MKDIR", PVMUX_VOLUME_MKDIR);
    P("VOLUME_UNLINK", PVMUX_VOLUME_UNLINK); P("VOLUME_RMDIR", PVMUX_VOLUME_RMDIR);
    P("VOLUME_RENAME", PVMUX_VOLUME_RENAME); P("VOLUME_TRUNCATE", PVMUX_VOLUME_TRUNCATE);
    P("VOLUME_SYMLINK", PVMUX_VOLUME_SYMLINK); P("VOLUME_READLINK", PVMUX_VOLUME_READLINK);
    P("VOLUME_CHMOD", PVMUX_VOLUME_CHMOD); P("VOLUME_UTIMES", PVMUX_VOLUME_UTIMES);
    P("VOLUME_FSYNC", PVMUX_VOLUME_FSYNC); P("VOLUME_CHOWN", PVMUX_VOLUME_CHOWN);
    P("VOLUME_FLAG_EXCL", PVMUX_VOLUME_FLAG_EXCL);
    P("VOLUME_FLAG_NOREPLACE", PVMUX_VOLUME_FLAG_NOREPLACE);
    P("VOLUME_FLAG_OWNER", PVMUX_VOLUME_FLAG_OWNER);
    O(pvmux_kernel_abi_header, abi_version); O(pvmux_kernel_abi_header, flags);
    O(pvmux_mem_region, len); O(pvmux_mem_region, kind);
    O(pvmux_boot_info, nr_vcpus); O(pvmux_boot_info, mem_size); O(pvmux_boot_info, mem_map);
    O(pvmux_boot_info, boot_args_len); O(pvmux_boot_info, boot_args_gpa);
    O(pvmux_boot_info, initrd_gpa); O(pvmux_boot_info, tsc_khz);
    O(pvmux_boot_info, tsc_base); O(pvmux_boot_info, clock_mult); O(pvmux_boot_info, clock_shift); O(pvmux_boot_info, flags);
    O(pvmux_boot_info, wall_clock_epoch_ns); O(pvmux_boot_info, kernel_phys_base);
    O(pvmux_boot_info, kernel_virt_base); O(pvmux_boot_info, kernel_size);
    O(pvmux_boot_info, direct_map_base); O(pvmux_boot_info, page_table_root);
    O(pvmux_boot_info, boot_stack_top); O(pvmux_boot_info, boot_stack_size);
    O(pvmux_boot_info, first_free_gpa); O(pvmux_boot_info, vcpu_shared_base);
    O(pvmux_boot_info, entropy); O(pvmux_boot_info, _reserved);
    O(pvmux_boot_args_header, version); O(pvmux_boot_args_header, header_len);
    O(pvmux_boot_args_header, total_len); O(pvmux_boot_args_header, flags);
    O(pvmux_boot_args_header, host_pid); O(pvmux_boot_args_header, seed);
    O(pvmux_boot_args_header, console_cols); O(pvmux_boot_args_header, console_rows);
    O(pvmux_boot_args_header, terminals); O(pvmux_boot_args_header, _reserved0);
    O(pvmux_boot_args_header, canary_len); O(pvmux_boot_args_header, nr_commands);
    O(pvmux_boot_args_header, nr_args); O(pvmux_boot_args_header, _reserved1);
    O(pvmux_boot_args_record, len);
    O(pvmux_shutdown_record, kind); O(pvmux_shutdown_record, flags);
    O(pvmux_shutdown_record, pid); O(pvmux_shutdown_record, signal);
    O(pvmux_shutdown_record, code); O(pvmux_shutdown_record, sender_pid);
    O(pvmux_shutdown_record, fault_vector); O(pvmux_shutdown_record, fault_addr);
    O(pvmux_shutdown_record, fault_ip); O(pvmux_shutdown_record, fault_sp);
    O(pvmux_shutdown_record, fault_error_code); O(pvmux_shutdown_record, total_vm_kib);
    O(pvmux_shutdown_record, anon_rss_kib); O(pvmux_shutdown_record, file_rss_kib);
    O(pvmux_shutdown_record, shmem_rss_kib); O(pvmux_shutdown_record, exe_len);
    O(pvmux_shutdown_record, exe);
    O(pvmux_trap_frame, rdi); O(pvmux_trap_frame, r15); O(pvmux_trap_frame, vector);
    O(pvmux_trap_frame, error_code); O(pvmux_trap_frame, fault_addr); O(pvmux_trap_frame, rip);
    O(pvmux_trap_frame, rflags); O(pvmux_trap_frame, rsp);
    O(pvmux_stub_table, nr_entries); O(pvmux_stub_table, hypercall); O(pvmux_stub_table, iret);
    O(pvmux_stub_table, halt); O(pvmux_stub_table, vcpu_start); O(pvmux_stub_table, load_root);
    O(pvmux_stub_table, prefault); O(pvmux_stub_table, null); O(pvmux_stub_table, user_wait);
    O(pvmux_stub_table, user_wake);
    O(pvmux_sandbox_header, entry_rip); O(pvmux_sandbox_header, mono_base_ns);
    O(pvmux_sandbox_header, clock_shift); O(pvmux_sandbox_header, fault_around_pages);
    O(pvmux_sandbox_header, stub_status); O(pvmux_sandbox_header, stub_step);
    O(pvmux_sandbox_header, stub_error); O(pvmux_sandbox_header, stub_table);
    O(pvmux_sandbox_header, first_insn_tsc); O(pvmux_sandbox_header, stub_start_tsc);
    O(pvmux_sandbox_header, kind); O(pvmux_sandbox_header, entry_held);
    O(pvmux_sandbox_header, user_pool_base); O(pvmux_sandbox_header, user_ctx_gpa);
    O(pvmux_sandbox_header, user_ctx_len); O(pvmux_sandbox_header, user_grant_gpa);
    O(pvmux_sandbox_header, user_isolation); O(pvmux_sandbox_header, xsave_mask);
    O(pvmux_sandbox_header, xsave_size); O(pvmux_sandbox_header, cpu_flags);
    O(pvmux_sandbox_header, shared_image); S(pvmux_shared_image_range);
    O(pvmux_shared_image_range, len); O(pvmux_shared_image_range, file_offset);
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
    O(pvmux_user_ctx_header, abi_version); O(pvmux_user_ctx_header, nr_slots);
    O(pvmux_user_ctx_header, ready); O(pvmux_user_ctx_header, dead);
    O(pvmux_user_ctx_header, dead_status);
    O(pvmux_user_op, prot); O(pvmux_user_op, addr); O(pvmux_user_op, len);
    O(pvmux_user_op, offset);
    O(pvmux_user_slot, done_seq); O(pvmux_user_slot, user_waiting);
    O(pvmux_user_slot, kernel_waiting); O(pvmux_user_slot, command); O(pvmux_user_slot, nr_ops);
    O(pvmux_user_slot, fs_base); O(pvmux_user_slot, slice_ns); O(pvmux_user_slot, fp_len);
    O(pvmux_user_slot, fp_init); O(pvmux_user_slot, exit_reason); O(pvmux_user_slot, exit_vector);
    O(pvmux_user_slot, exit_error_code); O(pvmux_user_slot, exit_addr);
    O(pvmux_user_slot, op_failed); O(pvmux_user_slot, op_errno); O(pvmux_user_slot, fp_saved_len);
    O(pvmux_user_slot, regs); O(pvmux_user_slot, stats); O(pvmux_user_slot, ops_seq);
    O(pvmux_user_slot, user_cpu); O(pvmux_user_slot, kernel_cpu);
    O(pvmux_user_slot, fp_pending); O(pvmux_user_slot, ops);
    O(pvmux_user_slot, fpstate);
    O(pvmux_hostfs_entry, mtime_ns); O(pvmux_hostfs_entry, perm); O(pvmux_hostfs_entry, uid);
    O(pvmux_hostfs_entry, gid); O(pvmux_hostfs_entry, name_len); O(pvmux_hostfs_entry, target_len);
    O(pvmux_hostfs_entry, kind); O(pvmux_hostfs_entry, reserved);
    O(pvmux_hostfs_entry, links); O(pvmux_hostfs_entry, ino);
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
    P("MAX_MEM_REGIONS", PVMUX_MAX_MEM_REGIONS); P("BOOT_ARGS_MAX", PVMUX_BOOT_ARGS_MAX);
    P("BOOT_ARGS_MAGIC", PVMUX_BOOT_ARGS_MAGIC);
    P("BOOT_ARGS_VERSION", PVMUX_BOOT_ARGS_VERSION);
    P("BOOT_ARGS_SYSCALL_REPORT", PVMUX_BOOT_ARGS_SYSCALL_REPORT);
    P("BOOT_ARGS_QUIET", PVMUX_BOOT_ARGS_QUIET); P("BOOT_ARGS_HOSTFS", PVMUX_BOOT_ARGS_HOSTFS);
    P("BOOT_ARGS_BENCH_QUICK", PVMUX_BOOT_ARGS_BENCH_QUICK);
    P("BOOT_ARGS_HOST_PID", PVMUX_BOOT_ARGS_HOST_PID); P("BOOT_ARGS_SEED", PVMUX_BOOT_ARGS_SEED);
    P("BOOT_ARGS_FLAGS_ALL", PVMUX_BOOT_ARGS_FLAGS_ALL);
    P("BOOT_ARGS_TTY_STDIN", PVMUX_BOOT_ARGS_TTY_STDIN);
    P("BOOT_ARGS_TTY_STDOUT", PVMUX_BOOT_ARGS_TTY_STDOUT);
    P("BOOT_ARGS_TTY_STDERR", PVMUX_BOOT_ARGS_TTY_STDERR);
    P("BOOT_CMD_SELFTEST", PVMUX_BOOT_CMD_SELFTEST);
    P("BOOT_CMD_FS_SELFTEST", PVMUX_BOOT_CMD_FS_SELFTEST);
    P("BOOT_CMD_EXIT", PVMUX_BOOT_CMD_EXIT); P("BOOT_CMD_SLEEP", PVMUX_BOOT_CMD_SLEEP);
    P("BOOT_CMD_PANIC", PVMUX_BOOT_CMD_PANIC); P("BOOT_CMD_SYSCALL", PVMUX_BOOT_CMD_SYSCALL);
    P("BOOT_CMD_CRASH_DOUBLE_FAULT", PVMUX_BOOT_CMD_CRASH_DOUBLE_FAULT);
    P("BOOT_CMD_CRASH_STUB_SYSCALL", PVMUX_BOOT_CMD_CRASH_STUB_SYSCALL);
    P("BOOT_CMD_BENCH", PVMUX_BOOT_CMD_BENCH); P("BOOT_CMD_HOSTILE", PVMUX_BOOT_CMD_HOSTILE);
    P("BOOT_CMD_LS", PVMUX_BOOT_CMD_LS); P("BOOT_CMD_CAT", PVMUX_BOOT_CMD_CAT);
    P("BOOT_CMD_ENV", PVMUX_BOOT_CMD_ENV); P("BOOT_CMD_WORKDIR", PVMUX_BOOT_CMD_WORKDIR);
    P("BOOT_CMD_RLIMIT", PVMUX_BOOT_CMD_RLIMIT); P("BOOT_CMD_USER", PVMUX_BOOT_CMD_USER);
    P("BOOT_CMD_GROUPS", PVMUX_BOOT_CMD_GROUPS); P("BOOT_GROUPS_MAX", PVMUX_BOOT_GROUPS_MAX);
    P("BOOT_CMD_HOSTNAME", PVMUX_BOOT_CMD_HOSTNAME);
    P("BOOT_CMD_TASK_LIMIT", PVMUX_BOOT_CMD_TASK_LIMIT); P("HOSTNAME_MAX", PVMUX_HOSTNAME_MAX);
    P("BOOT_CMD_CAPS", PVMUX_BOOT_CMD_CAPS); P("CAP_LAST_CAP", PVMUX_CAP_LAST_CAP);
    P("BOOT_CMD_USER_ISOLATION_NONE", PVMUX_BOOT_CMD_USER_ISOLATION_NONE);
    P("BOOT_CMD_NO_PATCH", PVMUX_BOOT_CMD_NO_PATCH);
    P("BOOT_CMD_CHANNEL", PVMUX_BOOT_CMD_CHANNEL);
    P("HC_CHANNEL_SEND", PVMUX_HC_CHANNEL_SEND); P("HC_CHANNEL_RECV", PVMUX_HC_CHANNEL_RECV);
    P("HC_CHANNEL_CTL", PVMUX_HC_CHANNEL_CTL); P("PENDING_CHANNEL", PVMUX_PENDING_CHANNEL);
    P("CHANNEL_MAX", PVMUX_CHANNEL_MAX); P("CHANNEL_NAME_MAX", PVMUX_CHANNEL_NAME_MAX);
    P("CHANNEL_IO_MAX", PVMUX_CHANNEL_IO_MAX);
    P("CHANNEL_CLOSED", -(PVMUX_CHANNEL_CLOSED)); P("CHANNEL_BROKEN", -(PVMUX_CHANNEL_BROKEN));
    P("CHANNEL_OP_POLL", PVMUX_CHANNEL_OP_POLL); P("CHANNEL_OP_SHUT_WR", PVMUX_CHANNEL_OP_SHUT_WR);
    P("CHANNEL_OP_SHUT_RD", PVMUX_CHANNEL_OP_SHUT_RD);
    P("CHANNEL_POLL_ALL", PVMUX_CHANNEL_POLL_READABLE | PVMUX_CHANNEL_POLL_WRITABLE |
      PVMUX_CHANNEL_POLL_HUP | PVMUX_CHANNEL_POLL_CLOSED);
    P("MEM_USABLE", PVMUX_MEM_USABLE); P("MEM_KERNEL", PVMUX_MEM_KERNEL);
    P("MEM_BOOT", PVMUX_MEM_BOOT); P("MEM_INITRD", PVMUX_MEM_INITRD);
    P("MEM_USER_POOL", PVMUX_MEM_USER_POOL);
    P("TRAP_FRAME_SIZE", PVMUX_TRAP_FRAME_SIZE); P("RED_ZONE", PVMUX_RED_ZONE);
    P("RFLAGS_IF", PVMUX_RFLAGS_IF); P("RFLAGS_USER_MASK", PVMUX_RFLAGS_USER_MASK);
    P("VEC_DE", PVMUX_VEC_DE); P("VEC_DB", PVMUX_VEC_DB); P("VEC_BP", PVMUX_VEC_BP);
    P("VEC_OF", PVMUX_VEC_OF); P("VEC_UD", PVMUX_VEC_UD); P("VEC_GP", PVMUX_VEC_GP);
    P("VEC_PF", PVMUX_VEC_PF); P("VEC_MF", PVMUX_VEC_MF); P("VEC_AC", PVMUX_VEC_AC);
    P("VEC_XM", PVMUX_VEC_XM); P("VEC_EVENT", PVMUX_VEC_EVENT);
    P("VEC_SYSCALL", PVMUX_VEC_SYSCALL);
    P("PF_PRESENT", PVMUX_PF_PRESENT); P("PF_WRITE", PVMUX_PF_WRITE);
    P("PF_RESERVED", PVMUX_PF_RESERVED); P("PF_FETCH", PVMUX_PF_FETCH);
    P("PF_USER", PVMUX_PF_USER); P("SYSCALL_COMPAT", PVMUX_SYSCALL_COMPAT);
    P("STUB_STACK_NEED", PVMUX_STUB_STACK_NEED); P("STUB_ENTRIES", PVMUX_STUB_ENTRIES);
    P("FS_VCPU_SHARED", PVMUX_FS_VCPU_SHARED); P("FS_VCPU_ID", PVMUX_FS_VCPU_ID);
    P("HC_FLAG_NOSPIN", PVMUX_HC_FLAG_NOSPIN); P("HC_NR_MASK", PVMUX_HC_NR_MASK);
    P("CONSOLE_WRITE_MAX", PVMUX_CONSOLE_WRITE_MAX); P("PANIC_MSG_MAX", PVMUX_PANIC_MSG_MAX);
    P("HC_NOP", PVMUX_HC_NOP); P("HC_CONSOLE_WRITE", PVMUX_HC_CONSOLE_WRITE);
    P("HC_SHUTDOWN", PVMUX_HC_SHUTDOWN); P("HC_PANIC", PVMUX_HC_PANIC);
    P("HC_WALL_CLOCK", PVMUX_HC_WALL_CLOCK); P("HC_SPACE_CREATE", PVMUX_HC_SPACE_CREATE);
    P("HC_SPACE_DESTROY", PVMUX_HC_SPACE_DESTROY); P("HC_CONSOLE_READ", PVMUX_HC_CONSOLE_READ);
    P("HC_HOSTFS_LIST", PVMUX_HC_HOSTFS_LIST); P("HC_HOSTFS_READ", PVMUX_HC_HOSTFS_READ);
    P("HC_HOSTFS_LOOKUP", PVMUX_HC_HOSTFS_LOOKUP);
    P("HC_NET_SOCKET", PVMUX_HC_NET_SOCKET); P("HC_NET_BIND", PVMUX_HC_NET_BIND);
    P("HC_NET_LISTEN", PVMUX_HC_NET_LISTEN); P("HC_NET_ACCEPT", PVMUX_HC_NET_ACCEPT);
    P("HC_NET_CONNECT", PVMUX_HC_NET_CONNECT); P("HC_NET_SEND", PVMUX_HC_NET_SEND);
    P("HC_NET_RECV", PVMUX_HC_NET_RECV); P("HC_NET_SHUTDOWN", PVMUX_HC_NET_SHUTDOWN);
    P("HC_NET_CLOSE", PVMUX_HC_NET_CLOSE); P("HC_NET_POLL", PVMUX_HC_NET_POLL);
    P("HC_NET_NAME", PVMUX_HC_NET_NAME); P("HC_NET_SET_OPT", PVMUX_HC_NET_SET_OPT);
    P("HC_NET_GET_OPT", PVMUX_HC_NET_GET_OPT); P("HC_NET_PUBLISHED", PVMUX_HC_NET_PUBLISHED);
    P("HC_EXEC_FETCH", PVMUX_HC_EXEC_FETCH); P("HC_EXEC_STATUS", PVMUX_HC_EXEC_STATUS);
    P("HC_EXEC_WRITE", PVMUX_HC_EXEC_WRITE); P("HC_EXEC_READ", PVMUX_HC_EXEC_READ);
    P("HC_EXEC_TERM_SIZE", PVMUX_HC_EXEC_TERM_SIZE);
    S(pvmux_exec_request_header); O(pvmux_exec_request_header, header_len);
    O(pvmux_exec_request_header, total_len); O(pvmux_exec_request_header, flags);
    O(pvmux_exec_request_header, session); O(pvmux_exec_request_header, uid);
    O(pvmux_exec_request_header, gid); O(pvmux_exec_request_header, nr_args);
    O(pvmux_exec_request_header, nr_env); O(pvmux_exec_request_header, cwd_len);
    O(pvmux_exec_request_header, tty_rows); O(pvmux_exec_request_header, tty_cols);
    P("EXEC_REQUEST_MAGIC", PVMUX_EXEC_REQUEST_MAGIC); P("EXEC_REQUEST_MAX", PVMUX_EXEC_REQUEST_MAX);
    P("EXEC_IO_MAX", PVMUX_EXEC_IO_MAX); P("EXEC_MAX_SESSIONS", PVMUX_EXEC_MAX_SESSIONS);
    P("EXEC_OUTPUT_BUFFER", PVMUX_EXEC_OUTPUT_BUFFER);
    P("EXEC_INPUT_BUFFER", PVMUX_EXEC_INPUT_BUFFER);
    P("EXEC_STREAM_STDOUT", PVMUX_EXEC_STREAM_STDOUT);
    P("EXEC_STREAM_STDERR", PVMUX_EXEC_STREAM_STDERR);
    P("EXEC_STARTED", PVMUX_EXEC_STARTED); P("EXEC_FAILED", PVMUX_EXEC_FAILED);
    P("EXEC_EXITED", PVMUX_EXEC_EXITED); P("EXEC_FLAG_TTY", PVMUX_EXEC_FLAG_TTY);
    P("EXEC_FLAG_USER", PVMUX_EXEC_FLAG_USER); P("PENDING_EXEC", PVMUX_PENDING_EXEC);
    P("EXEC_FLAG_RLIMITS", PVMUX_EXEC_FLAG_RLIMITS);
    P("EXEC_FLAG_GROUPS", PVMUX_EXEC_FLAG_GROUPS); P("EXEC_FLAG_CAPS", PVMUX_EXEC_FLAG_CAPS);
    P("EXEC_CAPS_LEN", PVMUX_EXEC_CAPS_LEN);
    S(pvmux_exec_rlimit); O(pvmux_exec_rlimit, reserved); O(pvmux_exec_rlimit, soft);
    O(pvmux_exec_rlimit, hard);
    P("HC_SIGNAL_TAKE", PVMUX_HC_SIGNAL_TAKE);
    P("HC_CONSOLE_WINSIZE", PVMUX_HC_CONSOLE_WINSIZE);
    P("HC_EXEC_SIGNAL_TAKE", PVMUX_HC_EXEC_SIGNAL_TAKE);
    P("PENDING_CONSOLE_SIZE", PVMUX_PENDING_CONSOLE_SIZE);
    P("HC_TASK_LIMIT_TAKE", PVMUX_HC_TASK_LIMIT_TAKE); P("HC_STATS_REPORT", PVMUX_HC_STATS_REPORT);
    P("HC_BALLOON_TAKE", PVMUX_HC_BALLOON_TAKE); P("HC_BALLOON_REPORT", PVMUX_HC_BALLOON_REPORT);
    P("HC_HANDOVER_TAKE", PVMUX_HC_HANDOVER_TAKE); P("HC_HANDOVER_RECORD", PVMUX_HC_HANDOVER_RECORD);
    P("HC_HANDOVER_ADOPTED", PVMUX_HC_HANDOVER_ADOPTED); P("HC_HANDOVER_FETCH", PVMUX_HC_HANDOVER_FETCH);
    P("BOOT_CMD_ADOPT", PVMUX_BOOT_CMD_ADOPT); P("BOOT_CMD_ADOPT_REFUSE", PVMUX_BOOT_CMD_ADOPT_REFUSE); P("BOOT_CMD_ADOPT_REFUSE_SWITCH", PVMUX_BOOT_CMD_ADOPT_REFUSE_SWITCH);
    P("BOOT_CMD_SLOW_EXIT", PVMUX_BOOT_CMD_SLOW_EXIT);
    P("ADOPT_CHECK", PVMUX_ADOPT_CHECK); P("ADOPT_ADOPTS", PVMUX_ADOPT_ADOPTS);
    P("ADOPT_REFUSES", PVMUX_ADOPT_REFUSES); P("MAX_ADOPT_REASON", PVMUX_MAX_ADOPT_REASON);
    S(pvmux_adopt_args); O(pvmux_adopt_args, version); O(pvmux_adopt_args, flags);
    O(pvmux_adopt_args, record_len); O(pvmux_adopt_args, pool_start); O(pvmux_adopt_args, pool_end);
    P("TASK_LIMIT_NONE", PVMUX_TASK_LIMIT_NONE); P("GUEST_STATS_SIZE", PVMUX_GUEST_STATS_SIZE);
    P("NET_ERRNO_BASE", PVMUX_NET_ERRNO_BASE); P("NET_IO_MAX", PVMUX_NET_IO_MAX);
    P("NET_DEFAULT_MAX_SOCKETS", PVMUX_NET_DEFAULT_MAX_SOCKETS);
    P("NET_RECV_PEEK", PVMUX_NET_RECV_PEEK);
    P("NET_MAX_UDP_FLOWS", PVMUX_NET_MAX_UDP_FLOWS);
    P("NET_MAX_UDP_QUEUED", PVMUX_NET_MAX_UDP_QUEUED);
    P("NET_MAX_UDP_FLOW_QUEUED", PVMUX_NET_MAX_UDP_FLOW_QUEUED);
    P("NET_UDP_FLOW_IDLE_SECS", PVMUX_NET_UDP_FLOW_IDLE_SECS);
    P("NET_PUBLISH_TCP", PVMUX_NET_PUBLISH_TCP); P("NET_PUBLISH_UDP", PVMUX_NET_PUBLISH_UDP);
    P("STREAM_STDOUT", PVMUX_STREAM_STDOUT); P("STREAM_KERNEL_LOG", PVMUX_STREAM_KERNEL_LOG);
    P("STREAM_STDERR", PVMUX_STREAM_STDERR);
    P("-EUNKNOWN_CALL", -PVMUX_EUNKNOWN_CALL); P("-EINVAL", -PVMUX_EINVAL);
    P("-EBADADDR", -PVMUX_EBADADDR); P("-ETOOLARGE", -PVMUX_ETOOLARGE);
    P("-EBUSY", -PVMUX_EBUSY); P("-ENORESOURCES", -PVMUX_ENORESOURCES);
    P("GUEST_MEM_FD", PVMUX_GUEST_MEM_FD); P("CTL_FD", PVMUX_CTL_FD);
    P("KERNEL_IMAGE_FD", PVMUX_KERNEL_IMAGE_FD);
    P("MAX_SHARED_IMAGE_RANGES", PVMUX_MAX_SHARED_IMAGE_RANGES);
    P("STUB_EXIT_CRASH", PVMUX_STUB_EXIT_CRASH); P("STUB_EXIT_SETUP", PVMUX_STUB_EXIT_SETUP);
    P("STATUS_STARTING", PVMUX_STUB_STATUS_STARTING); P("STATUS_READY", PVMUX_STUB_STATUS_READY);
    P("STATUS_RUNNING", PVMUX_STUB_STATUS_RUNNING); P("STATUS_FAILED", PVMUX_STUB_STATUS_FAILED);
    P("SANDBOX_KIND_KERNEL", PVMUX_SANDBOX_KIND_KERNEL);
    P("SANDBOX_KIND_USER", PVMUX_SANDBOX_KIND_USER);
    P("SANDBOX_KIND_USER_TEMPLATE", PVMUX_SANDBOX_KIND_USER_TEMPLATE);
    P("PENDING_TIMER", PVMUX_PENDING_TIMER); P("PENDING_KICK", PVMUX_PENDING_KICK);
    P("PENDING_HOST", PVMUX_PENDING_HOST); P("PENDING_INPUT", PVMUX_PENDING_INPUT);
    P("PENDING_NET", PVMUX_PENDING_NET); P("PENDING_SIGNAL", PVMUX_PENDING_SIGNAL);
    P("PENDING_RESOURCES", PVMUX_PENDING_RESOURCES);
    P("PENDING_BALLOON", PVMUX_PENDING_BALLOON);
    P("PENDING_SNAPSHOT", PVMUX_PENDING_SNAPSHOT); P("BOOT_FLAG_RESUME", PVMUX_BOOT_FLAG_RESUME);
    P("HC_SNAPSHOT_PARK", PVMUX_HC_SNAPSHOT_PARK); P("HC_SNAPSHOT_RESUMED", PVMUX_HC_SNAPSHOT_RESUMED);
    P("PENDING_DISK", PVMUX_PENDING_DISK);
    P("HC_DISK_TAKE", PVMUX_HC_DISK_TAKE); P("HC_DISK_SUBMIT", PVMUX_HC_DISK_SUBMIT);
    P("HC_DISK_REPORT", PVMUX_HC_DISK_REPORT); P("HC_DISK_MOUNTED", PVMUX_HC_DISK_MOUNTED);
    P("DISK_MOUNTED_PATH_MAX", PVMUX_DISK_MOUNTED_PATH_MAX);
    P("DISK_MOUNTED_READ_ONLY", PVMUX_DISK_MOUNTED_READ_ONLY);
    P("DISK_MOUNTED_BY_PROGRAM", PVMUX_DISK_MOUNTED_BY_PROGRAM);
    P("DISK_MOUNTED_DETACHED", PVMUX_DISK_MOUNTED_DETACHED);
    P("DISK_SECTOR_SIZE", PVMUX_DISK_SECTOR_SIZE); P("DISK_MAX_DISKS", PVMUX_DISK_MAX_DISKS);
    P("DISK_RING_MAX", PVMUX_DISK_RING_MAX); P("DISK_IO_MAX", PVMUX_DISK_IO_MAX);
    P("DISK_PATH_MAX", PVMUX_DISK_PATH_MAX); P("DISK_READ", PVMUX_DISK_READ);
    P("DISK_WRITE", PVMUX_DISK_WRITE); P("DISK_FLUSH", PVMUX_DISK_FLUSH);
    P("DISK_EVENT_ATTACH", PVMUX_DISK_EVENT_ATTACH); P("DISK_EVENT_DETACH", PVMUX_DISK_EVENT_DETACH);
    P("DISK_READ_ONLY", PVMUX_DISK_READ_ONLY);
    S(pvmux_disk_desc); O(pvmux_disk_desc, status); O(pvmux_disk_desc, sector);
    O(pvmux_disk_desc, count); O(pvmux_disk_desc, buf_gpa);
    S(pvmux_disk_event); O(pvmux_disk_event, sectors); O(pvmux_disk_event, generation);
    O(pvmux_disk_event, path);
    P("PENDING_HANDOVER", PVMUX_PENDING_HANDOVER); P("PENDING_DUMP", PVMUX_PENDING_DUMP);
    P("PENDING_ALL", PVMUX_PENDING_ALL);
    P("STAT_SHADOW_FILLS", PVMUX_STAT_SHADOW_FILLS); P("STAT_SHADOW_PAGES", PVMUX_STAT_SHADOW_PAGES);
    P("STAT_EXCEPTIONS", PVMUX_STAT_EXCEPTIONS); P("STAT_EVENTS", PVMUX_STAT_EVENTS);
    P("STAT_HYPERCALLS", PVMUX_STAT_HYPERCALLS); P("STAT_TLB_FLUSHES", PVMUX_STAT_TLB_FLUSHES);
    P("STAT_EVICTIONS", PVMUX_STAT_EVICTIONS); P("STAT_SYSCALL_TRAPS", PVMUX_STAT_SYSCALL_TRAPS);
    P("STAT_GUEST_SYSCALLS", PVMUX_STAT_GUEST_SYSCALLS); P("STAT_GUEST_FAULTS", PVMUX_STAT_GUEST_FAULTS);
    P("CRASH_UNHANDLED_EXCEPTION", PVMUX_CRASH_UNHANDLED_EXCEPTION);
    P("CRASH_DOUBLE_FAULT", PVMUX_CRASH_DOUBLE_FAULT);
    P("CRASH_STUB_FAULT", PVMUX_CRASH_STUB_FAULT);
    P("CRASH_ABI_VIOLATION", PVMUX_CRASH_ABI_VIOLATION);
    P("CRASH_OUT_OF_HOST_MAPPINGS", PVMUX_CRASH_OUT_OF_HOST_MAPPINGS);
    P("CRASH_STUB_SYSCALL_FAILED", PVMUX_CRASH_STUB_SYSCALL_FAILED);
    P("USER_BASE", PVMUX_USER_BASE); P("USER_END", PVMUX_USER_END);
    P("USER_CTX_BASE", PVMUX_USER_CTX_BASE); P("USER_SLOT_SIZE", PVMUX_USER_SLOT_SIZE);
    P("USER_SLOT_OFFSET", PVMUX_USER_SLOT_OFFSET); P("USER_CTX_SIZE(3)", PVMUX_USER_CTX_SIZE(3));
    P("USER_CTX_SIZE(64)", PVMUX_USER_CTX_SIZE(64));
    P("USER_SLOT_OFFSET_OF(5)", PVMUX_USER_SLOT_OFFSET_OF(5));
    P("USER_CTX_MAGIC", PVMUX_USER_CTX_MAGIC);
    P("USER_COMMAND_RUN", PVMUX_USER_COMMAND_RUN);
    P("USER_COMMAND_OPS_ONLY", PVMUX_USER_COMMAND_OPS_ONLY);
    P("USER_EXIT_SYSCALL", PVMUX_USER_EXIT_SYSCALL);
    P("USER_EXIT_EXCEPTION", PVMUX_USER_EXIT_EXCEPTION);
    P("USER_EXIT_INTERRUPT", PVMUX_USER_EXIT_INTERRUPT);
    P("USER_EXIT_OPS_DONE", PVMUX_USER_EXIT_OPS_DONE);
    P("USER_EXIT_OP_FAILED", PVMUX_USER_EXIT_OP_FAILED);
    P("USER_EXIT_DEAD", PVMUX_USER_EXIT_DEAD);
    P("USER_OP_MAP", PVMUX_USER_OP_MAP); P("USER_OP_UNMAP", PVMUX_USER_OP_UNMAP);
    P("USER_OP_PROTECT", PVMUX_USER_OP_PROTECT);
    P("USER_OP_MAP_POPULATE", PVMUX_USER_OP_MAP_POPULATE);
    P("USER_PROT_READ", PVMUX_USER_PROT_READ); P("USER_PROT_WRITE", PVMUX_USER_PROT_WRITE);
    P("USER_PROT_EXEC", PVMUX_USER_PROT_EXEC); P("USER_PROT_ALL", PVMUX_USER_PROT_ALL);
    P("USER_OPS_MAX", PVMUX_USER_OPS_MAX); P("USER_FPSTATE_MAX", PVMUX_USER_FPSTATE_MAX);
    P("USER_STAT_RUNS", PVMUX_USER_STAT_RUNS); P("USER_STAT_SYSCALLS", PVMUX_USER_STAT_SYSCALLS);
    P("USER_STAT_EXCEPTIONS", PVMUX_USER_STAT_EXCEPTIONS);
    P("USER_STAT_INTERRUPTS", PVMUX_USER_STAT_INTERRUPTS);
    P("USER_STAT_OPS", PVMUX_USER_STAT_OPS); P("USER_STAT_SLEEPS", PVMUX_USER_STAT_SLEEPS);
    P("USER_STAT_USER_TICKS", PVMUX_USER_STAT_USER_TICKS);
    P("HOSTFS_PATH_MAX", PVMUX_HOSTFS_PATH_MAX); P("HOSTFS_READ_MAX", PVMUX_HOSTFS_READ_MAX);
    P("HOSTFS_LIST_MAX_BUF", PVMUX_HOSTFS_LIST_MAX_BUF);
    P("HOSTFS_LIST_MIN_BUF", PVMUX_HOSTFS_LIST_MIN_BUF);
    P("HOSTFS_NAME_MAX", PVMUX_HOSTFS_NAME_MAX); P("HOSTFS_TARGET_MAX", PVMUX_HOSTFS_TARGET_MAX);
    P("HOSTFS_ENTRY_ALIGN", PVMUX_HOSTFS_ENTRY_ALIGN);
    P("HOSTFS_ENTRY_HEADER", PVMUX_HOSTFS_ENTRY_HEADER);
    P("HOSTFS_RECORD_LEN(3,5)", PVMUX_HOSTFS_RECORD_LEN(3, 5));
    P("HOSTFS_RECORD_LEN(8,0)", PVMUX_HOSTFS_RECORD_LEN(8, 0));
    P("HOSTFS_KIND_DIR", PVMUX_HOSTFS_KIND_DIR); P("HOSTFS_KIND_REG", PVMUX_HOSTFS_KIND_REG);
    P("HOSTFS_KIND_SYMLINK", PVMUX_HOSTFS_KIND_SYMLINK);
    P("HOSTFS_KIND_OTHER", PVMUX_HOSTFS_KIND_OTHER);
    P("SHUTDOWN_RECORD_MAGIC", PVMUX_SHUTDOWN_RECORD_MAGIC);
    P("SHUTDOWN_EXE_MAX", PVMUX_SHUTDOWN_EXE_MAX);
    P("SHUTDOWN_RECORD_SIZE", PVMUX_SHUTDOWN_RECORD_SIZE);
    P("PROGRAM_SIGNALED", PVMUX_PROGRAM_SIGNALED);
    P("PROGRAM_OUT_OF_MEMORY", PVMUX_PROGRAM_OUT_OF_MEMORY);
    P("SHUTDOWN_FLAG_FAULT", PVMUX_SHUTDOWN_FLAG_FAULT);
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
        (
            "sizeof pvmux_shared_image_range",
            size_of::<SharedImageRange>() as u64,
        ),
        (
            "sizeof pvmux_user_ctx_header",
            size_of::<UserCtxHeader>() as u64,
        ),
        ("sizeof pvmux_user_op", size_of::<UserOp>() as u64),
        ("sizeof pvmux_user_slot", size_of::<UserSlot>() as u64),
        ("sizeof pvmux_hostfs_entry", size_of::<HostfsEntry>() as u64),
        (
            "sizeof pvmux_boot_args_header",
            size_of::<BootArgsHeader>() as u64,
        ),
        (
            "sizeof pvmux_boot_args_record",
            size_of::<RecordHeader>() as u64,
        ),
        (
            "sizeof pvmux_guest_stats",
            size_of::<pvmux_hypercalls::resources::GuestStats>() as u64,
        ),
        (
            "sizeof pvmux_shutdown_record",
            size_of::<ShutdownRecord>() as u64,
        ),
        (
            "alignof pvmux_shutdown_record",
            align_of::<ShutdownRecord>() as u64,
        ),
        ("alignof pvmux_boot_info", align_of::<BootInfo>() as u64),
        ("alignof pvmux_trap_frame", align_of::<TrapFrame>() as u64),
        ("alignof pvmux_stub_table", align_of::<StubTable>() as u64),
        (
            "alignof pvmux_sandbox_header",
            align_of::<SandboxHeader>() as u64,
        ),
        ("alignof pvmux_vcpu_shared", align_of::<VcpuShared>() as u64),
        (
            "alignof pvmux_user_ctx_header",
            align_of::<UserCtxHeader>() as u64,
        ),
        ("alignof pvmux_user_op", align_of::<UserOp>() as u64),
        ("alignof pvmux_user_slot", align_of::<UserSlot>() as u64),
        (
            "alignof pvmux_hostfs_entry",
            align_of::<HostfsEntry>() as u64,
        ),
        o!("pvmux_kernel_abi_header", KernelAbiHeader, abi_version),
        o!("pvmux_kernel_abi_header", KernelAbiHeader, flags),
        o!("pvmux_mem_region", MemRegion, len),
        o!("pvmux_mem_region", MemRegion, kind),
        o!("pvmux_boot_info", BootInfo, nr_vcpus),
        o!("pvmux_boot_info", BootInfo, mem_size),
        o!("pvmux_boot_info", BootInfo, mem_map),
        o!("pvmux_boot_info", BootInfo, boot_args_len),
        o!("pvmux_boot_info", BootInfo, boot_args_gpa),
        o!("pvmux_boot_info", BootInfo, initrd_gpa),
        o!("pvmux_boot_info", BootInfo, tsc_khz),
        o!("pvmux_boot_info", BootInfo, tsc_base),
        o!("pvmux_boot_info", BootInfo, clock_mult),
        o!("pvmux_boot_info", BootInfo, clock_shift),
        o!("pvmux_boot_info", BootInfo, flags),
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
        o!("pvmux_boot_info", BootInfo, entropy),
        o!("pvmux_boot_info", BootInfo, _reserved),
        o!("pvmux_boot_args_header", BootArgsHeader, version),
        o!("pvmux_boot_args_header", BootArgsHeader, header_len),
        o!("pvmux_boot_args_header", BootArgsHeader, total_len),
        o!("pvmux_boot_args_header", BootArgsHeader, flags),
        o!("pvmux_boot_args_header", BootArgsHeader, host_pid),
        o!("pvmux_boot_args_header", BootArgsHeader, seed),
        o!("pvmux_boot_args_header", BootArgsHeader, console_cols),
        o!("pvmux_boot_args_header", BootArgsHeader, console_rows),
        o!("pvmux_boot_args_header", BootArgsHeader, terminals),
        o!("pvmux_boot_args_header", BootArgsHeader, _reserved0),
        o!("pvmux_boot_args_header", BootArgsHeader, canary_len),
        o!("pvmux_boot_args_header", BootArgsHeader, nr_commands),
        o!("pvmux_boot_args_header", BootArgsHeader, nr_args),
        o!("pvmux_boot_args_header", BootArgsHeader, _reserved1),
        o!("pvmux_boot_args_record", RecordHeader, len),
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
        o!("pvmux_stub_table", StubTable, user_wait),
        o!("pvmux_stub_table", StubTable, user_wake),
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
        o!("pvmux_sandbox_header", SandboxHeader, kind),
        o!("pvmux_sandbox_header", SandboxHeader, entry_held),
        o!("pvmux_sandbox_header", SandboxHeader, user_pool_base),
        o!("pvmux_sandbox_header", SandboxHeader, user_ctx_gpa),
        o!("pvmux_sandbox_header", SandboxHeader, user_ctx_len),
        o!("pvmux_sandbox_header", SandboxHeader, user_grant_gpa),
        o!("pvmux_sandbox_header", SandboxHeader, user_isolation),
        o!("pvmux_sandbox_header", SandboxHeader, xsave_mask),
        o!("pvmux_sandbox_header", SandboxHeader, xsave_size),
        o!("pvmux_sandbox_header", SandboxHeader, cpu_flags),
        o!("pvmux_sandbox_header", SandboxHeader, shared_image),
        o!("pvmux_shared_image_range", SharedImageRange, len),
        o!("pvmux_shared_image_range", SharedImageRange, file_offset),
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
        o!("pvmux_user_ctx_header", UserCtxHeader, abi_version),
        o!("pvmux_user_ctx_header", UserCtxHeader, nr_slots),
        o!("pvmux_user_ctx_header", UserCtxHeader, ready),
        o!("pvmux_user_ctx_header", UserCtxHeader, dead),
        o!("pvmux_user_ctx_header", UserCtxHeader, dead_status),
        o!("pvmux_user_op", UserOp, prot),
        o!("pvmux_user_op", UserOp, addr),
        o!("pvmux_user_op", UserOp, len),
        o!("pvmux_user_op", UserOp, offset),
        o!("pvmux_user_slot", UserSlot, done_seq),
        o!("pvmux_user_slot", UserSlot, user_waiting),
        o!("pvmux_user_slot", UserSlot, kernel_waiting),
        o!("pvmux_user_slot", UserSlot, command),
        o!("pvmux_user_slot", UserSlot, nr_ops),
        o!("pvmux_user_slot", UserSlot, fs_base),
        o!("pvmux_user_slot", UserSlot, slice_ns),
        o!("pvmux_user_slot", UserSlot, fp_len),
        o!("pvmux_user_slot", UserSlot, fp_init),
        o!("pvmux_user_slot", UserSlot, exit_reason),
        o!("pvmux_user_slot", UserSlot, exit_vector),
        o!("pvmux_user_slot", UserSlot, exit_error_code),
        o!("pvmux_user_slot", UserSlot, exit_addr),
        o!("pvmux_user_slot", UserSlot, op_failed),
        o!("pvmux_user_slot", UserSlot, op_errno),
        o!("pvmux_user_slot", UserSlot, fp_saved_len),
        o!("pvmux_user_slot", UserSlot, regs),
        o!("pvmux_user_slot", UserSlot, stats),
        o!("pvmux_user_slot", UserSlot, ops_seq),
        o!("pvmux_user_slot", UserSlot, user_cpu),
        o!("pvmux_user_slot", UserSlot, kernel_cpu),
        o!("pvmux_user_slot", UserSlot, fp_pending),
        o!("pvmux_user_slot", UserSlot, ops),
        o!("pvmux_user_slot", UserSlot, fpstate),
        o!("pvmux_hostfs_entry", HostfsEntry, mtime_ns),
        o!("pvmux_hostfs_entry", HostfsEntry, perm),
        o!("pvmux_hostfs_entry", HostfsEntry, uid),
        o!("pvmux_hostfs_entry", HostfsEntry, gid),
        o!("pvmux_hostfs_entry", HostfsEntry, name_len),
        o!("pvmux_hostfs_entry", HostfsEntry, target_len),
        o!("pvmux_hostfs_entry", HostfsEntry, kind),
        o!("pvmux_hostfs_entry", HostfsEntry, reserved),
        o!("pvmux_hostfs_entry", HostfsEntry, links),
        o!("pvmux_hostfs_entry", HostfsEntry, ino),
        o!("pvmux_guest_stats", GuestStats, task_limit),
        o!("pvmux_guest_stats", GuestStats, processes),
        o!("pvmux_guest_stats", GuestStats, mem_total),
        o!("pvmux_guest_stats", GuestStats, mem_free),
        o!("pvmux_shutdown_record", ShutdownRecord, kind),
        o!("pvmux_shutdown_record", ShutdownRecord, flags),
        o!("pvmux_shutdown_record", ShutdownRecord, pid),
        o!("pvmux_shutdown_record", ShutdownRecord, signal),
        o!("pvmux_shutdown_record", ShutdownRecord, code),
        o!("pvmux_shutdown_record", ShutdownRecord, sender_pid),
        o!("pvmux_shutdown_record", ShutdownRecord, fault_vector),
        o!("pvmux_shutdown_record", ShutdownRecord, fault_addr),
        o!("pvmux_shutdown_record", ShutdownRecord, fault_ip),
        o!("pvmux_shutdown_record", ShutdownRecord, fault_sp),
        o!("pvmux_shutdown_record", ShutdownRecord, fault_error_code),
        o!("pvmux_shutdown_record", ShutdownRecord, total_vm_kib),
        o!("pvmux_shutdown_record", ShutdownRecord, anon_rss_kib),
        o!("pvmux_shutdown_record", ShutdownRecord, file_rss_kib),
        o!("pvmux_shutdown_record", ShutdownRecord, shmem_rss_kib),
        o!("pvmux_shutdown_record", ShutdownRecord, exe_len),
        o!("pvmux_shutdown_record", ShutdownRecord, exe),
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
        ("BOOT_ARGS_MAX", BOOT_ARGS_MAX as u64),
        ("BOOT_ARGS_MAGIC", u64::from(BOOT_ARGS_MAGIC)),
        ("BOOT_ARGS_VERSION", u64::from(BOOT_ARGS_VERSION)),
        ("BOOT_ARGS_SYSCALL_REPORT", u64::from(flag::SYSCALL_REPORT)),
        ("BOOT_ARGS_QUIET", u64::from(flag::QUIET)),
        ("BOOT_ARGS_HOSTFS", u64::from(flag::HOSTFS)),
        ("BOOT_ARGS_BENCH_QUICK", u64::from(flag::BENCH_QUICK)),
        ("BOOT_ARGS_HOST_PID", u64::from(flag::HOST_PID)),
        ("BOOT_ARGS_SEED", u64::from(flag::SEED)),
        ("BOOT_ARGS_FLAGS_ALL", u64::from(flag::ALL)),
        ("BOOT_ARGS_TTY_STDIN", u64::from(tty::STDIN)),
        ("BOOT_ARGS_TTY_STDOUT", u64::from(tty::STDOUT)),
        ("BOOT_ARGS_TTY_STDERR", u64::from(tty::STDERR)),
        ("BOOT_CMD_SELFTEST", u64::from(boot_cmd::SELFTEST)),
        ("BOOT_CMD_FS_SELFTEST", u64::from(boot_cmd::FS_SELFTEST)),
        ("BOOT_CMD_EXIT", u64::from(boot_cmd::EXIT)),
        ("BOOT_CMD_SLEEP", u64::from(boot_cmd::SLEEP)),
        ("BOOT_CMD_PANIC", u64::from(boot_cmd::PANIC)),
        ("BOOT_CMD_SYSCALL", u64::from(boot_cmd::SYSCALL)),
        (
            "BOOT_CMD_CRASH_DOUBLE_FAULT",
            u64::from(boot_cmd::CRASH_DOUBLE_FAULT),
        ),
        (
            "BOOT_CMD_CRASH_STUB_SYSCALL",
            u64::from(boot_cmd::CRASH_STUB_SYSCALL),
        ),
        ("BOOT_CMD_BENCH", u64::from(boot_cmd::BENCH)),
        ("BOOT_CMD_HOSTILE", u64::from(boot_cmd::HOSTILE)),
        ("BOOT_CMD_LS", u64::from(boot_cmd::LS)),
        ("BOOT_CMD_CAT", u64::from(boot_cmd::CAT)),
        ("BOOT_CMD_ENV", u64::from(boot_cmd::ENV)),
        ("BOOT_CMD_WORKDIR", u64::from(boot_cmd::WORKDIR)),
        ("BOOT_CMD_RLIMIT", u64::from(boot_cmd::RLIMIT)),
        ("BOOT_CMD_USER", u64::from(boot_cmd::USER)),
        ("BOOT_CMD_GROUPS", u64::from(boot_cmd::GROUPS)),
        (
            "BOOT_GROUPS_MAX",
            pvmux_hypercalls::bootargs::GROUPS_MAX as u64,
        ),
        ("BOOT_CMD_HOSTNAME", u64::from(boot_cmd::HOSTNAME)),
        ("BOOT_CMD_TASK_LIMIT", u64::from(boot_cmd::TASK_LIMIT)),
        ("BOOT_CMD_CAPS", u64::from(boot_cmd::CAPS)),
        ("BOOT_CMD_NO_PATCH", u64::from(boot_cmd::NO_PATCH)),
        ("BOOT_CMD_CHANNEL", u64::from(boot_cmd::CHANNEL)),
        ("HC_CHANNEL_SEND", Hypercall::ChannelSend as u64),
        ("HC_CHANNEL_RECV", Hypercall::ChannelRecv as u64),
        ("HC_CHANNEL_CTL", Hypercall::ChannelCtl as u64),
        ("PENDING_CHANNEL", u64::from(pending::CHANNEL)),
        ("CHANNEL_MAX", u64::from(channel::MAX_CHANNELS)),
        ("CHANNEL_NAME_MAX", channel::NAME_MAX as u64),
        ("CHANNEL_IO_MAX", channel::IO_MAX),
        ("CHANNEL_CLOSED", (-channel::RET_CLOSED) as u64),
        ("CHANNEL_BROKEN", (-channel::RET_BROKEN) as u64),
        ("CHANNEL_OP_POLL", channel::op::POLL),
        ("CHANNEL_OP_SHUT_WR", channel::op::SHUT_WR),
        ("CHANNEL_OP_SHUT_RD", channel::op::SHUT_RD),
        ("CHANNEL_POLL_ALL", channel::poll::ALL),
        (
            "BOOT_CMD_USER_ISOLATION_NONE",
            u64::from(boot_cmd::USER_ISOLATION_NONE),
        ),
        (
            "CAP_LAST_CAP",
            u64::from(pvmux_hypercalls::bootargs::CAP_LAST_CAP),
        ),
        (
            "HOSTNAME_MAX",
            pvmux_hypercalls::bootargs::HOSTNAME_MAX as u64,
        ),
        ("MEM_USABLE", MemRegionKind::Usable as u64),
        ("MEM_KERNEL", MemRegionKind::Kernel as u64),
        ("MEM_BOOT", MemRegionKind::Boot as u64),
        ("MEM_INITRD", MemRegionKind::Initrd as u64),
        ("MEM_USER_POOL", MemRegionKind::UserPool as u64),
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
        ("PF_USER", pf::USER),
        ("SYSCALL_COMPAT", SYSCALL_COMPAT),
        ("STUB_STACK_NEED", STUB_STACK_NEED),
        ("STUB_ENTRIES", u64::from(STUB_ENTRIES)),
        ("FS_VCPU_SHARED", u64::from(FS_VCPU_SHARED)),
        ("FS_VCPU_ID", u64::from(FS_VCPU_ID)),
        ("HC_FLAG_NOSPIN", HC_FLAG_NOSPIN),
        ("HC_NR_MASK", HC_NR_MASK),
        ("CONSOLE_WRITE_MAX", CONSOLE_WRITE_MAX),
        ("PANIC_MSG_MAX", PANIC_MSG_MAX),
        ("HC_NOP", Hypercall::Nop as u64),
        ("HC_CONSOLE_WRITE", Hypercall::ConsoleWrite as u64),
        ("HC_SHUTDOWN", Hypercall::Shutdown as u64),
        ("HC_PANIC", Hypercall::Panic as u64),
        ("HC_WALL_CLOCK", Hypercall::WallClock as u64),
        ("HC_SPACE_CREATE", Hypercall::SpaceCreate as u64),
        ("HC_SPACE_DESTROY", Hypercall::SpaceDestroy as u64),
        ("HC_CONSOLE_READ", Hypercall::ConsoleRead as u64),
        ("HC_HOSTFS_LIST", Hypercall::HostfsList as u64),
        ("HC_HOSTFS_READ", Hypercall::HostfsRead as u64),
        ("HC_NET_SOCKET", Hypercall::NetSocket as u64),
        ("HC_NET_BIND", Hypercall::NetBind as u64),
        ("HC_NET_LISTEN", Hypercall::NetListen as u64),
        ("HC_NET_ACCEPT", Hypercall::NetAccept as u64),
        ("HC_NET_CONNECT", Hypercall::NetConnect as u64),
        ("HC_NET_SEND", Hypercall::NetSend as u64),
        ("HC_NET_RECV", Hypercall::NetRecv as u64),
        ("HC_NET_SHUTDOWN", Hypercall::NetShutdown as u64),
        ("HC_NET_CLOSE", Hypercall::NetClose as u64),
        ("HC_NET_POLL", Hypercall::NetPoll as u64),
        ("HC_NET_NAME", Hypercall::NetName as u64),
        ("HC_NET_SET_OPT", Hypercall::NetSetOpt as u64),
        ("HC_NET_GET_OPT", Hypercall::NetGetOpt as u64),
        ("HC_NET_PUBLISHED", Hypercall::NetPublished as u64),
        ("HC_HOSTFS_LOOKUP", Hypercall::HostfsLookup as u64),
        ("HC_SIGNAL_TAKE", Hypercall::SignalTake as u64),
        ("HC_CONSOLE_WINSIZE", Hypercall::ConsoleWinsize as u64),
        ("HC_EXEC_SIGNAL_TAKE", Hypercall::ExecSignalTake as u64),
        ("PENDING_CONSOLE_SIZE", u64::from(pending::CONSOLE_SIZE)),
        ("HC_TASK_LIMIT_TAKE", Hypercall::TaskLimitTake as u64),
        ("HC_STATS_REPORT", Hypercall::StatsReport as u64),
        ("HC_BALLOON_TAKE", Hypercall::BalloonTake as u64),
        ("HC_BALLOON_REPORT", Hypercall::BalloonReport as u64),
        ("HC_HANDOVER_TAKE", Hypercall::HandoverTake as u64),
        ("HC_HANDOVER_RECORD", Hypercall::HandoverRecord as u64),
        ("HC_HANDOVER_ADOPTED", Hypercall::HandoverAdopted as u64),
        ("HC_HANDOVER_FETCH", Hypercall::HandoverFetch as u64),
        ("BOOT_CMD_ADOPT", u64::from(boot_cmd::ADOPT)),
        ("BOOT_CMD_ADOPT_REFUSE", u64::from(boot_cmd::ADOPT_REFUSE)),
        (
            "BOOT_CMD_ADOPT_REFUSE_SWITCH",
            u64::from(boot_cmd::ADOPT_REFUSE_SWITCH),
        ),
        ("BOOT_CMD_SLOW_EXIT", u64::from(boot_cmd::SLOW_EXIT)),
        (
            "ADOPT_CHECK",
            u64::from(pvmux_hypercalls::handover::adopt_flags::CHECK),
        ),
        (
            "ADOPT_ADOPTS",
            pvmux_hypercalls::handover::adopt_status::ADOPTS,
        ),
        (
            "ADOPT_REFUSES",
            pvmux_hypercalls::handover::adopt_status::REFUSES,
        ),
        (
            "MAX_ADOPT_REASON",
            pvmux_hypercalls::handover::MAX_ADOPT_REASON,
        ),
        (
            "TASK_LIMIT_NONE",
            u64::from(pvmux_hypercalls::resources::TASK_LIMIT_NONE),
        ),
        (
            "GUEST_STATS_SIZE",
            pvmux_hypercalls::resources::GUEST_STATS_SIZE as u64,
        ),
        ("NET_ERRNO_BASE", pvmux_hypercalls::net::ERRNO_BASE as u64),
        ("NET_IO_MAX", pvmux_hypercalls::net::IO_MAX),
        (
            "NET_DEFAULT_MAX_SOCKETS",
            pvmux_hypercalls::net::DEFAULT_MAX_SOCKETS as u64,
        ),
        ("NET_RECV_PEEK", pvmux_hypercalls::net::recv::PEEK),
        (
            "NET_MAX_UDP_FLOWS",
            pvmux_hypercalls::net::MAX_UDP_FLOWS as u64,
        ),
        (
            "NET_MAX_UDP_QUEUED",
            pvmux_hypercalls::net::MAX_UDP_QUEUED as u64,
        ),
        (
            "NET_MAX_UDP_FLOW_QUEUED",
            pvmux_hypercalls::net::MAX_UDP_FLOW_QUEUED as u64,
        ),
        (
            "NET_UDP_FLOW_IDLE_SECS",
            pvmux_hypercalls::net::UDP_FLOW_IDLE_SECS,
        ),
        (
            "NET_PUBLISH_TCP",
            u64::from(pvmux_hypercalls::net::PUBLISH_TCP),
        ),
        (
            "NET_PUBLISH_UDP",
            u64::from(pvmux_hypercalls::net::PUBLISH_UDP),
        ),
        (
            "sizeof pvmux_net_addr",
            size_of::<pvmux_hypercalls::net::NetAddr>() as u64,
        ),
        (
            "sizeof pvmux_net_publish",
            size_of::<pvmux_hypercalls::net::NetPublish>() as u64,
        ),
        o!("pvmux_net_addr", pvmux_hypercalls::net::NetAddr, port),
        o!("pvmux_net_addr", pvmux_hypercalls::net::NetAddr, scope_id),
        o!("pvmux_net_addr", pvmux_hypercalls::net::NetAddr, addr),
        o!(
            "pvmux_net_publish",
            pvmux_hypercalls::net::NetPublish,
            proto
        ),
        o!("pvmux_net_publish", pvmux_hypercalls::net::NetPublish, peer),
        ("STREAM_STDOUT", stream::STDOUT),
        ("STREAM_KERNEL_LOG", stream::KERNEL_LOG),
        ("STREAM_STDERR", stream::STDERR),
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
        ("KERNEL_IMAGE_FD", KERNEL_IMAGE_FD as u64),
        ("MAX_SHARED_IMAGE_RANGES", MAX_SHARED_IMAGE_RANGES as u64),
        ("STUB_EXIT_CRASH", STUB_EXIT_CRASH as u64),
        ("STUB_EXIT_SETUP", STUB_EXIT_SETUP as u64),
        ("STATUS_STARTING", u64::from(status::STARTING)),
        ("STATUS_READY", u64::from(status::READY)),
        ("STATUS_RUNNING", u64::from(status::RUNNING)),
        ("STATUS_FAILED", u64::from(status::FAILED)),
        ("SANDBOX_KIND_KERNEL", u64::from(kind::KERNEL)),
        ("SANDBOX_KIND_USER", u64::from(kind::USER)),
        ("SANDBOX_KIND_USER_TEMPLATE", u64::from(kind::USER_TEMPLATE)),
        ("PENDING_TIMER", u64::from(pending::TIMER)),
        ("PENDING_KICK", u64::from(pending::KICK)),
        ("PENDING_HOST", u64::from(pending::HOST)),
        ("PENDING_INPUT", u64::from(pending::INPUT)),
        ("PENDING_NET", u64::from(pending::NET)),
        ("PENDING_SIGNAL", u64::from(pending::SIGNAL)),
        ("PENDING_RESOURCES", u64::from(pending::RESOURCES)),
        ("PENDING_BALLOON", u64::from(pending::BALLOON)),
        ("PENDING_SNAPSHOT", u64::from(pending::SNAPSHOT)),
        (
            "BOOT_FLAG_RESUME",
            u64::from(pvmux_hypercalls::boot::boot_flags::RESUME),
        ),
        ("HC_SNAPSHOT_PARK", Hypercall::SnapshotPark as u64),
        ("HC_SNAPSHOT_RESUMED", Hypercall::SnapshotResumed as u64),
        ("PENDING_DISK", u64::from(pending::DISK)),
        ("HC_DISK_TAKE", Hypercall::DiskTake as u64),
        ("HC_DISK_SUBMIT", Hypercall::DiskSubmit as u64),
        ("HC_DISK_REPORT", Hypercall::DiskReport as u64),
        ("HC_DISK_MOUNTED", Hypercall::DiskMounted as u64),
        (
            "DISK_MOUNTED_PATH_MAX",
            pvmux_hypercalls::disk::MOUNTED_PATH_MAX,
        ),
        (
            "DISK_MOUNTED_READ_ONLY",
            pvmux_hypercalls::disk::mounted::READ_ONLY,
        ),
        (
            "DISK_MOUNTED_BY_PROGRAM",
            pvmux_hypercalls::disk::mounted::BY_PROGRAM,
        ),
        (
            "DISK_MOUNTED_DETACHED",
            pvmux_hypercalls::disk::mounted::DETACHED,
        ),
        ("DISK_SECTOR_SIZE", pvmux_hypercalls::disk::SECTOR_SIZE),
        (
            "DISK_MAX_DISKS",
            u64::from(pvmux_hypercalls::disk::MAX_DISKS),
        ),
        ("DISK_RING_MAX", pvmux_hypercalls::disk::RING_MAX),
        ("DISK_IO_MAX", pvmux_hypercalls::disk::IO_MAX),
        ("DISK_PATH_MAX", pvmux_hypercalls::disk::PATH_MAX as u64),
        ("DISK_READ", u64::from(pvmux_hypercalls::disk::op::READ)),
        ("DISK_WRITE", u64::from(pvmux_hypercalls::disk::op::WRITE)),
        ("DISK_FLUSH", u64::from(pvmux_hypercalls::disk::op::FLUSH)),
        (
            "DISK_EVENT_ATTACH",
            u64::from(pvmux_hypercalls::disk::event::ATTACH),
        ),
        (
            "DISK_EVENT_DETACH",
            u64::from(pvmux_hypercalls::disk::event::DETACH),
        ),
        (
            "DISK_READ_ONLY",
            u64::from(pvmux_hypercalls::disk::flag::READ_ONLY),
        ),
        (
            "sizeof pvmux_disk_desc",
            size_of::<pvmux_hypercalls::disk::DiskDesc>() as u64,
        ),
        o!("pvmux_disk_desc", pvmux_hypercalls::disk::DiskDesc, status),
        o!("pvmux_disk_desc", pvmux_hypercalls::disk::DiskDesc, sector),
        o!("pvmux_disk_desc", pvmux_hypercalls::disk::DiskDesc, count),
        o!("pvmux_disk_desc", pvmux_hypercalls::disk::DiskDesc, buf_gpa),
        (
            "sizeof pvmux_disk_event",
            size_of::<pvmux_hypercalls::disk::DiskEvent>() as u64,
        ),
        o!(
            "pvmux_disk_event",
            pvmux_hypercalls::disk::DiskEvent,
            sectors
        ),
        o!(
            "pvmux_disk_event",
            pvmux_hypercalls::disk::DiskEvent,
            generation
        ),
        o!("pvmux_disk_event", pvmux_hypercalls::disk::DiskEvent, path),
        ("PENDING_HANDOVER", u64::from(pending::HANDOVER)),
        ("PENDING_DUMP", u64::from(pending::DUMP)),
        ("PENDING_ALL", u64::from(pending::ALL)),
        ("STAT_SHADOW_FILLS", stat::SHADOW_FILLS as u64),
        ("STAT_SHADOW_PAGES", stat::SHADOW_PAGES as u64),
        ("STAT_EXCEPTIONS", stat::EXCEPTIONS as u64),
        ("STAT_EVENTS", stat::EVENTS as u64),
        ("STAT_HYPERCALLS", stat::HYPERCALLS as u64),
        ("STAT_TLB_FLUSHES", stat::TLB_FLUSHES as u64),
        ("STAT_EVICTIONS", stat::EVICTIONS as u64),
        ("STAT_SYSCALL_TRAPS", stat::SYSCALL_TRAPS as u64),
        ("STAT_GUEST_SYSCALLS", stat::GUEST_SYSCALLS as u64),
        ("STAT_GUEST_FAULTS", stat::GUEST_FAULTS as u64),
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
        ("USER_BASE", USER_BASE),
        ("USER_END", USER_END),
        ("USER_CTX_BASE", USER_CTX_BASE),
        ("USER_SLOT_SIZE", USER_SLOT_SIZE),
        ("USER_SLOT_OFFSET", USER_SLOT_OFFSET),
        ("USER_CTX_SIZE(3)", user_ctx_size(3)),
        ("USER_CTX_SIZE(64)", user_ctx_size(64)),
        ("USER_SLOT_OFFSET_OF(5)", user_slot_offset(5)),
        ("USER_CTX_MAGIC", USER_CTX_MAGIC),
        ("USER_COMMAND_RUN", u64::from(command::RUN)),
        ("USER_COMMAND_OPS_ONLY", u64::from(command::OPS_ONLY)),
        ("USER_EXIT_SYSCALL", UserExit::Syscall as u64),
        ("USER_EXIT_EXCEPTION", UserExit::Exception as u64),
        ("USER_EXIT_INTERRUPT", UserExit::Interrupt as u64),
        ("USER_EXIT_OPS_DONE", UserExit::OpsDone as u64),
        ("USER_EXIT_OP_FAILED", UserExit::OpFailed as u64),
        ("USER_EXIT_DEAD", UserExit::Dead as u64),
        ("USER_OP_MAP", u64::from(op::MAP)),
        ("USER_OP_UNMAP", u64::from(op::UNMAP)),
        ("USER_OP_PROTECT", u64::from(op::PROTECT)),
        ("USER_OP_MAP_POPULATE", u64::from(op::MAP_POPULATE)),
        ("USER_PROT_READ", u64::from(prot::READ)),
        ("USER_PROT_WRITE", u64::from(prot::WRITE)),
        ("USER_PROT_EXEC", u64::from(prot::EXEC)),
        ("USER_PROT_ALL", u64::from(prot::ALL)),
        ("USER_OPS_MAX", USER_OPS_MAX as u64),
        ("USER_FPSTATE_MAX", USER_FPSTATE_MAX as u64),
        ("USER_STAT_RUNS", user_stat::RUNS as u64),
        ("USER_STAT_SYSCALLS", user_stat::SYSCALLS as u64),
        ("USER_STAT_EXCEPTIONS", user_stat::EXCEPTIONS as u64),
        ("USER_STAT_INTERRUPTS", user_stat::INTERRUPTS as u64),
        ("USER_STAT_OPS", user_stat::OPS as u64),
        ("USER_STAT_SLEEPS", user_stat::SLEEPS as u64),
        ("USER_STAT_USER_TICKS", user_stat::USER_TICKS as u64),
        ("HOSTFS_PATH_MAX", PATH_MAX),
        (
            "sizeof pvmux_volume_request",
            size_of::<volume::VolumeRequest>() as u64,
        ),
        (
            "sizeof pvmux_volume_response",
            size_of::<volume::VolumeResponse>() as u64,
        ),
        o!("pvmux_volume_request", volume::VolumeRequest, volume),
        o!("pvmux_volume_request", volume::VolumeRequest, path_gpa),
        o!("pvmux_volume_request", volume::VolumeRequest, path_len),
        o!("pvmux_volume_request", volume::VolumeRequest, path2_gpa),
        o!("pvmux_volume_request", volume::VolumeRequest, path2_len),
        o!("pvmux_volume_request", volume::VolumeRequest, buf_gpa),
        o!("pvmux_volume_request", volume::VolumeRequest, buf_len),
        o!("pvmux_volume_request", volume::VolumeRequest, offset),
        o!("pvmux_volume_request", volume::VolumeRequest, mode),
        o!("pvmux_volume_request", volume::VolumeRequest, flags),
        o!("pvmux_volume_request", volume::VolumeRequest, atime_ns),
        o!("pvmux_volume_request", volume::VolumeRequest, uid),
        o!("pvmux_volume_request", volume::VolumeRequest, gid),
        o!("pvmux_volume_request", volume::VolumeRequest, mtime_ns),
        o!("pvmux_volume_response", volume::VolumeResponse, reserved),
        o!("pvmux_volume_response", volume::VolumeResponse, value),
        o!("pvmux_volume_response", volume::VolumeResponse, stat),
        ("HC_EXEC_FETCH", Hypercall::ExecFetch as u64),
        ("HC_EXEC_STATUS", Hypercall::ExecStatus as u64),
        ("HC_EXEC_WRITE", Hypercall::ExecWrite as u64),
        ("HC_EXEC_READ", Hypercall::ExecRead as u64),
        ("HC_EXEC_TERM_SIZE", Hypercall::ExecTermSize as u64),
        (
            "sizeof pvmux_exec_request_header",
            size_of::<exec::ExecRequestHeader>() as u64,
        ),
        o!(
            "pvmux_exec_request_header",
            exec::ExecRequestHeader,
            header_len
        ),
        o!(
            "pvmux_exec_request_header",
            exec::ExecRequestHeader,
            total_len
        ),
        o!("pvmux_exec_request_header", exec::ExecRequestHeader, flags),
        o!(
            "pvmux_exec_request_header",
            exec::ExecRequestHeader,
            session
        ),
        o!("pvmux_exec_request_header", exec::ExecRequestHeader, uid),
        o!("pvmux_exec_request_header", exec::ExecRequestHeader, gid),
        o!(
            "pvmux_exec_request_header",
            exec::ExecRequestHeader,
            nr_args
        ),
        o!("pvmux_exec_request_header", exec::ExecRequestHeader, nr_env),
        o!(
            "pvmux_exec_request_header",
            exec::ExecRequestHeader,
            cwd_len
        ),
        o!(
            "pvmux_exec_request_header",
            exec::ExecRequestHeader,
            tty_rows
        ),
        o!(
            "pvmux_exec_request_header",
            exec::ExecRequestHeader,
            tty_cols
        ),
        ("EXEC_REQUEST_MAGIC", u64::from(exec::REQUEST_MAGIC)),
        ("EXEC_REQUEST_MAX", exec::REQUEST_MAX as u64),
        ("EXEC_IO_MAX", exec::IO_MAX),
        ("EXEC_MAX_SESSIONS", exec::MAX_SESSIONS as u64),
        ("EXEC_OUTPUT_BUFFER", exec::OUTPUT_BUFFER as u64),
        ("EXEC_INPUT_BUFFER", exec::INPUT_BUFFER as u64),
        ("EXEC_STREAM_STDOUT", exec::stream::STDOUT),
        ("EXEC_STREAM_STDERR", exec::stream::STDERR),
        ("EXEC_STARTED", exec::status::STARTED),
        ("EXEC_FAILED", exec::status::FAILED),
        ("EXEC_EXITED", exec::status::EXITED),
        ("EXEC_FLAG_TTY", u64::from(exec::flag::TTY)),
        ("EXEC_FLAG_USER", u64::from(exec::flag::USER)),
        ("EXEC_FLAG_RLIMITS", u64::from(exec::flag::RLIMITS)),
        ("EXEC_FLAG_GROUPS", u64::from(exec::flag::GROUPS)),
        ("EXEC_FLAG_CAPS", u64::from(exec::flag::CAPS)),
        ("EXEC_CAPS_LEN", exec::CAPS_LEN as u64),
        (
            "sizeof pvmux_exec_rlimit",
            size_of::<exec::ExecRlimit>() as u64,
        ),
        o!("pvmux_exec_rlimit", exec::ExecRlimit, reserved),
        o!("pvmux_exec_rlimit", exec::ExecRlimit, soft),
        o!("pvmux_exec_rlimit", exec::ExecRlimit, hard),
        (
            "sizeof pvmux_adopt_args",
            size_of::<pvmux_hypercalls::handover::AdoptArgs>() as u64,
        ),
        o!(
            "pvmux_adopt_args",
            pvmux_hypercalls::handover::AdoptArgs,
            version
        ),
        o!(
            "pvmux_adopt_args",
            pvmux_hypercalls::handover::AdoptArgs,
            flags
        ),
        o!(
            "pvmux_adopt_args",
            pvmux_hypercalls::handover::AdoptArgs,
            record_len
        ),
        o!(
            "pvmux_adopt_args",
            pvmux_hypercalls::handover::AdoptArgs,
            pool_start
        ),
        o!(
            "pvmux_adopt_args",
            pvmux_hypercalls::handover::AdoptArgs,
            pool_end
        ),
        ("PENDING_EXEC", u64::from(pending::EXEC)),
        ("HC_VOLUME_OP", Hypercall::VolumeOp as u64),
        ("BOOT_CMD_VOLUME", u64::from(boot_cmd::VOLUME)),
        (
            "BOOT_VOLUME_READ_ONLY",
            u64::from(pvmux_hypercalls::bootargs::volume_flag::READ_ONLY),
        ),
        (
            "BOOT_VOLUME_HEAD_LEN",
            pvmux_hypercalls::bootargs::VOLUME_HEAD_LEN as u64,
        ),
        ("VOLUME_IO_MAX", volume::IO_MAX),
        ("MAX_VOLUMES", u64::from(volume::MAX_VOLUMES)),
        ("VOLUME_PERM_MASK", u64::from(volume::PERM_MASK)),
        ("VOLUME_UTIME_OMIT", volume::UTIME_OMIT),
        ("VOLUME_NO_ID", u64::from(volume::NO_ID)),
        ("VOLUME_LOOKUP", u64::from(volume::op::LOOKUP)),
        ("VOLUME_LIST", u64::from(volume::op::LIST)),
        ("VOLUME_READ", u64::from(volume::op::READ)),
        ("VOLUME_WRITE", u64::from(volume::op::WRITE)),
        ("VOLUME_CREATE", u64::from(volume::op::CREATE)),
        ("VOLUME_MKDIR", u64::from(volume::op::MKDIR)),
        ("VOLUME_UNLINK", u64::from(volume::op::UNLINK)),
        ("VOLUME_RMDIR", u64::from(volume::op::RMDIR)),
        ("VOLUME_RENAME", u64::from(volume::op::RENAME)),
        ("VOLUME_TRUNCATE", u64::from(volume::op::TRUNCATE)),
        ("VOLUME_SYMLINK", u64::from(volume::op::SYMLINK)),
        ("VOLUME_READLINK", u64::from(volume::op::READLINK)),
        ("VOLUME_CHMOD", u64::from(volume::op::CHMOD)),
        ("VOLUME_UTIMES", u64::from(volume::op::UTIMES)),
        ("VOLUME_FSYNC", u64::from(volume::op::FSYNC)),
        ("VOLUME_CHOWN", u64::from(volume::op::CHOWN)),
        ("VOLUME_FLAG_EXCL", u64::from(volume::flag::EXCL)),
        ("VOLUME_FLAG_NOREPLACE", u64::from(volume::flag::NOREPLACE)),
        ("VOLUME_FLAG_OWNER", u64::from(volume::flag::OWNER)),
        ("HOSTFS_READ_MAX", READ_MAX),
        ("HOSTFS_LIST_MAX_BUF", LIST_MAX_BUF),
        ("HOSTFS_LIST_MIN_BUF", LIST_MIN_BUF),
        ("HOSTFS_NAME_MAX", NAME_MAX as u64),
        ("HOSTFS_TARGET_MAX", TARGET_MAX as u64),
        ("HOSTFS_ENTRY_ALIGN", ENTRY_ALIGN as u64),
        ("HOSTFS_ENTRY_HEADER", ENTRY_HEADER as u64),
        ("HOSTFS_RECORD_LEN(3,5)", record_len(3, 5) as u64),
        ("HOSTFS_RECORD_LEN(8,0)", record_len(8, 0) as u64),
        ("HOSTFS_KIND_DIR", u64::from(hostfs::kind::DIR)),
        ("HOSTFS_KIND_REG", u64::from(hostfs::kind::REG)),
        ("HOSTFS_KIND_SYMLINK", u64::from(hostfs::kind::SYMLINK)),
        ("HOSTFS_KIND_OTHER", u64::from(hostfs::kind::OTHER)),
        (
            "SHUTDOWN_RECORD_MAGIC",
            u64::from(shutdown::SHUTDOWN_RECORD_MAGIC),
        ),
        ("SHUTDOWN_EXE_MAX", shutdown::SHUTDOWN_EXE_MAX as u64),
        (
            "SHUTDOWN_RECORD_SIZE",
            shutdown::SHUTDOWN_RECORD_SIZE as u64,
        ),
        ("PROGRAM_SIGNALED", ProgramEnd::Signaled as u64),
        ("PROGRAM_OUT_OF_MEMORY", ProgramEnd::OutOfMemory as u64),
        (
            "SHUTDOWN_FLAG_FAULT",
            u64::from(shutdown::record_flags::FAULT),
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
