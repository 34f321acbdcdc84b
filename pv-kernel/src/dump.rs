//! The host's dump request (`pending::DUMP`; `pvmux run` got `SIGQUIT`, as a JVM prints its
//! threads): what every vCPU runs, the run queue, the timed sleepers with their deadlines and
//! every process's threads, written to the console's standard error (visible without
//! `--log debug`), each line starting `pvmux: dump:`. A thread that is blocked but neither
//! queued nor a timed sleeper waits on a wait queue (a pipe, a futex, a child).

use alloc::string::String;
use alloc::vec::Vec;

use pvmux_hypercalls::hypercall::stream;

/// Writes the dump (from the event handler of the vCPU the host raised the bit on).
pub(crate) fn write() {
    let now = crate::time::now_ns();
    let mut lines = Vec::new();
    lines.push(alloc::format!(
        "guest kernel at {:.3} s, asked on vCPU {}",
        now as f64 / 1e9,
        crate::stub::vcpu_id()
    ));
    crate::sched::dump_lines(now, &mut lines);
    crate::linux::task::dump_lines(&mut lines);
    let mut text = String::new();
    for l in &lines {
        text.push_str("pvmux: dump: ");
        text.push_str(l);
        text.push('\n');
    }
    crate::hcall::console_write_stream(stream::STDERR, text.as_bytes());
}
