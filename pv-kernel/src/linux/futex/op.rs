//! Decoding `futex(2)`'s arguments: the command and its flags, how a timeout is read, the
//! wake count, and `FUTEX_WAKE_OP`'s encoded operation on the second word.

use crate::fs::Errno;

/// `futex` commands this kernel implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// `FUTEX_WAIT`: sleep if the word holds the value (relative timeout).
    Wait,
    /// `FUTEX_WAKE`: wake waiters.
    Wake,
    /// `FUTEX_REQUEUE`: wake some, move the others to a second word.
    Requeue,
    /// `FUTEX_CMP_REQUEUE`: `FUTEX_REQUEUE` if the word still holds a value.
    CmpRequeue,
    /// `FUTEX_WAKE_OP`: change a second word atomically, wake on the first, and on the
    /// second if its old value passes a test.
    WakeOp,
    /// `FUTEX_WAIT_BITSET`: `FUTEX_WAIT` with a bitset and an absolute timeout.
    WaitBitset,
    /// `FUTEX_WAKE_BITSET`: wake the waiters whose bitset intersects.
    WakeBitset,
}

/// Flag: the futex is private to the process (keyed by address space and address).
pub(crate) const FUTEX_PRIVATE_FLAG: u32 = 128;
/// Flag: an absolute timeout is on `CLOCK_REALTIME` (else `CLOCK_MONOTONIC`).
pub(crate) const FUTEX_CLOCK_REALTIME: u32 = 256;

/// A decoded `futex_op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Op {
    /// The command.
    pub(crate) cmd: Cmd,
    /// `FUTEX_PRIVATE_FLAG`.
    pub(crate) private: bool,
    /// `FUTEX_CLOCK_REALTIME`.
    pub(crate) realtime: bool,
}

/// How a wait's timeout argument is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timeout {
    /// A duration from now.
    Relative,
    /// A `CLOCK_MONOTONIC` time.
    Monotonic,
    /// A `CLOCK_REALTIME` time.
    Realtime,
}

impl Op {
    /// Decodes `futex_op` as Linux's `do_futex`: the command is every bit but the two
    /// flags (`ENOSYS` for a command this kernel does not implement, the PI ones among
    /// them), and `FUTEX_CLOCK_REALTIME` only goes with `FUTEX_WAIT_BITSET` (`ENOSYS`
    /// otherwise, even with `FUTEX_WAIT`, whatever `futex(2)` says).
    pub(crate) fn decode(op: u32) -> Result<Self, Errno> {
        let cmd = match op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME) {
            0 => Cmd::Wait,
            1 => Cmd::Wake,
            3 => Cmd::Requeue,
            4 => Cmd::CmpRequeue,
            5 => Cmd::WakeOp,
            9 => Cmd::WaitBitset,
            10 => Cmd::WakeBitset,
            _ => return Err(Errno::ENOSYS),
        };
        let realtime = op & FUTEX_CLOCK_REALTIME != 0;
        if realtime && cmd != Cmd::WaitBitset {
            return Err(Errno::ENOSYS);
        }
        Ok(Self {
            cmd,
            private: op & FUTEX_PRIVATE_FLAG != 0,
            realtime,
        })
    }

    /// How the timeout of a wait is read (Linux's `futex_init_timeout`): `FUTEX_WAIT`'s is
    /// a duration; `FUTEX_WAIT_BITSET`'s an absolute time on the monotonic clock, or on
    /// the real-time clock with `FUTEX_CLOCK_REALTIME`.
    pub(crate) const fn timeout(&self) -> Timeout {
        match (self.cmd, self.realtime) {
            (Cmd::Wait, _) => Timeout::Relative,
            (_, true) => Timeout::Realtime,
            (_, false) => Timeout::Monotonic,
        }
    }
}

/// The most waiters a wake with count `n` (an `int`) wakes: a count of 0 or less still
/// wakes one, as Linux's loops (`if (++ret >= nr_wake) break;`) do.
pub(crate) const fn wake_limit(n: u32) -> usize {
    let n = n as i32;
    if n <= 0 {
        1
    } else {
        n as usize
    }
}

/// `FUTEX_WAKE_OP`'s operation on the second word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtomicOp {
    /// `FUTEX_OP_SET`: `*uaddr2 = oparg`.
    Set,
    /// `FUTEX_OP_ADD`: `*uaddr2 += oparg`.
    Add,
    /// `FUTEX_OP_OR`: `*uaddr2 |= oparg`.
    Or,
    /// `FUTEX_OP_ANDN`: `*uaddr2 &= ~oparg`.
    AndN,
    /// `FUTEX_OP_XOR`: `*uaddr2 ^= oparg`.
    Xor,
}

/// `FUTEX_WAKE_OP`'s encoded `val3`:
///
/// ```text
///  31      28 27  24 23         12 11          0
///  [s][ op  ][ cmp  ][   oparg    ][   cmparg   ]
/// ```
///
/// `s` (`FUTEX_OP_OPARG_SHIFT`) makes the argument `1 << oparg`; both arguments are 12-bit
/// signed numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WakeOp {
    /// The operation.
    pub(crate) op: AtomicOp,
    /// Its argument (after the shift).
    pub(crate) oparg: u32,
    /// The comparison (`FUTEX_OP_CMP_*`), checked when it is used.
    cmp: u32,
    /// The comparison's argument.
    cmparg: i32,
}

/// Sign-extends the low 12 bits of `v`.
const fn sign_extend_12(v: u32) -> i32 {
    ((v << 20) as i32) >> 20
}

impl WakeOp {
    /// Decodes `val3` (Linux's `futex_atomic_op_inuser`): `ENOSYS` for an unknown
    /// operation; a shift outside 0..=31 is taken modulo 32, as Linux does (with a
    /// warning) for old programs.
    pub(crate) const fn decode(v: u32) -> Result<Self, Errno> {
        let op = match (v >> 28) & 7 {
            0 => AtomicOp::Set,
            1 => AtomicOp::Add,
            2 => AtomicOp::Or,
            3 => AtomicOp::AndN,
            4 => AtomicOp::Xor,
            _ => return Err(Errno::ENOSYS),
        };
        let mut oparg = sign_extend_12(v >> 12) as u32;
        if v & (1 << 31) != 0 {
            oparg = 1 << (oparg & 31);
        }
        Ok(Self {
            op,
            oparg,
            cmp: (v >> 24) & 15,
            cmparg: sign_extend_12(v),
        })
    }

    /// The new value of the second word, whose old value is `old`.
    pub(crate) const fn apply(&self, old: u32) -> u32 {
        match self.op {
            AtomicOp::Set => self.oparg,
            AtomicOp::Add => old.wrapping_add(self.oparg),
            AtomicOp::Or => old | self.oparg,
            AtomicOp::AndN => old & !self.oparg,
            AtomicOp::Xor => old ^ self.oparg,
        }
    }

    /// Whether the waiters of the second word are woken, from its old value (a signed
    /// comparison with the argument). `ENOSYS` for an unknown comparison — which Linux
    /// reports only after the operation was done.
    pub(crate) const fn compare(&self, old: u32) -> Result<bool, Errno> {
        let (old, arg) = (old as i32, self.cmparg);
        Ok(match self.cmp {
            0 => old == arg,
            1 => old != arg,
            2 => old < arg,
            3 => old <= arg,
            4 => old > arg,
            5 => old >= arg,
            _ => return Err(Errno::ENOSYS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The C macro `FUTEX_OP(op, oparg, cmp, cmparg)` of `<linux/futex.h>`.
    const fn futex_op(op: u32, oparg: u32, cmp: u32, cmparg: u32) -> u32 {
        ((op & 0xf) << 28) | ((cmp & 0xf) << 24) | ((oparg & 0xfff) << 12) | (cmparg & 0xfff)
    }

    #[test]
    fn commands_and_flags_decode_as_linux() {
        let wait = Op::decode(libc::FUTEX_WAIT as u32).unwrap();
        assert_eq!(
            wait,
            Op {
                cmd: Cmd::Wait,
                private: false,
                realtime: false
            }
        );
        let wake = Op::decode((libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as u32).unwrap();
        assert!(wake.private && wake.cmd == Cmd::Wake);
        for (raw, cmd) in [
            (libc::FUTEX_REQUEUE, Cmd::Requeue),
            (libc::FUTEX_CMP_REQUEUE, Cmd::CmpRequeue),
            (libc::FUTEX_WAKE_OP, Cmd::WakeOp),
            (libc::FUTEX_WAIT_BITSET, Cmd::WaitBitset),
            (libc::FUTEX_WAKE_BITSET, Cmd::WakeBitset),
        ] {
            assert_eq!(Op::decode(raw as u32).map(|o| o.cmd), Ok(cmd));
        }
        // PI futexes, FUTEX_FD, unknown commands and stray bits: ENOSYS.
        for raw in [
            libc::FUTEX_LOCK_PI,
            libc::FUTEX_UNLOCK_PI,
            libc::FUTEX_TRYLOCK_PI,
            libc::FUTEX_WAIT_REQUEUE_PI,
            libc::FUTEX_CMP_REQUEUE_PI,
            2,
            11,
            0x7f,
            libc::FUTEX_WAIT | 0x200,
            libc::FUTEX_WAKE | (1 << 20),
        ] {
            assert_eq!(Op::decode(raw as u32), Err(Errno::ENOSYS), "{raw:#x}");
        }
        // FUTEX_CLOCK_REALTIME only with FUTEX_WAIT_BITSET (Linux 6.18 says ENOSYS for
        // FUTEX_WAIT too).
        let rt = libc::FUTEX_CLOCK_REALTIME as u32;
        assert!(Op::decode(libc::FUTEX_WAIT_BITSET as u32 | rt).is_ok());
        assert_eq!(Op::decode(libc::FUTEX_WAIT as u32 | rt), Err(Errno::ENOSYS));
        assert_eq!(Op::decode(libc::FUTEX_WAKE as u32 | rt), Err(Errno::ENOSYS));
        assert_eq!(
            Op::decode(libc::FUTEX_WAKE_OP as u32 | rt),
            Err(Errno::ENOSYS)
        );
        assert_eq!(FUTEX_PRIVATE_FLAG, libc::FUTEX_PRIVATE_FLAG as u32);
        assert_eq!(FUTEX_CLOCK_REALTIME, libc::FUTEX_CLOCK_REALTIME as u32);
    }

    #[test]
    fn timeouts_are_relative_only_for_a_plain_wait() {
        let t = |op: i32| Op::decode(op as u32).unwrap().timeout();
        let rt = libc::FUTEX_CLOCK_REALTIME;
        assert_eq!(t(libc::FUTEX_WAIT), Timeout::Relative);
        assert_eq!(
            t(libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG),
            Timeout::Relative
        );
        assert_eq!(t(libc::FUTEX_WAIT_BITSET), Timeout::Monotonic);
        assert_eq!(t(libc::FUTEX_WAIT_BITSET | rt), Timeout::Realtime);
    }

    #[test]
    fn a_wake_count_of_zero_or_less_wakes_one() {
        assert_eq!(wake_limit(0), 1);
        assert_eq!(wake_limit(u32::MAX), 1, "-1");
        assert_eq!(wake_limit(0x8000_0000), 1, "INT_MIN");
        assert_eq!(wake_limit(1), 1);
        assert_eq!(wake_limit(5), 5);
        assert_eq!(wake_limit(i32::MAX as u32), i32::MAX as usize);
    }

    #[test]
    fn wake_op_encoding_matches_the_futex_op_macro() {
        // libc's FUTEX_OP_* constants, through the C macro's layout.
        let (set, add, or, andn, xor) = (
            libc::FUTEX_OP_SET as u32,
            libc::FUTEX_OP_ADD as u32,
            libc::FUTEX_OP_OR as u32,
            libc::FUTEX_OP_ANDN as u32,
            libc::FUTEX_OP_XOR as u32,
        );
        let shift = libc::FUTEX_OP_OPARG_SHIFT as u32;
        let (eq, ne, lt, le, gt, ge) = (
            libc::FUTEX_OP_CMP_EQ as u32,
            libc::FUTEX_OP_CMP_NE as u32,
            libc::FUTEX_OP_CMP_LT as u32,
            libc::FUTEX_OP_CMP_LE as u32,
            libc::FUTEX_OP_CMP_GT as u32,
            libc::FUTEX_OP_CMP_GE as u32,
        );
        // glibc's old condition variables: "*uaddr2 = 0; wake if the old value > 1".
        let w = WakeOp::decode(futex_op(set, 0, gt, 1)).unwrap();
        assert_eq!((w.op, w.oparg), (AtomicOp::Set, 0));
        assert_eq!(w.apply(7), 0);
        assert_eq!((w.compare(2), w.compare(1)), (Ok(true), Ok(false)));

        let ops = [
            (set, 5, 5),
            (add, 5, 12),
            (or, 5, 7),
            (andn, 5, 2),
            (xor, 5, 2),
        ];
        for (op, arg, from_7) in ops {
            let w = WakeOp::decode(futex_op(op, arg, eq, 0)).unwrap();
            assert_eq!(w.apply(7), from_7, "op {op}");
        }
        // The shift flag: the argument is a bit number.
        let w = WakeOp::decode(futex_op(or | shift, 4, eq, 0)).unwrap();
        assert_eq!(w.apply(1), 0x11);
        // A shift beyond 31 (or negative) is taken modulo 32.
        let w = WakeOp::decode(futex_op(or | shift, 33, eq, 0)).unwrap();
        assert_eq!(w.oparg, 2);
        let w = WakeOp::decode(futex_op(or | shift, 0xfff, eq, 0)).unwrap();
        assert_eq!(w.oparg, 1 << 31, "-1 & 31 = 31");
        // 12-bit signed arguments: ADD of -1, comparison with -2.
        let w = WakeOp::decode(futex_op(add, 0xfff, lt, 0xffe)).unwrap();
        assert_eq!(w.apply(0), u32::MAX);
        assert_eq!(w.compare(-3i32 as u32), Ok(true));
        assert_eq!(w.compare(-2i32 as u32), Ok(false));
        assert_eq!(w.compare(5), Ok(false), "signed: 5 > -2");
        // Every comparison, on old values around the argument 3.
        let want = [
            (eq, [false, true, false]),
            (ne, [true, false, true]),
            (lt, [true, false, false]),
            (le, [true, true, false]),
            (gt, [false, false, true]),
            (ge, [false, true, true]),
        ];
        for (cmp, expect) in want {
            let w = WakeOp::decode(futex_op(set, 0, cmp, 3)).unwrap();
            let got = [2, 3, 4].map(|old| w.compare(old).unwrap());
            assert_eq!(got, expect, "cmp {cmp}");
        }
        // Unknown operations fail at once; unknown comparisons when compared.
        assert_eq!(WakeOp::decode(futex_op(5, 0, eq, 0)), Err(Errno::ENOSYS));
        assert_eq!(WakeOp::decode(futex_op(7, 0, eq, 0)), Err(Errno::ENOSYS));
        let w = WakeOp::decode(futex_op(set, 1, 6, 0)).unwrap();
        assert_eq!(w.compare(0), Err(Errno::ENOSYS));
    }
}
