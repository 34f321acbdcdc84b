//! `native.syscall.getppid`: the cost of a plain system call.

use crate::{measure, PeerError, Plan, Samples};

/// Operations per sample: a system call takes ~100 ns, so one sample is ~10 µs.
const BATCH: u32 = 100;

/// Times `getppid` system calls in this process.
pub fn getppid(plan: &Plan) -> Result<Samples, PeerError> {
    measure::batches(plan, BATCH, || {
        std::hint::black_box(rustix::process::getppid());
        Ok(())
    })
}
