//! The host's resource requests (`pending::RESOURCES`, docs/ABI.md §resources): take a new
//! task limit, if the host set one (`pvmux update --pids-limit`), then report the guest's
//! figures (`pvmux events`): tasks, processes, the task limit in force, memory.

use pvmux_hypercalls::resources::GuestStats;

use crate::irq::IrqLock;

/// The record, aligned to its size so that it never crosses a page.
#[repr(C, align(32))]
struct Aligned(GuestStats);

/// Where the record is written: a static, in the kernel image (an event may run on a stack
/// outside the direct map, whose addresses have no guest-physical translation).
static RECORD: IrqLock<Aligned> = IrqLock::new(Aligned(GuestStats {
    tasks: 0,
    task_limit: 0,
    processes: 0,
    _reserved: 0,
    mem_total: 0,
    mem_free: 0,
}));

/// Answers the host. Safe in event context (locks are interrupt-safe; no allocation).
pub(crate) fn host_request() {
    super::task::set_host_task_limit(crate::hcall::task_limit_take());
    let (tasks, processes) = super::task::counts();
    let mut rec = RECORD.lock();
    rec.0 = GuestStats {
        tasks,
        task_limit: super::task::max_tasks(),
        // A process whose last task is gone but that is not reaped yet has none.
        processes: processes.min(tasks),
        _reserved: 0,
        mem_total: super::balloon::mem_total_bytes(),
        mem_free: super::procfs::mem_free_bytes(),
    };
    crate::hcall::stats_report(&rec.0);
}
