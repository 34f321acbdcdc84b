/*
 * pvmux_abi.h - the pvmux guest <-> host ABI, version 3, for C guest kernels.
 *
 * This header mirrors the Rust crate `pvmux-hypercalls` (hypercalls/src/), which is the
 * normative definition; docs/ABI.md is the prose specification. Every struct size and key
 * offset below is checked with _Static_assert against the values the Rust crate asserts, and
 * `cargo test -p pvmux-hypercalls` (tests/c_header.rs) compiles this header and compares its
 * sizes, offsets and constants with the Rust definitions.
 *
 * Conventions:
 *  - Every integer is little endian, every struct is naturally aligned (x86-64 SysV layout).
 *  - Fields that the Rust side declares as atomics (SandboxHeader, VcpuShared, UserCtxHeader,
 *    UserSlot) are plain integers here: access them with single aligned loads and stores (e.g.
 *    __atomic_load_n / __atomic_store_n / __atomic_exchange_n), never with multi-word copies.
 *  - "gpa" = guest-physical address (an offset in guest memory), "gva" = guest-virtual address
 *    (equal to the sandbox virtual address inside the guest window).
 *  - Requires C11 (_Static_assert, _Alignas) and an x86-64 SysV (LP64) compiler.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#if !defined(__x86_64__)
#error "pvmux_abi.h: pvmux guests are x86-64 only"
#endif

#ifdef __cplusplus
#define PVMUX_ALIGNAS(n) alignas(n)
extern "C" {
#else
#define PVMUX_ALIGNAS(n) _Alignas(n)
#endif

/* ------------------------------------------------------------------------------------------
 * Versioning (lib.rs)
 * ---------------------------------------------------------------------------------------- */

/* "PVMUXABI" read as a little-endian u64. */
#define PVMUX_ABI_MAGIC UINT64_C(0x49424158554d5650)
#define PVMUX_ABI_VERSION 6u
/* Guest and host page size (pvmux requires 4 KiB host pages). */
#define PVMUX_PAGE_SIZE UINT64_C(4096)
/* Largest number of vCPUs of a tenant. */
#define PVMUX_MAX_VCPUS 64u

/* ------------------------------------------------------------------------------------------
 * Sandbox address-space layout (layout.rs)
 * ---------------------------------------------------------------------------------------- */

/* Control region (ctl memfd): page 0 = SandboxHeader, page 1+i = VcpuShared of vCPU i. */
#define PVMUX_CTL_BASE UINT64_C(0x0000080000000000)
#define PVMUX_CTL_HEADER_OFFSET UINT64_C(0)
#define PVMUX_CTL_VCPU_OFFSET UINT64_C(0x1000)
#define PVMUX_CTL_SIZE(nr_vcpus) (PVMUX_CTL_VCPU_OFFSET + (uint64_t)(nr_vcpus) * PVMUX_PAGE_SIZE)
#define PVMUX_VCPU_SHARED_ADDR(i) \
    (PVMUX_CTL_BASE + PVMUX_CTL_VCPU_OFFSET + (uint64_t)(i) * PVMUX_PAGE_SIZE)
/* The stub's private linear map of all guest memory (not part of the guest's contract). */
#define PVMUX_PHYSMAP_BASE UINT64_C(0x00000c0000000000)
/* Largest guest memory of a tenant (1 TiB). */
#define PVMUX_MAX_GUEST_MEM UINT64_C(0x0000010000000000)
/* The guest window: gva == sandbox va, realised from the guest's own page tables. */
#define PVMUX_WINDOW_BASE UINT64_C(0x0000100000000000)
#define PVMUX_WINDOW_SIZE UINT64_C(0x0000100000000000) /* 16 TiB: PML4 slots 32..63 */
#define PVMUX_WINDOW_END UINT64_C(0x0000200000000000)
/* Guard after the window, never mapped. */
#define PVMUX_GUARD_END UINT64_C(0x0000300000000000)
/* Direct map placed by the domain builder: gpa p is at gva DIRECT_MAP_BASE + p. */
#define PVMUX_DIRECT_MAP_BASE UINT64_C(0x0000100000000000)
/* Region holding the kernel image at a randomised 2 MiB-aligned base. */
#define PVMUX_KERNEL_REGION_BASE UINT64_C(0x0000120000000000)
#define PVMUX_KERNEL_REGION_SIZE UINT64_C(0x0000000040000000) /* 1 GiB */
/* Start of the window area left entirely to the guest. */
#define PVMUX_GUEST_FREE_BASE UINT64_C(0x0000140000000000)

/* True if [addr, addr + len) lies inside the guest window (same as layout::in_window). */
static inline int pvmux_in_window(uint64_t addr, uint64_t len)
{
    return addr >= PVMUX_WINDOW_BASE && len <= PVMUX_WINDOW_SIZE &&
           addr - PVMUX_WINDOW_BASE <= PVMUX_WINDOW_SIZE - len;
}

/* ------------------------------------------------------------------------------------------
 * Kernel image (image.rs)
 * ---------------------------------------------------------------------------------------- */

#define PVMUX_ABI_SECTION ".pvmux_abi"

/* Must be present in section ".pvmux_abi" of the kernel ELF. */
struct pvmux_kernel_abi_header {
    uint64_t magic;       /* PVMUX_ABI_MAGIC */
    uint32_t abi_version; /* PVMUX_ABI_VERSION */
    uint32_t flags;       /* reserved, 0 */
};

#if defined(__GNUC__)
/* Defines the image's ABI header: use once, at file scope, in the kernel. */
#define PVMUX_DECLARE_KERNEL_ABI_HEADER()                                                  \
    __attribute__((section(".pvmux_abi"), used, aligned(8)))                               \
    const struct pvmux_kernel_abi_header pvmux_kernel_abi_header = {                       \
        PVMUX_ABI_MAGIC, PVMUX_ABI_VERSION, 0u}
#endif

/* ------------------------------------------------------------------------------------------
 * Boot information (boot.rs)
 * ---------------------------------------------------------------------------------------- */

#define PVMUX_MAX_MEM_REGIONS 32
#define PVMUX_BOOT_ARGS_MAX (64u << 10) /* largest boot_args_len (ABI v5; 2048 before) */

/* MemRegion.kind. Unknown kinds must be treated as reserved (not usable). */
enum pvmux_mem_region_kind {
    PVMUX_MEM_USABLE = 1, /* free memory the guest may allocate */
    PVMUX_MEM_KERNEL = 2, /* the kernel image (all loaded segments) */
    PVMUX_MEM_BOOT = 3,   /* initial page tables, boot info, boot stack (and page 0) */
    PVMUX_MEM_INITRD = 4, /* the initial RAM disk */
    /* Guest memory reserved for user pages: the only guest-physical range a user sandbox may
     * map (the kernel must not keep its own data there). Always the last region. */
    PVMUX_MEM_USER_POOL = 5,
};

struct pvmux_mem_region {
    uint64_t base;      /* gpa, page aligned */
    uint64_t len;       /* bytes, page aligned */
    uint32_t kind;      /* enum pvmux_mem_region_kind */
    uint32_t _reserved; /* 0 */
};

struct pvmux_boot_info {
    uint64_t magic;          /* PVMUX_ABI_MAGIC */
    uint32_t abi_version;    /* PVMUX_ABI_VERSION */
    uint32_t nr_vcpus;       /* 1..=PVMUX_MAX_VCPUS; vCPU 0 runs the entry point */
    uint64_t mem_size;       /* guest memory in bytes */
    uint32_t nr_mem_regions; /* valid entries in mem_map (clamp to PVMUX_MAX_MEM_REGIONS) */
    uint32_t boot_args_len;  /* bytes at boot_args_gpa (at most PVMUX_BOOT_ARGS_MAX) */
    struct pvmux_mem_region mem_map[PVMUX_MAX_MEM_REGIONS]; /* sorted, non-overlapping */
    /* ABI v5: the boot arguments (struct pvmux_boot_args_header + records) are in pages of
     * their own: page aligned, inside a PVMUX_MEM_BOOT region that does not start at 0. */
    uint64_t boot_args_gpa;
    uint64_t _reserved_args[255]; /* 0 (the boot arguments' place before ABI v5) */
    uint64_t initrd_gpa;          /* 0 if none */
    uint64_t initrd_len;          /* 0 if none */
    uint64_t tsc_khz;             /* TSC frequency in kHz */
    uint64_t tsc_base;            /* TSC at guest time 0 */
    uint64_t clock_mult;          /* ns = ((tsc - tsc_base) * clock_mult) >> clock_shift */
    uint32_t clock_shift;         /*   (128-bit product) */
    uint32_t flags;               /* PVMUX_BOOT_FLAG_*: 0 at a cold boot */
    uint64_t wall_clock_epoch_ns; /* Unix-epoch ns at guest time 0 */
    uint64_t kernel_phys_base;    /* gpa of the kernel image */
    uint64_t kernel_virt_base;    /* randomised gva the image was relocated to */
    uint64_t kernel_size;         /* memory footprint of the image in bytes */
    uint64_t direct_map_base;     /* gva of the direct map of all guest memory */
    uint64_t page_table_root;     /* gpa of the PML4 in use at entry */
    uint64_t boot_stack_top;      /* gva, top of vCPU 0's boot stack */
    uint64_t boot_stack_size;     /* bytes */
    uint64_t first_free_gpa;      /* first gpa not used by the host's boot structures */
    uint64_t vcpu_shared_base;    /* address of vCPU 0's VcpuShared; vCPU i at + i*4096 */
    uint8_t entropy[32];          /* random bytes from the host, to seed the guest's RNG
                                     (zero from an older host: not the only source) */
    uint64_t _reserved[4];        /* 0 */
};

/* Guest time in ns for a TSC value, exactly as StubTable.clock_ns computes it: ticks before
 * tsc_base count as 0, the product is 128-bit, and the stub clamps clock_shift to 63. */
#if defined(__SIZEOF_INT128__) && defined(__GNUC__)
__extension__ typedef unsigned __int128 pvmux_u128;
static inline uint64_t pvmux_guest_ns(const struct pvmux_boot_info *bi, uint64_t tsc)
{
    uint64_t ticks = tsc > bi->tsc_base ? tsc - bi->tsc_base : 0;
    unsigned shift = bi->clock_shift > 63 ? 63 : bi->clock_shift;
    return (uint64_t)(((pvmux_u128)ticks * bi->clock_mult) >> shift);
}
#endif

/* ------------------------------------------------------------------------------------------
 * Trap frame and vectors (frame.rs)
 * ---------------------------------------------------------------------------------------- */

struct pvmux_trap_frame {
    uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t vector;     /* enum pvmux_vector */
    uint64_t error_code; /* #PF/#GP error code; syscall number; pending bits for events */
    uint64_t fault_addr; /* #PF address (CR2), else 0 */
    uint64_t rip;        /* where to resume */
    uint64_t rflags;     /* bit 9 = virtual interrupt flag */
    uint64_t rsp;        /* stack pointer to resume with */
};

#define PVMUX_TRAP_FRAME_SIZE 168
/* Bytes below the interrupted rsp the stub never touches (SysV red zone). */
#define PVMUX_RED_ZONE UINT64_C(128)
/* rflags bit holding the virtual interrupt flag in a trap frame. */
#define PVMUX_RFLAGS_IF (UINT64_C(1) << 9)
/* rflags bits the guest may change through iret (CF PF AF ZF SF TF DF OF AC). */
#define PVMUX_RFLAGS_USER_MASK UINT64_C(0x00040dd5)

enum pvmux_vector {
    PVMUX_VEC_DE = 0,   /* divide error */
    PVMUX_VEC_DB = 1,   /* debug (single step, int1) */
    PVMUX_VEC_BP = 3,   /* int3; rip is after the int3 */
    PVMUX_VEC_OF = 4,   /* overflow (unused in 64-bit mode) */
    PVMUX_VEC_UD = 6,   /* invalid opcode */
    PVMUX_VEC_GP = 13,  /* general protection (privileged insn, non-canonical, bad int n) */
    PVMUX_VEC_PF = 14,  /* page fault: fault_addr, error_code = PVMUX_PF_* bits */
    PVMUX_VEC_MF = 16,  /* x87 floating point */
    PVMUX_VEC_AC = 17,  /* alignment check */
    PVMUX_VEC_XM = 19,  /* SIMD floating point */
    PVMUX_VEC_EVENT = 32,    /* virtual interrupt; error_code = PVMUX_PENDING_* bits taken */
    PVMUX_VEC_SYSCALL = 128, /* raw syscall/int 0x80, not executed; error_code = number
                                (bit 63 set for a non-x86-64 ABI, i.e. int 0x80) */
};

/* #PF error-code bits. */
#define PVMUX_PF_PRESENT (UINT64_C(1) << 0)  /* protection violation on a present page */
#define PVMUX_PF_WRITE (UINT64_C(1) << 1)    /* the access was a write */
#define PVMUX_PF_USER (UINT64_C(1) << 2)     /* user mode (user-sandbox exits only) */
#define PVMUX_PF_RESERVED (UINT64_C(1) << 3) /* a PTE points outside guest memory */
#define PVMUX_PF_FETCH (UINT64_C(1) << 4)    /* instruction fetch */
/* Bit 63 of a PVMUX_VEC_SYSCALL error code: the call used a non-native ABI (int 0x80). */
#define PVMUX_SYSCALL_COMPAT (UINT64_C(1) << 63)

/* ------------------------------------------------------------------------------------------
 * Stub entry table (stub.rs)
 * ---------------------------------------------------------------------------------------- */

/* Stack a stub call may use below the caller's rsp. */
#define PVMUX_STUB_STACK_NEED UINT64_C(4096)
/* Entry points in this ABI version's table. */
#define PVMUX_STUB_ENTRIES 25u
/* On a vCPU thread running guest kernel code, the 8 bytes at fs:PVMUX_FS_VCPU_SHARED hold
 * the address of the vCPU's struct pvmux_vcpu_shared (what vcpu_self returns). */
#define PVMUX_FS_VCPU_SHARED 8u
/* The 4 bytes at fs:PVMUX_FS_VCPU_ID hold the vCPU's index (stub memory). */
#define PVMUX_FS_VCPU_ID 16u

struct pvmux_vcpu_shared;
struct pvmux_stub_table;

/* A trap/event entry: entered (jumped to, never returns) with rdi = frame, rsp = frame - 8
 * holding a 0 "return address" (so rsp % 16 == 8 as after a call), events disabled. Leaves
 * through StubTable.iret. */
typedef void (*pvmux_entry_fn)(struct pvmux_trap_frame *frame);
/* The kernel entry point (vCPU 0): rdi = boot info, rsi = stub table. Never returns. */
typedef void (*pvmux_kernel_entry_fn)(const struct pvmux_boot_info *boot_info,
                                      const struct pvmux_stub_table *stubs);
/* A secondary vCPU's entry (vcpu_start): rdi = arg, rsi = stub table. Never returns. */
typedef void (*pvmux_vcpu_entry_fn)(uint64_t arg, const struct pvmux_stub_table *stubs);

/* Every entry uses the SysV AMD64 calling convention; errors are negative PVMUX_E* values. */
struct pvmux_stub_table {
    uint64_t magic;       /* PVMUX_ABI_MAGIC */
    uint32_t abi_version; /* PVMUX_ABI_VERSION */
    uint32_t nr_entries;  /* >= PVMUX_STUB_ENTRIES; a newer stub may have more */
    /* Host hypercall through the doorbell. nr_flags = number | PVMUX_HC_FLAG_* flags. */
    int64_t (*hypercall)(uint64_t nr_flags, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
                         uint64_t a4);
    /* In-sandbox. Registers the tenant-wide entries (0/NULL = none; a NULL event entry
     * means events go to the trap entry). 0 or PVMUX_EINVAL (outside the window). */
    int64_t (*set_callbacks)(pvmux_entry_fn trap_entry, pvmux_entry_fn event_entry);
    /* In-sandbox. Resumes the context in frame; does not return. */
    void (*iret)(const struct pvmux_trap_frame *frame);
    /* In-sandbox. Sets the virtual IF and synchronously delivers pending events. */
    void (*irq_enable)(void);
    /* In-sandbox. Clears the virtual IF, returns its previous value (0/1). */
    uint64_t (*irq_disable)(void);
    /* In-sandbox. Sleeps until a pending bit is set (events stay disabled). May return
     * spuriously. */
    void (*halt)(void);
    /* In-sandbox. One-shot timer at absolute guest time deadline_ns; 0 disarms. */
    int64_t (*timer_arm)(uint64_t deadline_ns);
    /* In-sandbox. Guest time in ns. */
    uint64_t (*clock_ns)(void);
    /* In-sandbox. Starts parked vCPU id at rip (a pvmux_vcpu_entry_fn) on rsp, rdi = arg. */
    int64_t (*vcpu_start)(uint64_t id, uint64_t rip, uint64_t rsp, uint64_t arg);
    /* In-sandbox. Sets PVMUX_PENDING_KICK on vCPU id and wakes or interrupts it. */
    int64_t (*vcpu_kick)(uint64_t id);
    /* In-sandbox. This vCPU's shared page. */
    struct pvmux_vcpu_shared *(*vcpu_self)(void);
    /* In-sandbox. This vCPU's index. */
    uint64_t (*vcpu_id)(void);
    /* In-sandbox. Switches the (tenant-wide) root page table, flushes the whole shadow. */
    int64_t (*load_root)(uint64_t pml4_gpa);
    /* In-sandbox. Invalidates the shadow of [va, va+len) (all vCPUs). */
    int64_t (*tlb_flush)(uint64_t va, uint64_t len);
    /* In-sandbox. Invalidates the whole shadow. */
    int64_t (*tlb_flush_all)(void);
    /* In-sandbox. Fills the shadow for [va, va+len) now; pages mapped or PVMUX_EBADADDR. */
    int64_t (*prefault)(uint64_t va, uint64_t len, uint64_t write);
    /* In-sandbox. Fault-around block in pages (power of two, 1..=512); previous value. */
    int64_t (*set_fault_around)(uint64_t pages);
    /* In-sandbox. Returns 0 (call-cost benchmark). */
    uint64_t (*null)(void);
    /* In-sandbox. Shared-futex wait on the 32-bit word at guest-physical gpa (4-byte aligned,
     * inside guest memory) while it equals expected (a u32), at most timeout_ns (0 = no
     * limit). 0 (woken, or the value differed), PVMUX_EBUSY (timeout or interrupted by a
     * signal: re-check), PVMUX_EBADADDR (bad gpa), PVMUX_EINVAL (expected > UINT32_MAX). */
    int64_t (*user_wait)(uint64_t gpa, uint64_t expected, uint64_t timeout_ns);
    /* In-sandbox. Shared-futex wake of every waiter on the word at guest-physical gpa (the
     * kernel side of a user context slot). The number woken, or PVMUX_EBADADDR. */
    int64_t (*user_wake)(uint64_t gpa);
    /* trusted in-process mode (ABI v6): apply user mappings; run user code */
    int64_t (*inproc_ops)(const void *ops, uint64_t n);
    int64_t (*inproc_run)(void *run);
    uint64_t inproc_syscall; /* not a function: where a patched syscall site jumps */
    int64_t (*inproc_fp_save)(void *buf, uint64_t cap); /* the kept FPU state as an image */
    int64_t (*mem_write)(uint64_t dst_gpa, const void *src, uint64_t len); /* via the memfd */
};

/* ------------------------------------------------------------------------------------------
 * Host hypercalls and errors (hypercall.rs)
 * ---------------------------------------------------------------------------------------- */

/* Flag in the high half of the number: do not spin waiting for the host; block at once. */
#define PVMUX_HC_FLAG_NOSPIN (UINT64_C(1) << 32)
/* Mask of the call number in the first argument. */
#define PVMUX_HC_NR_MASK UINT64_C(0xffffffff)
/* Largest console_write length (longer: PVMUX_ETOOLARGE). */
#define PVMUX_CONSOLE_WRITE_MAX UINT64_C(65536)
/* Largest panic message the host reads (longer messages are truncated). */
#define PVMUX_PANIC_MSG_MAX UINT64_C(4096)

/* console_write streams (argument a2). */
#define PVMUX_STREAM_STDOUT UINT64_C(0)     /* the program's standard output (host stdout) */
#define PVMUX_STREAM_KERNEL_LOG UINT64_C(1) /* kernel messages (routed by the host) */
#define PVMUX_STREAM_STDERR UINT64_C(2)     /* the program's standard error (host stderr) */

enum pvmux_hypercall {
    PVMUX_HC_NOP = 0,           /* () -> 0 */
    PVMUX_HC_CONSOLE_WRITE = 1, /* (gpa, len, stream) -> len; PVMUX_STREAM_* */
    PVMUX_HC_SHUTDOWN = 2,      /* (code, record_gpa) -> does not return; exit code & 0xff;
                                   record_gpa: 0 or a struct pvmux_shutdown_record */
    PVMUX_HC_PANIC = 3,         /* (gpa, len) -> does not return; crash report */
    PVMUX_HC_WALL_CLOCK = 4,    /* () -> ns since the Unix epoch */
    PVMUX_HC_SPACE_CREATE = 5,  /* (ctx_gpa, reaped_gpa) -> space handle (>= 1); see "Guest user mode" */
    PVMUX_HC_SPACE_DESTROY = 6, /* (handle) -> 0 once the user sandbox has exited */
    PVMUX_HC_CONSOLE_READ = 7,  /* (gpa, len) -> bytes, 0 at end of input, PVMUX_EBUSY if none */
    PVMUX_HC_HOSTFS_LIST = 8,   /* (path_gpa, path_len, buf_gpa, buf_len, cookie) -> bytes */
    PVMUX_HC_HOSTFS_READ = 9,   /* (path_gpa, path_len, offset, buf_gpa, len) -> bytes */
    PVMUX_HC_VOLUME_OP = 10,    /* (req_gpa, resp_gpa) -> 0; struct pvmux_volume_request */
    /* Host networking (--net host, --publish); see "Host networking" below. */
    PVMUX_HC_NET_SOCKET = 11,    /* (domain, type) -> handle; AF_INET/AF_INET6, STREAM/DGRAM */
    PVMUX_HC_NET_BIND = 12,      /* (h, addr_gpa) -> 0 */
    PVMUX_HC_NET_LISTEN = 13,    /* (h, backlog) -> 0 */
    PVMUX_HC_NET_ACCEPT = 14,    /* (h, addr_gpa or 0) -> handle */
    PVMUX_HC_NET_CONNECT = 15,   /* (h, addr_gpa) -> 0; EINPROGRESS while a stream connects */
    PVMUX_HC_NET_SEND = 16,      /* (h, buf_gpa, len, addr_gpa or 0) -> bytes */
    PVMUX_HC_NET_RECV = 17,      /* (h, buf_gpa, len, addr_gpa or 0, flags) -> bytes */
    PVMUX_HC_NET_SHUTDOWN = 18,  /* (h, how) -> 0 */
    PVMUX_HC_NET_CLOSE = 19,     /* (h) -> 0 */
    PVMUX_HC_NET_POLL = 20,      /* (h, events) -> revents; arms PVMUX_PENDING_NET */
    PVMUX_HC_NET_NAME = 21,      /* (h, peer, addr_gpa) -> 0 */
    PVMUX_HC_NET_SET_OPT = 22,   /* (h, level, name, value) -> 0 */
    PVMUX_HC_NET_GET_OPT = 23,   /* (h, level, name) -> value */
    PVMUX_HC_NET_PUBLISHED = 24, /* (rec_gpa) -> handle; PVMUX_EBUSY if none */
    /* Exec sessions (runc exec, pvmux exec); see "Exec sessions" below. */
    PVMUX_HC_EXEC_FETCH = 25,  /* (buf_gpa, buf_len) -> len of the request; PVMUX_EBUSY if none */
    PVMUX_HC_EXEC_STATUS = 26, /* (session, kind, value) -> 0 */
    PVMUX_HC_EXEC_WRITE = 27,  /* (session, stream, buf_gpa, len) -> bytes; PVMUX_EBUSY if full */
    PVMUX_HC_EXEC_READ = 28,   /* (session, buf_gpa, len) -> bytes, 0 at the end; PVMUX_EBUSY */
    PVMUX_HC_EXEC_TERM_SIZE = 29, /* (session) -> (rows << 16) | cols of a terminal session */
    PVMUX_HC_HOSTFS_LOOKUP = 30, /* (path_gpa, path_len, buf_gpa, buf_len) -> bytes; 0 = no entry (ABI v6) */
    PVMUX_HC_SIGNAL_TAKE = 31,   /* () -> signals for init (bit n-1: signal n), cleared */
    PVMUX_HC_CONSOLE_WINSIZE = 32, /* () -> (rows << 16) | cols of the console; 0: never set */
    PVMUX_HC_EXEC_SIGNAL_TAKE = 33, /* (session) -> signals sent to its program, taken */
    PVMUX_HC_TASK_LIMIT_TAKE = 34, /* () -> new task limit, 0 = none (ABI v6) */
    PVMUX_HC_STATS_REPORT = 35,    /* (rec_gpa: struct pvmux_guest_stats) -> 0 (ABI v6) */
    PVMUX_HC_CHANNEL_SEND = 36,    /* (index, buf_gpa, len) -> n | busy | CHANNEL_CLOSED */
    PVMUX_HC_CHANNEL_RECV = 37,    /* (index, buf_gpa, len) -> n (0: end of stream) | busy */
    PVMUX_HC_CHANNEL_CTL = 38,     /* (index, op, arg) -> poll bits | 0 */
    PVMUX_HC_DISK_TAKE = 39,       /* (event_gpa: struct pvmux_disk_event) -> 1, or 0 if none */
    PVMUX_HC_DISK_SUBMIT = 40,     /* (slot, ring_gpa, count) -> count; struct pvmux_disk_desc */
    PVMUX_HC_DISK_REPORT = 41,     /* (slot, generation, errno) -> 0 */
    PVMUX_HC_BALLOON_TAKE = 43,    /* () -> balloon target, pages (ABI v6) */
    PVMUX_HC_BALLOON_REPORT = 44,  /* (ranges_gpa, count, status) -> 0 (ABI v6) */
    PVMUX_HC_SNAPSHOT_PARK = 42,   /* (online) -> 0 when the tenant goes on (ABI v6) */
    PVMUX_HC_SNAPSHOT_RESUMED = 46, /* (resumed vcpus) -> 0 (ABI v6) */
    PVMUX_HC_HANDOVER_TAKE = 47,   /* () -> record version asked for, 0: none */
    PVMUX_HC_HANDOVER_RECORD = 48, /* (record_gpa, len) -> 0: the hand-over record */
    PVMUX_HC_HANDOVER_ADOPTED = 49, /* (status, reason_gpa, len) -> 0: adopts or refuses */
    PVMUX_HC_HANDOVER_FETCH = 50,   /* (gpa, len) -> record length (copied when len holds it) */
    PVMUX_HC_DISK_MOUNTED = 52,    /* (slot, path_gpa, path_len, flags) -> 0: where it is mounted */
};

/* Negative results of hypercalls and stub calls (int64_t in rax). */
enum pvmux_error {
    PVMUX_EUNKNOWN_CALL = -1, /* no such call */
    PVMUX_EINVAL = -2,        /* argument out of range or malformed */
    PVMUX_EBADADDR = -3,      /* address range outside guest memory (or the window) */
    PVMUX_ETOOLARGE = -4,     /* length exceeds the call's limit */
    PVMUX_EBUSY = -5,         /* object busy (vCPU already started) */
    PVMUX_ENORESOURCES = -6,  /* host out of a resource */
};

/* ------------------------------------------------------------------------------------------
 * Sandbox header (sandbox.rs) - host/stub only, a guest never needs it
 * ---------------------------------------------------------------------------------------- */

#define PVMUX_GUEST_MEM_FD 3
#define PVMUX_CTL_FD 4
#define PVMUX_KERNEL_IMAGE_FD 5 /* kernel sandboxes: the kernel image's file, read-only */
#define PVMUX_MAX_SHARED_IMAGE_RANGES 4
#define PVMUX_STUB_EXIT_CRASH 124
#define PVMUX_STUB_EXIT_SETUP 125

/* SandboxHeader.kind */
#define PVMUX_SANDBOX_KIND_KERNEL 0u /* stub + guest kernel, one thread per vCPU */
#define PVMUX_SANDBOX_KIND_USER 1u   /* stub + one guest address space's user code */
#define PVMUX_SANDBOX_KIND_USER_TEMPLATE 2u /* a stub that forks user sandboxes (host only) */

/* SandboxHeader.stub_status */
#define PVMUX_STUB_STATUS_STARTING 0u
#define PVMUX_STUB_STATUS_READY 1u
#define PVMUX_STUB_STATUS_RUNNING 2u
#define PVMUX_STUB_STATUS_FAILED 3u

/* SandboxHeader.shared_image: gpa [gpa, gpa + len) is mapped read-only from
 * PVMUX_KERNEL_IMAGE_FD at file_offset (len 0: unused). */
struct pvmux_shared_image_range {
    uint64_t gpa;
    uint64_t len;
    uint64_t file_offset;
};

struct pvmux_sandbox_header {
    uint64_t magic;              /* host */
    uint32_t abi_version;        /* host */
    uint32_t nr_vcpus;           /* host */
    uint64_t mem_size;           /* host */
    uint64_t entry_rip;          /* host */
    uint64_t entry_rsp;          /* host */
    uint64_t entry_rdi;          /* host */
    uint64_t page_table_root;    /* host */
    uint64_t tsc_base;           /* host */
    uint64_t mono_base_ns;       /* host: CLOCK_MONOTONIC at guest time 0 */
    uint64_t clock_mult;         /* host */
    uint32_t clock_shift;        /* host */
    uint32_t fault_around_pages; /* host */
    uint32_t stub_status;        /* stub (atomic) */
    uint32_t stub_step;          /* stub (atomic) */
    uint32_t stub_error;         /* stub (atomic) */
    uint32_t window_listener;    /* stub (atomic): user sandbox's listener fd + 1 */
    uint64_t stub_table;     /* stub (atomic) */
    uint64_t first_insn_tsc; /* stub (atomic) */
    uint64_t stub_start_tsc; /* stub (atomic) */
    uint32_t kind;           /* host: PVMUX_SANDBOX_KIND_* */
    uint32_t entry_held;     /* host, kernel sandboxes: 1 until entry, root, clock are written */
    uint64_t user_pool_base; /* host, user sandboxes: first gpa of the user pool */
    uint64_t user_ctx_gpa;   /* host, user sandboxes: gpa of the context region */
    uint64_t user_ctx_len;   /* host, user sandboxes: PVMUX_USER_CTX_SIZE(nr_vcpus) */
    uint64_t user_grant_gpa; /* host, user sandboxes: gpa of the space's grant page */
    uint32_t user_isolation; /* host, kernel sandboxes: PVMUX_USER_ISOLATION_* (ABI v6) */
    uint32_t windows;          /* host: user sandboxes: 1 if the tenant has host file windows */
    uint64_t xsave_mask; /* host: XCR0 without dynamic features (0: no XSAVE) */
    uint32_t xsave_size; /* host: standard-format XSAVE image bytes of xsave_mask */
    uint32_t cpu_flags;  /* host: PVMUX_CPU_FLAG_* */
    /* host, kernel sandboxes: pages mapped from PVMUX_KERNEL_IMAGE_FD (with the entry) */
    struct pvmux_shared_image_range shared_image[PVMUX_MAX_SHARED_IMAGE_RANGES];
};
#define PVMUX_CPU_FLAG_RDTSCP (1u << 0) /* SandboxHeader.cpu_flags: rdtscp works */
#define PVMUX_USER_ISOLATION_PROCESS 0u /* every address space in a user sandbox */
#define PVMUX_USER_ISOLATION_NONE 1u    /* trusted in-process mode */

/* ------------------------------------------------------------------------------------------
 * Per-vCPU shared page (vcpu.rs)
 * ---------------------------------------------------------------------------------------- */

/* VcpuShared.pending bits */
#define PVMUX_PENDING_TIMER (1u << 0)
#define PVMUX_PENDING_KICK (1u << 1)
#define PVMUX_PENDING_HOST (1u << 2)
#define PVMUX_PENDING_INPUT (1u << 3) /* console input (or its end) arrived: console_read */
#define PVMUX_PENDING_NET (1u << 4)   /* a host socket may be ready, or a published connection */
#define PVMUX_PENDING_EXEC (1u << 5)  /* an exec request, exec input, or room for exec output */
#define PVMUX_PENDING_SIGNAL (1u << 6) /* the host sent init a signal: signal_take */
#define PVMUX_PENDING_CONSOLE_SIZE (1u << 7) /* the console was resized: console_winsize */
#define PVMUX_PENDING_RESOURCES (1u << 8) /* task_limit_take, then stats_report */
#define PVMUX_PENDING_CHANNEL (1u << 9)   /* a channel's peer moved: retry channel calls */
#define PVMUX_PENDING_BALLOON (1u << 14)  /* balloon_take, then balloon_report */
#define PVMUX_PENDING_DISK (1u << 10)     /* disk_take, then disk_report */
#define PVMUX_PENDING_SNAPSHOT (1u << 11) /* park every vCPU: snapshot_park */
#define PVMUX_PENDING_HANDOVER (1u << 12) /* handover_take, then handover_record */
#define PVMUX_PENDING_DUMP (1u << 15)     /* write a dump of the tasks to stderr (optional) */
#define PVMUX_BOOT_FLAG_RESUME (1u << 0)  /* boot_info.flags: resume a snapshot */
#define PVMUX_PENDING_ALL                                                                  \
    (PVMUX_PENDING_TIMER | PVMUX_PENDING_KICK | PVMUX_PENDING_HOST | PVMUX_PENDING_INPUT | \
     PVMUX_PENDING_NET | PVMUX_PENDING_EXEC | PVMUX_PENDING_SIGNAL |                        \
     PVMUX_PENDING_CONSOLE_SIZE | PVMUX_PENDING_RESOURCES | PVMUX_PENDING_CHANNEL |        \
     PVMUX_PENDING_DISK | PVMUX_PENDING_BALLOON | PVMUX_PENDING_SNAPSHOT |                 \
     PVMUX_PENDING_HANDOVER | PVMUX_PENDING_DUMP)

/* Indices into VcpuShared.stats */
#define PVMUX_STAT_SHADOW_FILLS 0
#define PVMUX_STAT_SHADOW_PAGES 1
#define PVMUX_STAT_EXCEPTIONS 2
#define PVMUX_STAT_EVENTS 3
#define PVMUX_STAT_HYPERCALLS 4
#define PVMUX_STAT_TLB_FLUSHES 5
#define PVMUX_STAT_EVICTIONS 6
#define PVMUX_STAT_SYSCALL_TRAPS 7
#define PVMUX_STAT_GUEST_SYSCALLS 8 /* kept by the guest kernel */
#define PVMUX_STAT_GUEST_FAULTS 9 /* kept by the guest kernel */

enum pvmux_crash_reason {
    PVMUX_CRASH_UNHANDLED_EXCEPTION = 1,
    PVMUX_CRASH_DOUBLE_FAULT = 2,
    PVMUX_CRASH_STUB_FAULT = 3,
    PVMUX_CRASH_ABI_VIOLATION = 4,
    PVMUX_CRASH_OUT_OF_HOST_MAPPINGS = 5,
    PVMUX_CRASH_STUB_SYSCALL_FAILED = 6,
};

/* Every field is accessed atomically (single aligned load/store/RMW). */
struct pvmux_vcpu_shared {
    /* 0x000: interrupt state */
    PVMUX_ALIGNAS(4096) uint32_t irq_enabled; /* guest may store 0; set 1 only via irq_enable */
    uint32_t pending;                    /* PVMUX_PENDING_* bits; futex word of halt */
    uint32_t halted;                     /* stub */
    uint32_t online;                     /* stub */
    uint32_t tid;                        /* stub, informational */
    uint32_t vcpu_id;                    /* stub */
    uint32_t _pad0[10];
    /* 0x040: doorbell, guest -> host */
    uint32_t hc_req;        /* request sequence; host futex word */
    uint32_t guest_waiting; /* 1 while the guest sleeps on hc_resp */
    uint64_t hc_nr;         /* number | flags */
    uint64_t hc_args[6];    /* a0..a4; a5 is always 0 */
    /* 0x080: doorbell, host -> guest */
    uint32_t hc_resp;      /* response sequence; guest futex word */
    uint32_t host_waiting; /* 1 while the host sleeps on hc_req */
    uint64_t hc_ret;       /* int64_t result */
    uint64_t _pad2[6];
    /* 0x0c0: hypercall caller context (stub) */
    uint64_t hc_caller_rip;
    uint64_t hc_caller_rsp;
    uint64_t hc_caller_rbp;
    uint64_t _pad3[5];
    /* 0x100: crash record (stub -> host); crash_reason written last */
    uint32_t crash_reason; /* enum pvmux_crash_reason, 0 = none */
    uint32_t crash_vector;
    uint64_t crash_error_code;
    uint64_t crash_fault_addr;
    uint64_t crash_detail;
    uint64_t crash_regs[21]; /* struct pvmux_trap_frame order */
    uint64_t _pad4[7];
    /* 0x200: counters (stub), PVMUX_STAT_* */
    uint64_t stats[16];
    /* 0x280: guest-owned scratch */
    uint64_t guest[16];
    uint64_t _reserved[416];
};

/* ------------------------------------------------------------------------------------------
 * Guest user mode: user sandboxes and their context regions (user.rs)
 * ---------------------------------------------------------------------------------------- */

/* Guest user virtual addresses: [PVMUX_USER_BASE, PVMUX_USER_END) (64 TiB). */
#define PVMUX_USER_BASE UINT64_C(0x0000000000010000)
#define PVMUX_USER_END UINT64_C(0x0000400000000000)
/* Where the user stub maps the context region (above USER_END, below the stub). */
#define PVMUX_USER_CTX_BASE UINT64_C(0x0000480000000000)
/* Bytes of one struct pvmux_user_slot, and the offset of slot 0 in a context region. */
#define PVMUX_USER_SLOT_SIZE UINT64_C(0x4000)
#define PVMUX_USER_SLOT_OFFSET UINT64_C(0x1000)
/* Size of the context region of a tenant with nr_vcpus vCPUs (= user_ctx_size). */
#define PVMUX_USER_CTX_SIZE(nr_vcpus) \
    (PVMUX_USER_SLOT_OFFSET + (uint64_t)(nr_vcpus) * PVMUX_USER_SLOT_SIZE)
/* Offset of slot i in a context region (= user_slot_offset). */
#define PVMUX_USER_SLOT_OFFSET_OF(i) (PVMUX_USER_SLOT_OFFSET + (uint64_t)(i) * PVMUX_USER_SLOT_SIZE)
/* "PVMUXUSR" read as a little-endian u64: UserCtxHeader.magic. */
#define PVMUX_USER_CTX_MAGIC UINT64_C(0x52535558554d5650)

/* True if [addr, addr + len) lies inside the guest user window (same as in_user_window). */
static inline int pvmux_in_user_window(uint64_t addr, uint64_t len)
{
    return addr >= PVMUX_USER_BASE && len <= PVMUX_USER_END - PVMUX_USER_BASE &&
           addr - PVMUX_USER_BASE <= PVMUX_USER_END - PVMUX_USER_BASE - len;
}

/* Page 0 of a context region; the guest kernel fills magic, abi_version, nr_slots (the rest
 * zero) before SpaceCreate. Everything in a context region is writable by user code. */
struct pvmux_user_ctx_header {
    uint64_t magic;       /* PVMUX_USER_CTX_MAGIC */
    uint32_t abi_version; /* PVMUX_ABI_VERSION */
    uint32_t nr_slots;    /* = the tenant's nr_vcpus */
    uint32_t ready;       /* user stub: 1 once every slot thread serves (informational) */
    uint32_t dead;        /* host: 1 once the user sandbox process has ended */
    uint32_t dead_status; /* host, before dead: exit status, or 0x100 | signal */
    uint32_t _reserved0;
};

/* UserSlot.command */
#define PVMUX_USER_COMMAND_RUN 1u      /* apply the queued operations, then run user code */
#define PVMUX_USER_COMMAND_OPS_ONLY 2u /* apply the queued operations, report OPS_DONE */

/* UserSlot.exit_reason. Unknown values: treat the sandbox as hostile. */
enum pvmux_user_exit {
    PVMUX_USER_EXIT_SYSCALL = 1,   /* regs.rax = number, rdi rsi rdx r10 r8 r9 = arguments */
    PVMUX_USER_EXIT_EXCEPTION = 2, /* exit_vector, exit_error_code, exit_addr */
    PVMUX_USER_EXIT_INTERRUPT = 3, /* the slice timer fired (vector PVMUX_VEC_EVENT) */
    PVMUX_USER_EXIT_OPS_DONE = 4,  /* an OPS_ONLY request was applied */
    PVMUX_USER_EXIT_OP_FAILED = 5, /* op_failed / op_errno; no user code ran */
    PVMUX_USER_EXIT_DEAD = 6,      /* the host marked the sandbox dead */
};

/* UserOp.kind */
#define PVMUX_USER_OP_MAP 1u     /* mmap(addr, len, prot, MAP_SHARED|MAP_FIXED, memfd, offset) */
#define PVMUX_USER_OP_UNMAP 2u   /* munmap(addr, len) */
#define PVMUX_USER_OP_PROTECT 3u /* mprotect(addr, len, prot) */
#define PVMUX_USER_OP_MAP_POPULATE 4u /* as MAP, with MAP_POPULATE */

/* UserOp.prot bits (Linux PROT_*) */
#define PVMUX_USER_PROT_READ 1u
#define PVMUX_USER_PROT_WRITE 2u
#define PVMUX_USER_PROT_EXEC 4u
#define PVMUX_USER_PROT_ALL (PVMUX_USER_PROT_READ | PVMUX_USER_PROT_WRITE | PVMUX_USER_PROT_EXEC)

/* One queued address-space operation: addr, len, offset page aligned, len > 0, [addr,
 * addr + len) in the user window; for MAP, [offset, offset + len) in the user pool. */
struct pvmux_user_op {
    uint32_t kind;   /* PVMUX_USER_OP_* */
    uint32_t prot;   /* PVMUX_USER_PROT_* (MAP, PROTECT) */
    uint64_t addr;   /* guest user virtual address */
    uint64_t len;    /* bytes */
    uint64_t offset; /* MAP: gpa of the first page */
};

/* Operations per request, and bytes reserved for the user FPU state (XSAVE image). */
#define PVMUX_USER_OPS_MAX 200
#define PVMUX_USER_FPSTATE_MAX 8192

/* Indices into UserSlot.stats (user stub, informational) */
#define PVMUX_USER_STAT_RUNS 0
#define PVMUX_USER_STAT_SYSCALLS 1
#define PVMUX_USER_STAT_EXCEPTIONS 2
#define PVMUX_USER_STAT_INTERRUPTS 3
#define PVMUX_USER_STAT_OPS 4
#define PVMUX_USER_STAT_SLEEPS 5
#define PVMUX_USER_STAT_USER_TICKS 6 /* TSC ticks spent running user code */

/* One vCPU's slot of a context region (PVMUX_USER_SLOT_SIZE bytes). */
struct pvmux_user_slot {
    /* 0x00: hand-off words (atomic; shared futexes) */
    uint32_t run_seq;        /* kernel: incremented to hand the slot over; user futex word */
    uint32_t done_seq;       /* user: set to run_seq when done; kernel futex word */
    uint32_t user_waiting;   /* user: 1 while it sleeps on run_seq */
    uint32_t kernel_waiting; /* kernel: 1 while it sleeps on done_seq */
    /* 0x10: request (kernel -> user) */
    uint32_t command;  /* PVMUX_USER_COMMAND_* */
    uint32_t nr_ops;   /* valid entries of ops (<= PVMUX_USER_OPS_MAX) */
    uint64_t fs_base;  /* FS base to load (written back on every exit) */
    uint64_t slice_ns; /* arm the slice timer this many ns from now (0: leave it) */
    uint32_t fp_len;   /* bytes of fpstate to load (0: keep the thread's state) */
    uint32_t fp_init;  /* 1 (with fp_len 0): reset the FPU state to its initial state */
    /* 0x30: result (user -> kernel) */
    uint32_t exit_reason;     /* enum pvmux_user_exit */
    uint32_t exit_vector;     /* enum pvmux_vector */
    uint64_t exit_error_code; /* exception error code; syscall number */
    uint64_t exit_addr;       /* fault address */
    uint32_t op_failed;       /* OP_FAILED: index of the failed op; nr_ops: FS base load
                                 failed; UINT32_MAX: bad command or nr_ops (docs/ABI.md) */
    uint32_t op_errno;        /* OP_FAILED: positive errno */
    uint32_t fp_saved_len;    /* bytes of fpstate saved */
    uint32_t fp_pending;      /* 1 until those bytes are written: wait for 0 to read them */
    /* 0x58: user registers, both directions (vector, error_code, fault_addr: see docs) */
    struct pvmux_trap_frame regs;
    /* 0x100: counters (user stub), PVMUX_USER_STAT_* */
    uint64_t stats[8];
    /* 0x140: operation ordering (kernel -> user): the batch this request carries or waits for */
    uint64_t ops_seq;
    /* 0x148: where each side runs, host CPU + 1 (0: not known); spinning hints only */
    uint32_t user_cpu;   /* user */
    uint32_t kernel_cpu; /* kernel */
    uint64_t _reserved[54];
    /* 0x300: queued operations, applied in order */
    struct pvmux_user_op ops[PVMUX_USER_OPS_MAX];
    uint8_t _pad1[0x2000 - 0x300 - 32 * PVMUX_USER_OPS_MAX];
    /* 0x2000: XSAVE image of the user FPU state (signal-frame layout) */
    uint8_t fpstate[PVMUX_USER_FPSTATE_MAX];
};

/* ------------------------------------------------------------------------------------------
 * Boot arguments (bootargs.rs): at BootInfo.boot_args_gpa, what the kernel is asked to do
 *
 * Layout (little endian, records unaligned and unpadded; total_len == boot_args_len):
 *   struct pvmux_boot_args_header
 *   canary_len bytes of UTF-8: the hostile canary path (0 = none)
 *   nr_commands records: struct pvmux_boot_args_record, then `len` payload bytes
 *   nr_args records: uint16_t length, then that many bytes (init argv[i], any bytes)
 * A reader must refuse: another magic/version/header_len, total_len != boot_args_len,
 * undefined flag or tty bits, non-zero reserved fields, host_pid/seed non-zero without their
 * flag, one console dimension 0, unknown command kinds, wrong payloads (none for plain
 * commands, 8 bytes for EXIT/SLEEP, non-empty UTF-8 for text commands, GROUPS not a multiple
 * of 4 bytes, over PVMUX_BOOT_GROUPS_MAX ids or not strictly ascending), anything past the
 * end, bytes after the last argument.
 * ---------------------------------------------------------------------------------------- */

#define PVMUX_BOOT_ARGS_MAGIC 0x41425650u /* "PVBA" */
#define PVMUX_BOOT_ARGS_VERSION 1u

/* pvmux_boot_args_header.flags */
#define PVMUX_BOOT_ARGS_SYSCALL_REPORT (1u << 0) /* report unimplemented syscalls at init end */
#define PVMUX_BOOT_ARGS_QUIET (1u << 1)          /* no start-up banner */
#define PVMUX_BOOT_ARGS_HOSTFS (1u << 2)         /* the host share is the root filesystem */
#define PVMUX_BOOT_ARGS_BENCH_QUICK (1u << 3)    /* fewer benchmark repetitions */
#define PVMUX_BOOT_ARGS_HOST_PID (1u << 4)       /* host_pid is given */
#define PVMUX_BOOT_ARGS_SEED (1u << 5)           /* seed is given */
#define PVMUX_BOOT_ARGS_FLAGS_ALL 0x3fu

/* pvmux_boot_args_header.terminals: host streams that are terminals */
#define PVMUX_BOOT_ARGS_TTY_STDIN 1u
#define PVMUX_BOOT_ARGS_TTY_STDOUT 2u
#define PVMUX_BOOT_ARGS_TTY_STDERR 4u

/* pvmux_boot_args_record.kind, in the order given; payload in brackets */
#define PVMUX_BOOT_CMD_SELFTEST 1u           /* [none] self-tests (test kernel) */
#define PVMUX_BOOT_CMD_FS_SELFTEST 2u        /* [none] filesystem self-test (test kernel) */
#define PVMUX_BOOT_CMD_EXIT 3u               /* [uint64 exit code] shut down */
#define PVMUX_BOOT_CMD_SLEEP 4u              /* [uint64 ms] sleep */
#define PVMUX_BOOT_CMD_PANIC 5u              /* [none] panic on purpose (test kernel) */
#define PVMUX_BOOT_CMD_SYSCALL 6u            /* [none] raw Linux syscalls (test kernel) */
#define PVMUX_BOOT_CMD_CRASH_DOUBLE_FAULT 7u /* [none] faulting delivery (test kernel) */
#define PVMUX_BOOT_CMD_CRASH_STUB_SYSCALL 8u /* [none] jump to a stub syscall (test kernel) */
#define PVMUX_BOOT_CMD_BENCH 9u              /* [text: all | names,...] benchmarks (test) */
#define PVMUX_BOOT_CMD_HOSTILE 10u           /* [text: case] adversarial case (test kernel) */
#define PVMUX_BOOT_CMD_LS 11u                /* [text: path] list a directory */
#define PVMUX_BOOT_CMD_CAT 12u               /* [text: path] print a file */
#define PVMUX_BOOT_CMD_ENV 13u               /* [bytes: NAME=VALUE] init environment entry */
#define PVMUX_BOOT_CMD_WORKDIR 14u           /* [bytes: absolute path] init working dir */
/* [20 bytes: u32 resource < 16, u64 soft, u64 hard (soft <= hard; UINT64_MAX = unlimited)]
 * one of init's resource limits (ABI v5) */
#define PVMUX_BOOT_CMD_RLIMIT 15u
#define PVMUX_BOOT_CMD_USER 16u /* [8 bytes: u32 uid, u32 gid] init's ids (ABI v5) */
#define PVMUX_BOOT_CMD_VOLUME 17u /* [u32 id, u32 flags, bytes: absolute path] a volume */
#define PVMUX_BOOT_CMD_HOSTNAME 20u /* [bytes: 1..=64, no NUL] the guest's host name (ABI v6) */
#define PVMUX_BOOT_CMD_TASK_LIMIT 21u /* [u32 >= 1] most guest tasks at once (ABI v6) */
/* [40 bytes: u64 effective, permitted, inheritable, bounding, ambient; bits 0..=
 * PVMUX_CAP_LAST_CAP, effective within permitted, ambient within permitted & inheritable]
 * init's capability sets (ABI v6) */
#define PVMUX_BOOT_CMD_CAPS 24u
#define PVMUX_BOOT_CMD_NO_PATCH 26u /* [no payload] leave syscall sites unpatched (ABI v6) */
#define PVMUX_BOOT_CMD_USER_ISOLATION_NONE 27u /* [none] the trusted in-process mode (ABI v6) */
#define PVMUX_BOOT_CMD_CHANNEL 28u /* [name] channel index i = i-th record: /dev/pvmux/NAME */
#define PVMUX_BOOT_CMD_ADOPT 31u /* struct pvmux_adopt_args: adopt the host's hand-over record */
#define PVMUX_BOOT_CMD_ADOPT_REFUSE 32u /* [] refuse every hand-over record (tests) */
#define PVMUX_BOOT_CMD_ADOPT_REFUSE_SWITCH 33u /* [] refuse a record offered for a switch (tests) */
#define PVMUX_BOOT_CMD_SLOW_EXIT 34u /* [uint64 ms] exits wait after the last thread (test kernel) */
#define PVMUX_ADOPT_CHECK 1u /* pvmux_adopt_args.flags: check the record only, then shut down */
#define PVMUX_ADOPT_ADOPTS 0u  /* handover_adopted status */
#define PVMUX_ADOPT_REFUSES 1u /* handover_adopted status (reason text follows) */
#define PVMUX_MAX_ADOPT_REASON 256u
struct pvmux_adopt_args {
    uint32_t version;    /* the record version offered */
    uint32_t flags;      /* PVMUX_ADOPT_* */
    uint64_t record_len; /* its length in bytes */
    uint64_t pool_start; /* the user pool its page frames must lie in */
    uint64_t pool_end;
};
#define PVMUX_CAP_LAST_CAP 40u
#define PVMUX_HOSTNAME_MAX 64u
#define PVMUX_BOOT_VOLUME_READ_ONLY 1u /* VOLUME flags: every change is EROFS */
#define PVMUX_BOOT_VOLUME_HEAD_LEN 8   /* VOLUME payload bytes before the path */
/* [u32 gid each, strictly ascending, at most PVMUX_BOOT_GROUPS_MAX] init's supplementary
 * groups (ABI v6) */
#define PVMUX_BOOT_CMD_GROUPS 19u
#define PVMUX_BOOT_GROUPS_MAX 4096

struct pvmux_boot_args_header {
    uint32_t magic;         /* PVMUX_BOOT_ARGS_MAGIC */
    uint16_t version;       /* PVMUX_BOOT_ARGS_VERSION */
    uint16_t header_len;    /* sizeof(struct pvmux_boot_args_header) */
    uint32_t total_len;     /* bytes, header included */
    uint32_t flags;         /* PVMUX_BOOT_ARGS_* */
    uint64_t host_pid;      /* if PVMUX_BOOT_ARGS_HOST_PID, else 0 */
    uint64_t seed;          /* if PVMUX_BOOT_ARGS_SEED, else 0 */
    uint16_t console_cols;  /* stdout terminal size; 0 x 0 = not given */
    uint16_t console_rows;  /*   */
    uint8_t terminals;      /* PVMUX_BOOT_ARGS_TTY_* */
    uint8_t _reserved0;     /* 0 */
    uint16_t canary_len;    /* bytes of canary path after the header */
    uint16_t nr_commands;   /* command records */
    uint16_t nr_args;       /* argument records (0: no init program) */
    uint32_t _reserved1;    /* 0 */
};

struct pvmux_boot_args_record {
    uint16_t kind; /* PVMUX_BOOT_CMD_* */
    uint16_t len;  /* payload bytes that follow */
};

/* ------------------------------------------------------------------------------------------
 * Host filesystem share (hostfs.rs): HostfsList / HostfsRead
 * ---------------------------------------------------------------------------------------- */

#define PVMUX_HOSTFS_PATH_MAX UINT64_C(4096)         /* longest path accepted */
#define PVMUX_HOSTFS_READ_MAX UINT64_C(0x100000)     /* largest HostfsRead transfer */
#define PVMUX_HOSTFS_LIST_MAX_BUF UINT64_C(0x100000) /* largest HostfsList buffer */
#define PVMUX_HOSTFS_LIST_MIN_BUF UINT64_C(4392)     /* always holds at least one record */
#define PVMUX_HOSTFS_NAME_MAX 255                    /* longest listed name */
#define PVMUX_HOSTFS_TARGET_MAX 4095                 /* longest listed symlink target */
#define PVMUX_HOSTFS_ENTRY_ALIGN 8                   /* records start at multiples of this */
#define PVMUX_HOSTFS_ENTRY_HEADER 40                 /* sizeof(struct pvmux_hostfs_entry) */
/* Length of a record with a name_len-byte name and a target_len-byte target. */
#define PVMUX_HOSTFS_RECORD_LEN(name_len, target_len) \
    (((uint64_t)PVMUX_HOSTFS_ENTRY_HEADER + (name_len) + (target_len) + 7) & ~(uint64_t)7)

/* HostfsEntry.kind */
#define PVMUX_HOSTFS_KIND_DIR 1u
#define PVMUX_HOSTFS_KIND_REG 2u
#define PVMUX_HOSTFS_KIND_SYMLINK 3u /* the target follows the name */
#define PVMUX_HOSTFS_KIND_OTHER 4u   /* device, FIFO, socket, ...: listed, never read */

/* The fixed header of one HostfsList record; then the name, a symlink's target, zero padding
 * to PVMUX_HOSTFS_ENTRY_ALIGN. */
struct pvmux_hostfs_entry {
    uint64_t size;       /* st_size (a symlink: its target's length) */
    uint64_t mtime_ns;   /* modification time, ns since the Unix epoch (0 if before) */
    uint32_t perm;       /* st_mode & 07777 */
    uint32_t uid;        /* owner */
    uint32_t gid;        /* group */
    uint16_t name_len;   /* 1..=PVMUX_HOSTFS_NAME_MAX */
    uint16_t target_len; /* 0 unless kind == PVMUX_HOSTFS_KIND_SYMLINK */
    uint8_t kind;        /* PVMUX_HOSTFS_KIND_* */
    uint8_t reserved;    /* 0 */
    uint16_t links;      /* st_nlink if the server states it (a guest's ext2), else 0 */
    uint32_t ino;        /* inode number if the server states it (a guest's ext2), else 0 */
};

/* ------------------------------------------------------------------------------------------
 * Host networking (net.rs): hypercalls 11..=24. A socket error is returned as
 * -(PVMUX_NET_ERRNO_BASE + errno) with Linux's errno numbers; PVMUX_EBUSY: would block (the
 * host raises PVMUX_PENDING_NET once the socket may be ready).
 * ---------------------------------------------------------------------------------------- */

#define PVMUX_NET_ERRNO_BASE INT64_C(4096)
#define PVMUX_NET_IO_MAX UINT64_C(0x40000)    /* largest NetSend/NetRecv transfer */
#define PVMUX_NET_DEFAULT_MAX_SOCKETS 256     /* host sockets one tenant may hold */
#define PVMUX_NET_RECV_PEEK UINT64_C(1)       /* NetRecv flags: MSG_PEEK */
/* --publish .../udp: NetPublished hands out flows (one per host client; NetRecv/NetSend
 * carry its datagrams); per tenant at most this many live flows and queued datagrams. */
#define PVMUX_NET_MAX_UDP_FLOWS 64
#define PVMUX_NET_MAX_UDP_QUEUED 256
#define PVMUX_NET_MAX_UDP_FLOW_QUEUED 64      /* queued datagrams of one flow */
#define PVMUX_NET_UDP_FLOW_IDLE_SECS 30       /* an idle flow ends (NetRecv: ETIMEDOUT) */
#define PVMUX_NET_PUBLISH_TCP 6               /* pvmux_net_publish.proto: a connection */
#define PVMUX_NET_PUBLISH_UDP 17              /* pvmux_net_publish.proto: a UDP flow */

/* An internet address and port (NetBind, NetConnect, NetSend, NetRecv, NetAccept, NetName). */
struct pvmux_net_addr {
    uint16_t family;   /* AF_INET (2) or AF_INET6 (10) */
    uint16_t port;     /* host byte order */
    uint32_t scope_id; /* sin6_scope_id; 0 for IPv4 */
    uint8_t addr[16];  /* IPv6, or IPv4 in the first 4 bytes (the rest 0) */
};

/* NetPublished's record. */
struct pvmux_net_publish {
    uint16_t guest_port;           /* the guest port of --publish HOSTPORT:GUESTPORT */
    uint8_t proto;                 /* PVMUX_NET_PUBLISH_TCP or PVMUX_NET_PUBLISH_UDP */
    uint8_t reserved[5];           /* 0 */
    struct pvmux_net_addr peer;    /* the client on the host side */
};

/* ------------------------------------------------------------------------------------------
 * Exec sessions (exec.rs): hypercalls 25..=29, PVMUX_PENDING_EXEC. A request is a struct
 * pvmux_exec_request_header, then cwd_len bytes of working directory, then nr_args arguments
 * and nr_env environment entries, each a uint32_t length and its bytes (no NUL, no padding),
 * then with PVMUX_EXEC_FLAG_GROUPS a uint32_t count (at most PVMUX_BOOT_GROUPS_MAX) and that many
 * uint32_t group ids, strictly ascending, then with PVMUX_EXEC_FLAG_CAPS the five capability
 * sets as in a PVMUX_BOOT_CMD_CAPS payload (PVMUX_EXEC_CAPS_LEN bytes), then with
 * PVMUX_EXEC_FLAG_RLIMITS the rest is struct pvmux_exec_rlimit records (at least one,
 * resources strictly increasing, soft <= hard; unaligned in the request).
 * ---------------------------------------------------------------------------------------- */

#define PVMUX_EXEC_REQUEST_MAGIC 0x58455650u /* "PVEX" */
#define PVMUX_EXEC_REQUEST_MAX 65536u        /* largest encoded request */
#define PVMUX_EXEC_IO_MAX UINT64_C(0x10000)  /* largest ExecWrite/ExecRead transfer */
#define PVMUX_EXEC_MAX_SESSIONS 64u          /* sessions per tenant at once */
#define PVMUX_EXEC_OUTPUT_BUFFER 65536u      /* host buffer per output stream of a session */
#define PVMUX_EXEC_INPUT_BUFFER 65536u       /* host buffer of a session's input */
#define PVMUX_EXEC_STREAM_STDOUT 1u          /* ExecWrite streams */
#define PVMUX_EXEC_STREAM_STDERR 2u
#define PVMUX_EXEC_STARTED 1u /* ExecStatus kinds: value = guest pid */
#define PVMUX_EXEC_FAILED 2u  /* value = Linux errno (not started) */
#define PVMUX_EXEC_EXITED 3u  /* value = Linux wait status (ended, output closed) */
#define PVMUX_EXEC_FLAG_TTY (1u << 0)  /* a pseudo-terminal; stderr goes to stdout */
#define PVMUX_EXEC_FLAG_USER (1u << 1) /* uid/gid given */
#define PVMUX_EXEC_FLAG_RLIMITS (1u << 2) /* pvmux_exec_rlimit records follow the environment */
#define PVMUX_EXEC_FLAG_GROUPS (1u << 3)  /* supplementary groups follow the environment */
#define PVMUX_EXEC_FLAG_CAPS (1u << 4)    /* capability sets follow the groups */
#define PVMUX_EXEC_CAPS_LEN 40u           /* effective, permitted, inheritable, bounding, ambient */

struct pvmux_exec_request_header {
    uint32_t magic;      /* PVMUX_EXEC_REQUEST_MAGIC */
    uint32_t header_len; /* 48 */
    uint32_t total_len;  /* bytes of the whole request */
    uint32_t flags;      /* PVMUX_EXEC_FLAG_* */
    uint64_t session;    /* >= 1 */
    uint32_t uid;        /* with PVMUX_EXEC_FLAG_USER */
    uint32_t gid;
    uint32_t nr_args;    /* >= 1 */
    uint32_t nr_env;     /* 0: the kernel's default environment */
    uint32_t cwd_len;    /* 0: "/" */
    uint16_t tty_rows;   /* with PVMUX_EXEC_FLAG_TTY: rows (0: 24); else 0 */
    uint16_t tty_cols;   /* with PVMUX_EXEC_FLAG_TTY: columns (0: 80); else 0 */
};

struct pvmux_exec_rlimit {
    uint32_t resource; /* Linux's RLIMIT_* (below 16), replaces init's */
    uint32_t reserved; /* 0 */
    uint64_t soft;     /* UINT64_MAX: unlimited */
    uint64_t hard;
};

/* ------------------------------------------------------------------------------------------
 * Volumes (volume.rs): VolumeOp(req_gpa, resp_gpa), writable host directories (--volume)
 * ---------------------------------------------------------------------------------------- */

#define PVMUX_VOLUME_IO_MAX UINT64_C(0x100000) /* largest READ/WRITE transfer */
#define PVMUX_MAX_VOLUMES 64u                  /* volume ids are below this */
#define PVMUX_VOLUME_PERM_MASK 01777u          /* set-id bits are always cleared */
#define PVMUX_VOLUME_UTIME_OMIT UINT64_MAX     /* UTIMES: leave this time */
#define PVMUX_VOLUME_NO_ID UINT32_MAX          /* chown's -1: never an owner in a request */

/* pvmux_volume_request.op */
#define PVMUX_VOLUME_LOOKUP 1u   /* lstat(path) -> stat */
#define PVMUX_VOLUME_LIST 2u     /* dir path, cookie = offset, HostfsList records -> value */
#define PVMUX_VOLUME_READ 3u     /* regular file path at offset into buf -> value */
#define PVMUX_VOLUME_WRITE 4u    /* buf into regular file path at offset -> value, stat */
#define PVMUX_VOLUME_CREATE 5u   /* regular file path, mode (flag EXCL) -> stat */
#define PVMUX_VOLUME_MKDIR 6u    /* directory path, mode -> stat */
#define PVMUX_VOLUME_UNLINK 7u   /* non-directory path */
#define PVMUX_VOLUME_RMDIR 8u    /* empty directory path */
#define PVMUX_VOLUME_RENAME 9u   /* path -> path2 (flag NOREPLACE) */
#define PVMUX_VOLUME_TRUNCATE 10u /* regular file path to size offset -> stat */
#define PVMUX_VOLUME_SYMLINK 11u /* link path pointing at path2 -> stat */
#define PVMUX_VOLUME_READLINK 12u /* link path's target into buf -> value = its length */
#define PVMUX_VOLUME_CHMOD 13u   /* path, mode & PVMUX_VOLUME_PERM_MASK -> stat */
#define PVMUX_VOLUME_UTIMES 14u  /* path, atime_ns, mtime_ns (final link not followed) -> stat */
#define PVMUX_VOLUME_FSYNC 15u   /* regular file or directory path */
#define PVMUX_VOLUME_CHOWN 16u   /* path, uid, gid (final link not followed) -> stat, or EOPNOTSUPP */
/* pvmux_volume_request.flags */
#define PVMUX_VOLUME_FLAG_EXCL 1u      /* CREATE: EEXIST if the name exists */
#define PVMUX_VOLUME_FLAG_NOREPLACE 2u /* RENAME: EEXIST if path2 exists */
#define PVMUX_VOLUME_FLAG_OWNER 4u     /* CREATE, MKDIR, SYMLINK: owner uid, gid */

/* One VolumeOp request (docs/ABI.md, "volumes"). */
struct pvmux_volume_request {
    uint32_t op;        /* PVMUX_VOLUME_* */
    uint32_t volume;    /* id from a VOLUME boot record */
    uint64_t path_gpa;  /* the path, relative to the volume's root */
    uint64_t path_len;  /* <= PVMUX_HOSTFS_PATH_MAX */
    uint64_t path2_gpa; /* RENAME's new path, SYMLINK's target */
    uint64_t path2_len; /* 0 for other ops */
    uint64_t buf_gpa;   /* READ/LIST/READLINK destination, WRITE source */
    uint64_t buf_len;   /* 0 for ops without a buffer */
    uint64_t offset;    /* file offset, new size (TRUNCATE) or cookie (LIST) */
    uint32_t mode;      /* CREATE, MKDIR, CHMOD */
    uint32_t flags;     /* PVMUX_VOLUME_FLAG_* the op takes; others 0 */
    uint64_t atime_ns;  /* UTIMES, or PVMUX_VOLUME_UTIME_OMIT */
    uint64_t mtime_ns;  /* UTIMES, or PVMUX_VOLUME_UTIME_OMIT */
    uint32_t uid;       /* CHOWN, or with FLAG_OWNER: the owner; 0 otherwise */
    uint32_t gid;       /* its group */
};

/* The host's answer when VolumeOp returns 0. */
struct pvmux_volume_response {
    uint32_t errno_;                 /* 0 or a positive Linux errno */
    uint32_t reserved;               /* 0 */
    uint64_t value;                  /* bytes read/written/listed, link target length */
    struct pvmux_hostfs_entry stat;  /* the object after the op (name/target lengths 0) */
};

/* ------------------------------------------------------------------------------------------
 * Shutdown record (shutdown.rs): how init ended when it was killed, Shutdown's second
 * argument. Exit code = 128 + signal.
 * ---------------------------------------------------------------------------------------- */

#define PVMUX_SHUTDOWN_RECORD_MAGIC 0x584d5650u /* "PVMX" little endian */
#define PVMUX_SHUTDOWN_EXE_MAX 256
#define PVMUX_SHUTDOWN_RECORD_SIZE 360

/* pvmux_shutdown_record.kind */
#define PVMUX_PROGRAM_SIGNALED 1u      /* killed by `signal` */
#define PVMUX_PROGRAM_OUT_OF_MEMORY 2u /* killed by the out-of-memory killer (SIGKILL) */
/* pvmux_shutdown_record.flags */
#define PVMUX_SHUTDOWN_FLAG_FAULT 1u /* the fault_* fields are valid */

struct pvmux_shutdown_record {
    uint32_t magic;             /* PVMUX_SHUTDOWN_RECORD_MAGIC */
    uint32_t kind;              /* PVMUX_PROGRAM_* */
    uint32_t flags;             /* PVMUX_SHUTDOWN_FLAG_* */
    int32_t pid;                /* the program's pid (1 for init) */
    uint32_t signal;            /* Linux signal number; SIGKILL for out of memory */
    int32_t code;               /* the signal's si_code (Linux values) */
    int32_t sender_pid;         /* sending process, 0 = the kernel or a fault */
    uint32_t fault_vector;      /* PVMUX_VEC_*, if PVMUX_SHUTDOWN_FLAG_FAULT */
    uint64_t fault_addr;        /* faulting address (#PF), else the instruction's */
    uint64_t fault_ip;
    uint64_t fault_sp;
    uint64_t fault_error_code;  /* x86 error code (#PF: 1 present, 2 write, 4 user, 16 fetch) */
    uint64_t total_vm_kib;      /* mapped memory */
    uint64_t anon_rss_kib;      /* resident private memory */
    uint64_t file_rss_kib;      /* resident file-backed memory */
    uint64_t shmem_rss_kib;     /* resident shared memory */
    uint32_t exe_len;           /* bytes of exe */
    uint32_t _reserved;         /* 0 */
    uint8_t exe[PVMUX_SHUTDOWN_EXE_MAX]; /* the program's path, not NUL-terminated */
};

/* ------------------------------------------------------------------------------------------
 * Live resources (ABI v6): PVMUX_PENDING_RESOURCES, task_limit_take, stats_report
 * ---------------------------------------------------------------------------------------- */

#define PVMUX_TASK_LIMIT_NONE 0xffffffffu /* task_limit_take: the kernel's own ceiling only */
#define PVMUX_GUEST_STATS_SIZE 32

struct pvmux_guest_stats {
    uint32_t tasks;      /* live tasks (threads), the kernel's own included */
    uint32_t task_limit; /* the task limit in force */
    uint32_t processes;  /* live processes */
    uint32_t _reserved;  /* 0 */
    uint64_t mem_total;  /* guest memory, bytes */
    uint64_t mem_free;   /* free guest memory, bytes */
};

/* ------------------------------------------------------------------------------------------
 * The balloon (ABI v6): PVMUX_PENDING_BALLOON, balloon_take, balloon_report
 * ---------------------------------------------------------------------------------------- */

#define PVMUX_BALLOON_MAX_RANGES 128     /* ranges in one balloon_report */
#define PVMUX_BALLOON_RESERVE_PAGES 2048 /* user-pool pages a guest keeps free */
#define PVMUX_BALLOON_RELEASED 1u        /* struct pvmux_balloon_range.kind */
#define PVMUX_BALLOON_RECLAIMED 2u
#define PVMUX_BALLOON_MORE 0u            /* balloon_report's status */
#define PVMUX_BALLOON_DONE 1u
#define PVMUX_BALLOON_SHORT 2u

struct pvmux_balloon_range {
    uint64_t gpa;   /* first byte, page aligned */
    uint32_t pages; /* at least 1 */
    uint32_t kind;  /* PVMUX_BALLOON_RELEASED or PVMUX_BALLOON_RECLAIMED */
};

_Static_assert(sizeof(struct pvmux_balloon_range) == 16, "BalloonRange size");

/* ------------------------------------------------------------------------------------------
 * Channels between kernels (ABI v6): PVMUX_PENDING_CHANNEL, channel_send/recv/ctl
 * ---------------------------------------------------------------------------------------- */

#define PVMUX_CHANNEL_MAX 16u            /* channels per tenant */
#define PVMUX_CHANNEL_NAME_MAX 64u       /* [A-Za-z0-9][A-Za-z0-9_.-]* */
#define PVMUX_CHANNEL_IO_MAX (256u * 1024u) /* bytes per channel_send/recv */
#define PVMUX_CHANNEL_CLOSED (-100)      /* channel_send: the peer reads no more (EPIPE) */
#define PVMUX_CHANNEL_BROKEN (-101)      /* the channel's shared indices are bad (EIO) */
#define PVMUX_CHANNEL_OP_POLL 1u         /* arg: PVMUX_CHANNEL_POLL_* wanted */
#define PVMUX_CHANNEL_OP_SHUT_WR 2u
#define PVMUX_CHANNEL_OP_SHUT_RD 3u
#define PVMUX_CHANNEL_POLL_READABLE 1u
#define PVMUX_CHANNEL_POLL_WRITABLE 2u
#define PVMUX_CHANNEL_POLL_HUP 4u
#define PVMUX_CHANNEL_POLL_CLOSED 8u

/* ------------------------------------------------------------------------------------------
 * Disks: PVMUX_PENDING_DISK, disk_take, disk_submit (the ring doorbell), disk_report
 * ---------------------------------------------------------------------------------------- */

#define PVMUX_DISK_SECTOR_SIZE 512
#define PVMUX_DISK_MAX_DISKS 8
#define PVMUX_DISK_RING_MAX 64        /* descriptors in one disk_submit */
#define PVMUX_DISK_IO_MAX (1u << 20)  /* bytes of one descriptor */
#define PVMUX_DISK_PATH_MAX 256
#define PVMUX_DISK_READ 1u            /* struct pvmux_disk_desc.op */
#define PVMUX_DISK_WRITE 2u
#define PVMUX_DISK_FLUSH 3u
#define PVMUX_DISK_EVENT_ATTACH 1u    /* struct pvmux_disk_event.kind */
#define PVMUX_DISK_EVENT_DETACH 2u
#define PVMUX_DISK_READ_ONLY 1u       /* struct pvmux_disk_event.flags */
#define PVMUX_DISK_MOUNTED_PATH_MAX 1024 /* disk_mounted: longest path shown */
#define PVMUX_DISK_MOUNTED_READ_ONLY 1u  /* disk_mounted flags: a read-only mount */
#define PVMUX_DISK_MOUNTED_BY_PROGRAM 2u /* a guest program's mount(2) */
#define PVMUX_DISK_MOUNTED_DETACHED 4u   /* unmounted lazily, files of it still open */

struct pvmux_disk_desc {
    uint32_t op;
    uint32_t status;   /* written by the host: 0 or a Linux errno */
    uint64_t sector;
    uint32_t count;    /* sectors */
    uint32_t reserved; /* zero */
    uint64_t buf_gpa;
};

struct pvmux_disk_event {
    uint32_t slot;
    uint32_t kind;
    uint32_t flags;
    uint32_t path_len;
    uint64_t sectors;
    uint64_t generation;
    uint8_t path[PVMUX_DISK_PATH_MAX]; /* the mount path (absolute, no NUL) */
};

_Static_assert(sizeof(struct pvmux_disk_desc) == 32, "DiskDesc size");
_Static_assert(sizeof(struct pvmux_disk_event) == 288, "DiskEvent size");

/* ------------------------------------------------------------------------------------------
 * Compile-time layout checks (the same values the Rust crate asserts)
 * ---------------------------------------------------------------------------------------- */

_Static_assert(sizeof(struct pvmux_kernel_abi_header) == 16, "KernelAbiHeader size");
_Static_assert(offsetof(struct pvmux_kernel_abi_header, abi_version) == 8, "KernelAbiHeader");
_Static_assert(offsetof(struct pvmux_kernel_abi_header, flags) == 12, "KernelAbiHeader");

_Static_assert(sizeof(struct pvmux_mem_region) == 24, "MemRegion size");
_Static_assert(offsetof(struct pvmux_mem_region, kind) == 16, "MemRegion.kind");
_Static_assert(offsetof(struct pvmux_boot_info, abi_version) == 8, "BootInfo.abi_version");
_Static_assert(offsetof(struct pvmux_boot_info, nr_vcpus) == 12, "BootInfo.nr_vcpus");
_Static_assert(offsetof(struct pvmux_boot_info, mem_size) == 16, "BootInfo.mem_size");
_Static_assert(offsetof(struct pvmux_boot_info, nr_mem_regions) == 24, "BootInfo");
_Static_assert(offsetof(struct pvmux_boot_info, boot_args_len) == 28, "BootInfo.boot_args_len");
_Static_assert(offsetof(struct pvmux_boot_info, mem_map) == 32, "BootInfo.mem_map");
_Static_assert(offsetof(struct pvmux_boot_info, boot_args_gpa) ==
                   32 + 24 * PVMUX_MAX_MEM_REGIONS,
               "BootInfo.boot_args_gpa");
_Static_assert(offsetof(struct pvmux_boot_info, initrd_gpa) == 32 + 24 * PVMUX_MAX_MEM_REGIONS + 2048,
               "BootInfo.initrd_gpa");
_Static_assert(offsetof(struct pvmux_boot_info, tsc_base) == 2872, "BootInfo.tsc_base");
_Static_assert(offsetof(struct pvmux_boot_info, clock_mult) == 2880, "BootInfo.clock_mult");
_Static_assert(offsetof(struct pvmux_boot_info, clock_shift) == 2888, "BootInfo.clock_shift");
_Static_assert(offsetof(struct pvmux_boot_info, wall_clock_epoch_ns) == 2896, "BootInfo");
_Static_assert(offsetof(struct pvmux_boot_info, page_table_root) == 2936, "BootInfo");
_Static_assert(offsetof(struct pvmux_boot_info, vcpu_shared_base) == 2968, "BootInfo");
_Static_assert(offsetof(struct pvmux_boot_info, entropy) == 2976, "BootInfo.entropy");
_Static_assert(offsetof(struct pvmux_boot_info, _reserved) == 3008, "BootInfo._reserved");
_Static_assert(sizeof(struct pvmux_boot_info) == 3040, "BootInfo size");
_Static_assert(sizeof(struct pvmux_boot_info) <= 4096, "BootInfo fits a page");

_Static_assert(sizeof(struct pvmux_boot_args_header) == 48, "BootArgsHeader size");
_Static_assert(offsetof(struct pvmux_boot_args_header, flags) == 12, "BootArgsHeader.flags");
_Static_assert(offsetof(struct pvmux_boot_args_header, host_pid) == 16, "BootArgsHeader");
_Static_assert(offsetof(struct pvmux_boot_args_header, seed) == 24, "BootArgsHeader.seed");
_Static_assert(offsetof(struct pvmux_boot_args_header, console_cols) == 32, "BootArgsHeader");
_Static_assert(offsetof(struct pvmux_boot_args_header, terminals) == 36, "BootArgsHeader");
_Static_assert(offsetof(struct pvmux_boot_args_header, canary_len) == 38, "BootArgsHeader");
_Static_assert(offsetof(struct pvmux_boot_args_header, nr_commands) == 40, "BootArgsHeader");
_Static_assert(offsetof(struct pvmux_boot_args_header, nr_args) == 42, "BootArgsHeader");
_Static_assert(sizeof(struct pvmux_boot_args_record) == 4, "RecordHeader size");

_Static_assert(sizeof(struct pvmux_trap_frame) == PVMUX_TRAP_FRAME_SIZE, "TrapFrame size");
_Static_assert(offsetof(struct pvmux_trap_frame, rdi) == 40, "TrapFrame.rdi");
_Static_assert(offsetof(struct pvmux_trap_frame, r15) == 112, "TrapFrame.r15");
_Static_assert(offsetof(struct pvmux_trap_frame, vector) == 120, "TrapFrame.vector");
_Static_assert(offsetof(struct pvmux_trap_frame, error_code) == 128, "TrapFrame.error_code");
_Static_assert(offsetof(struct pvmux_trap_frame, fault_addr) == 136, "TrapFrame.fault_addr");
_Static_assert(offsetof(struct pvmux_trap_frame, rip) == 144, "TrapFrame.rip");
_Static_assert(offsetof(struct pvmux_trap_frame, rflags) == 152, "TrapFrame.rflags");
_Static_assert(offsetof(struct pvmux_trap_frame, rsp) == 160, "TrapFrame.rsp");

_Static_assert(offsetof(struct pvmux_stub_table, hypercall) == 16, "StubTable.hypercall");
_Static_assert(offsetof(struct pvmux_stub_table, iret) == 32, "StubTable.iret");
_Static_assert(offsetof(struct pvmux_stub_table, null) == 152, "StubTable.null");
_Static_assert(offsetof(struct pvmux_stub_table, user_wait) == 160, "StubTable.user_wait");
_Static_assert(offsetof(struct pvmux_stub_table, inproc_syscall) == 192,
               "StubTable.inproc_syscall");
_Static_assert(offsetof(struct pvmux_stub_table, inproc_fp_save) == 200,
               "StubTable.inproc_fp_save");
_Static_assert(offsetof(struct pvmux_stub_table, mem_write) == 16 + 8 * (PVMUX_STUB_ENTRIES - 1),
               "StubTable.mem_write");
_Static_assert(sizeof(struct pvmux_stub_table) == 16 + 8 * PVMUX_STUB_ENTRIES, "StubTable size");

_Static_assert(offsetof(struct pvmux_sandbox_header, clock_shift) == 80, "SandboxHeader");
_Static_assert(offsetof(struct pvmux_sandbox_header, stub_status) == 88, "SandboxHeader");
_Static_assert(offsetof(struct pvmux_sandbox_header, stub_error) == 96, "SandboxHeader");
_Static_assert(offsetof(struct pvmux_sandbox_header, stub_table) == 104, "SandboxHeader");
_Static_assert(offsetof(struct pvmux_sandbox_header, kind) == 128, "SandboxHeader.kind");
_Static_assert(offsetof(struct pvmux_sandbox_header, user_ctx_gpa) == 144, "SandboxHeader");
_Static_assert(offsetof(struct pvmux_sandbox_header, user_grant_gpa) == 160, "SandboxHeader");
_Static_assert(offsetof(struct pvmux_sandbox_header, xsave_mask) == 176, "SandboxHeader");
_Static_assert(offsetof(struct pvmux_sandbox_header, cpu_flags) == 188, "SandboxHeader");
_Static_assert(offsetof(struct pvmux_sandbox_header, shared_image) == 192, "SandboxHeader");
_Static_assert(sizeof(struct pvmux_shared_image_range) == 24, "SharedImageRange size");
_Static_assert(sizeof(struct pvmux_sandbox_header) == 288, "SandboxHeader size");

_Static_assert(sizeof(struct pvmux_vcpu_shared) == 4096, "VcpuShared size");
_Static_assert(_Alignof(struct pvmux_vcpu_shared) == 4096, "VcpuShared alignment");
_Static_assert(offsetof(struct pvmux_vcpu_shared, pending) == 4, "VcpuShared.pending");
_Static_assert(offsetof(struct pvmux_vcpu_shared, hc_req) == 0x40, "VcpuShared.hc_req");
_Static_assert(offsetof(struct pvmux_vcpu_shared, hc_nr) == 0x48, "VcpuShared.hc_nr");
_Static_assert(offsetof(struct pvmux_vcpu_shared, hc_args) == 0x50, "VcpuShared.hc_args");
_Static_assert(offsetof(struct pvmux_vcpu_shared, hc_resp) == 0x80, "VcpuShared.hc_resp");
_Static_assert(offsetof(struct pvmux_vcpu_shared, hc_ret) == 0x88, "VcpuShared.hc_ret");
_Static_assert(offsetof(struct pvmux_vcpu_shared, hc_caller_rip) == 0xc0, "VcpuShared");
_Static_assert(offsetof(struct pvmux_vcpu_shared, crash_reason) == 0x100, "VcpuShared");
_Static_assert(offsetof(struct pvmux_vcpu_shared, crash_regs) == 0x120, "VcpuShared");
_Static_assert(offsetof(struct pvmux_vcpu_shared, stats) == 0x200, "VcpuShared.stats");
_Static_assert(offsetof(struct pvmux_vcpu_shared, guest) == 0x280, "VcpuShared.guest");

_Static_assert(sizeof(struct pvmux_user_ctx_header) == 32, "UserCtxHeader size");
_Static_assert(offsetof(struct pvmux_user_ctx_header, dead) == 20, "UserCtxHeader.dead");
_Static_assert(sizeof(struct pvmux_user_op) == 32, "UserOp size");
_Static_assert(sizeof(struct pvmux_user_slot) == PVMUX_USER_SLOT_SIZE, "UserSlot size");
_Static_assert(offsetof(struct pvmux_user_slot, command) == 0x10, "UserSlot.command");
_Static_assert(offsetof(struct pvmux_user_slot, exit_reason) == 0x30, "UserSlot.exit_reason");
_Static_assert(offsetof(struct pvmux_user_slot, regs) == 0x58, "UserSlot.regs");
_Static_assert(offsetof(struct pvmux_user_slot, stats) == 0x100, "UserSlot.stats");
_Static_assert(offsetof(struct pvmux_user_slot, ops_seq) == 0x140, "UserSlot.ops_seq");
_Static_assert(offsetof(struct pvmux_user_slot, kernel_cpu) == 0x14c, "UserSlot.kernel_cpu");
_Static_assert(offsetof(struct pvmux_user_slot, fp_pending) == 0x54, "UserSlot.fp_pending");
_Static_assert(offsetof(struct pvmux_user_slot, ops) == 0x300, "UserSlot.ops");
_Static_assert(offsetof(struct pvmux_user_slot, fpstate) == 0x2000, "UserSlot.fpstate");
_Static_assert(PVMUX_USER_CTX_SIZE(1) == PVMUX_USER_SLOT_OFFSET_OF(1), "user_ctx_size");

_Static_assert(sizeof(struct pvmux_shutdown_record) == PVMUX_SHUTDOWN_RECORD_SIZE,
               "ShutdownRecord size");
_Static_assert(offsetof(struct pvmux_shutdown_record, fault_vector) == 28, "ShutdownRecord");
_Static_assert(offsetof(struct pvmux_shutdown_record, fault_addr) == 32, "ShutdownRecord");
_Static_assert(offsetof(struct pvmux_shutdown_record, total_vm_kib) == 64, "ShutdownRecord");
_Static_assert(offsetof(struct pvmux_shutdown_record, exe_len) == 96, "ShutdownRecord");
_Static_assert(offsetof(struct pvmux_shutdown_record, exe) == 104, "ShutdownRecord.exe");

_Static_assert(sizeof(struct pvmux_volume_request) == 96, "VolumeRequest");
_Static_assert(offsetof(struct pvmux_volume_request, mode) == 64, "VolumeRequest.mode");
_Static_assert(sizeof(struct pvmux_volume_response) == 56, "VolumeResponse");
_Static_assert(offsetof(struct pvmux_volume_response, stat) == 16, "VolumeResponse.stat");
_Static_assert(sizeof(struct pvmux_hostfs_entry) == PVMUX_HOSTFS_ENTRY_HEADER, "HostfsEntry");
_Static_assert(sizeof(struct pvmux_net_addr) == 24, "NetAddr");
_Static_assert(sizeof(struct pvmux_net_publish) == 32, "NetPublish");
_Static_assert(sizeof(struct pvmux_exec_request_header) == 48, "ExecRequestHeader");
_Static_assert(offsetof(struct pvmux_exec_request_header, session) == 16, "ExecRequestHeader");
_Static_assert(offsetof(struct pvmux_exec_request_header, cwd_len) == 40, "ExecRequestHeader");
_Static_assert(offsetof(struct pvmux_hostfs_entry, perm) == 16, "HostfsEntry.perm");
_Static_assert(offsetof(struct pvmux_hostfs_entry, name_len) == 28, "HostfsEntry.name_len");
_Static_assert(offsetof(struct pvmux_hostfs_entry, kind) == 32, "HostfsEntry.kind");
_Static_assert(offsetof(struct pvmux_hostfs_entry, links) == 34, "HostfsEntry.links");
_Static_assert(offsetof(struct pvmux_hostfs_entry, ino) == 36, "HostfsEntry.ino");
_Static_assert(PVMUX_HOSTFS_LIST_MIN_BUF ==
                   PVMUX_HOSTFS_RECORD_LEN(PVMUX_HOSTFS_NAME_MAX, PVMUX_HOSTFS_TARGET_MAX),
               "hostfs::LIST_MIN_BUF");

_Static_assert(PVMUX_CTL_BASE + PVMUX_CTL_SIZE(PVMUX_MAX_VCPUS) <= PVMUX_PHYSMAP_BASE, "layout");
_Static_assert(PVMUX_USER_BASE < PVMUX_USER_END && PVMUX_USER_END < PVMUX_USER_CTX_BASE,
               "user layout");
_Static_assert(PVMUX_PHYSMAP_BASE + PVMUX_MAX_GUEST_MEM <= PVMUX_WINDOW_BASE, "layout");
_Static_assert(PVMUX_WINDOW_BASE + PVMUX_WINDOW_SIZE == PVMUX_WINDOW_END, "layout");
_Static_assert(PVMUX_WINDOW_END + PVMUX_WINDOW_SIZE == PVMUX_GUARD_END, "layout");
_Static_assert(PVMUX_DIRECT_MAP_BASE + PVMUX_MAX_GUEST_MEM <= PVMUX_KERNEL_REGION_BASE, "layout");
_Static_assert(PVMUX_KERNEL_REGION_BASE + PVMUX_KERNEL_REGION_SIZE <= PVMUX_GUEST_FREE_BASE,
               "layout");

#ifdef __cplusplus
}
#endif
