//! The alternate signal stack (`sigaltstack`): Linux's rules for setting it, what it reports,
//! when a handler runs on it, and `SS_AUTODISARM`.

use crate::fs::Errno;

/// `ss_flags`: the thread is running on the alternate stack (reported only).
pub(crate) const SS_ONSTACK: u32 = 1;
/// `ss_flags`: the alternate stack is disabled.
pub(crate) const SS_DISABLE: u32 = 2;
/// `ss_flags`: disable the alternate stack while a handler runs on it (restored by
/// `rt_sigreturn`).
pub(crate) const SS_AUTODISARM: u32 = 1 << 31;
/// The smallest alternate stack (x86-64 `MINSIGSTKSZ`).
pub(crate) const MINSIGSTKSZ: u64 = 2048;

/// Size of the x86-64 `stack_t`.
pub(crate) const STACK_T_SIZE: usize = 24;

/// A `stack_t`: `{ ss_sp, ss_flags, ss_size }`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StackT {
    /// Base of the stack.
    pub(crate) sp: u64,
    /// `SS_*` flags.
    pub(crate) flags: u32,
    /// Size in bytes.
    pub(crate) size: u64,
}

impl StackT {
    /// Decodes the x86-64 layout.
    pub(crate) fn from_bytes(b: &[u8; STACK_T_SIZE]) -> Self {
        let u64_at = |o: usize| {
            u64::from_le_bytes([
                b[o],
                b[o + 1],
                b[o + 2],
                b[o + 3],
                b[o + 4],
                b[o + 5],
                b[o + 6],
                b[o + 7],
            ])
        };
        Self {
            sp: u64_at(0),
            flags: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            size: u64_at(16),
        }
    }

    /// The x86-64 layout.
    pub(crate) fn to_bytes(self) -> [u8; STACK_T_SIZE] {
        let mut b = [0u8; STACK_T_SIZE];
        b[0..8].copy_from_slice(&self.sp.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.size.to_le_bytes());
        b
    }
}

/// A thread's alternate signal stack (Linux's `sas_ss_sp`, `sas_ss_size`, `sas_ss_flags`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AltStack {
    sp: u64,
    size: u64,
    /// The flags as last set (`SS_DISABLE`, `SS_AUTODISARM`).
    flags: u32,
}

impl Default for AltStack {
    fn default() -> Self {
        Self::DISABLED
    }
}

impl AltStack {
    /// No alternate stack (a new thread's, and after `execve`).
    pub(crate) const DISABLED: Self = Self {
        sp: 0,
        size: 0,
        flags: SS_DISABLE,
    };

    /// True if `sp` is on the alternate stack (Linux's `on_sig_stack`: never with
    /// `SS_AUTODISARM`, whose stack is disabled while a handler runs on it).
    /// Base, size and flags as last set (the hand-over record).
    pub(crate) const fn raw(&self) -> (u64, u64, u32) {
        (self.sp, self.size, self.flags)
    }

    /// The stack [`Self::raw`] gave (an adopted hand-over record's thread): a stack the
    /// record says is disabled, or too small to be one, is no stack.
    pub(crate) const fn from_raw((sp, size, flags): (u64, u64, u32)) -> Self {
        if flags & SS_DISABLE != 0 || size < MINSIGSTKSZ {
            Self::DISABLED
        } else {
            Self { sp, size, flags }
        }
    }

    pub(crate) const fn on_stack(&self, sp: u64) -> bool {
        self.flags & SS_AUTODISARM == 0 && sp > self.sp && sp - self.sp <= self.size
    }

    /// The `ss_flags` `sigaltstack` reports for a thread at `sp` (Linux's `sas_ss_flags`
    /// with the `SS_AUTODISARM` bit).
    pub(crate) const fn reported_flags(&self, sp: u64) -> u32 {
        let mode = if self.size == 0 {
            SS_DISABLE
        } else if self.on_stack(sp) {
            SS_ONSTACK
        } else {
            0
        };
        mode | (self.flags & SS_AUTODISARM)
    }

    /// What `sigaltstack`'s `old_ss` says for a thread at `sp`.
    pub(crate) const fn report(&self, sp: u64) -> StackT {
        StackT {
            sp: self.sp,
            flags: self.reported_flags(sp),
            size: self.size,
        }
    }

    /// What the signal frame's `uc_stack` records (the stack as set, which `rt_sigreturn`
    /// puts back).
    pub(crate) const fn saved(&self) -> StackT {
        StackT {
            sp: self.sp,
            flags: self.flags,
            size: self.size,
        }
    }

    /// `sigaltstack(ss)` by a thread at `sp` (Linux's `do_sigaltstack`): `EPERM` while on
    /// the alternate stack, `EINVAL` for a mode other than 0, `SS_ONSTACK` or `SS_DISABLE`,
    /// `ENOMEM` for a stack smaller than [`MINSIGSTKSZ`]. Disabling forgets the stack.
    pub(crate) fn set(&mut self, ss: StackT, sp: u64) -> Result<(), Errno> {
        if self.on_stack(sp) {
            return Err(Errno::EPERM);
        }
        let mode = ss.flags & !SS_AUTODISARM;
        if mode != 0 && mode != SS_ONSTACK && mode != SS_DISABLE {
            return Err(Errno::EINVAL);
        }
        *self = if mode == SS_DISABLE {
            Self {
                sp: 0,
                size: 0,
                flags: ss.flags,
            }
        } else {
            if ss.size < MINSIGSTKSZ {
                return Err(Errno::ENOMEM);
            }
            Self {
                sp: ss.sp,
                size: ss.size,
                flags: ss.flags,
            }
        };
        Ok(())
    }

    /// Where a handler's frame goes for a thread whose stack pointer is `sp` (below the
    /// red zone, as Linux's `get_sigframe`): the top of the alternate stack if the action
    /// has `SA_ONSTACK`, the stack is enabled and the thread is not on it yet; else `sp`.
    /// Returns the top and whether the frame is on the alternate stack.
    pub(crate) const fn frame_top(&self, sp: u64, onstack: bool) -> (u64, bool) {
        if onstack && self.reported_flags(sp) & (SS_DISABLE | SS_ONSTACK) == 0 {
            (self.sp.wrapping_add(self.size), true)
        } else {
            (sp, self.on_stack(sp))
        }
    }

    /// True if a frame at `[lo, hi)` fits on the alternate stack (a frame that would overflow
    /// it is a fatal `SIGSEGV`, as Linux).
    pub(crate) const fn holds(&self, lo: u64, hi: u64) -> bool {
        lo > self.sp && hi <= self.sp.wrapping_add(self.size) && lo < hi
    }

    /// After a handler's frame was built: an `SS_AUTODISARM` stack is disabled until the
    /// handler returns.
    pub(crate) fn disarm(&mut self) {
        if self.flags & SS_AUTODISARM != 0 {
            *self = Self::DISABLED;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x7000_0000;
    const SIZE: u64 = 0x4000;

    fn on(flags: u32) -> StackT {
        StackT {
            sp: BASE,
            flags,
            size: SIZE,
        }
    }

    #[test]
    fn constants_and_layout_match_the_host_linux() {
        assert_eq!(SS_ONSTACK, libc::SS_ONSTACK as u32);
        assert_eq!(SS_DISABLE, libc::SS_DISABLE as u32);
        assert_eq!(MINSIGSTKSZ, libc::MINSIGSTKSZ as u64);
        assert_eq!(core::mem::size_of::<libc::stack_t>(), STACK_T_SIZE);
        assert_eq!(core::mem::offset_of!(libc::stack_t, ss_sp), 0);
        assert_eq!(core::mem::offset_of!(libc::stack_t, ss_flags), 8);
        assert_eq!(core::mem::offset_of!(libc::stack_t, ss_size), 16);
        let s = on(SS_AUTODISARM);
        assert_eq!(StackT::from_bytes(&s.to_bytes()), s);
    }

    #[test]
    fn a_new_thread_has_none_and_setting_one_reports_it() {
        let mut a = AltStack::default();
        assert_eq!(
            a.report(0x1234),
            StackT {
                sp: 0,
                flags: SS_DISABLE,
                size: 0
            }
        );
        a.set(on(0), 0x1234).unwrap();
        assert_eq!(a.report(0x1234), on(0));
        // Running on it (sp just above the base .. exactly the top).
        assert_eq!(a.report(BASE + 1).flags, SS_ONSTACK);
        assert_eq!(a.report(BASE + SIZE).flags, SS_ONSTACK);
        assert_eq!(a.report(BASE).flags, 0);
        assert_eq!(a.report(BASE + SIZE + 1).flags, 0);
        // SS_ONSTACK is accepted as a mode when setting (old programs pass it).
        a.set(on(SS_ONSTACK), 0x1234).unwrap();
        assert_eq!(a.report(0x1234).flags, 0);
    }

    #[test]
    fn sigaltstack_errors() {
        let mut a = AltStack::default();
        assert_eq!(a.set(on(4), 0), Err(Errno::EINVAL));
        assert_eq!(a.set(on(SS_DISABLE | SS_ONSTACK), 0), Err(Errno::EINVAL));
        let small = StackT {
            size: MINSIGSTKSZ - 1,
            ..on(0)
        };
        assert_eq!(a.set(small, 0), Err(Errno::ENOMEM));
        assert_eq!(a, AltStack::DISABLED, "a refused stack changes nothing");
        a.set(
            StackT {
                size: MINSIGSTKSZ,
                ..on(0)
            },
            0,
        )
        .unwrap();
        // A disabled stack may be tiny.
        let mut b = AltStack::default();
        b.set(
            StackT {
                sp: 5,
                flags: SS_DISABLE,
                size: 1,
            },
            0,
        )
        .unwrap();
        assert_eq!(
            b.report(0),
            AltStack::DISABLED.report(0),
            "disabling forgets it"
        );
        // No change while running on it, not even disabling.
        let mut c = AltStack::default();
        c.set(on(0), 0).unwrap();
        assert_eq!(c.set(on(SS_DISABLE), BASE + 8), Err(Errno::EPERM));
        c.set(on(SS_DISABLE), BASE + SIZE + 8).unwrap();
        assert_eq!(c.report(0).flags, SS_DISABLE);
    }

    #[test]
    fn handlers_with_sa_onstack_switch_to_it_once() {
        let mut a = AltStack::default();
        let sp = 0x5000_0000;
        assert_eq!(a.frame_top(sp, true), (sp, false), "no alternate stack");
        a.set(on(0), sp).unwrap();
        assert_eq!(
            a.frame_top(sp, false),
            (sp, false),
            "not without SA_ONSTACK"
        );
        assert_eq!(a.frame_top(sp, true), (BASE + SIZE, true));
        // Nested: a signal arriving while on the alternate stack stays where it is.
        assert_eq!(a.frame_top(BASE + 0x100, true), (BASE + 0x100, true));
        assert_eq!(a.frame_top(BASE + 0x100, false), (BASE + 0x100, true));
        assert!(a.holds(BASE + 0x100, BASE + 0x300));
        assert!(!a.holds(BASE - 0x100, BASE + 0x100), "overflows");
        a.set(on(SS_DISABLE), sp).unwrap();
        assert_eq!(a.frame_top(sp, true), (sp, false));
    }

    #[test]
    fn autodisarm_disables_the_stack_while_the_handler_runs() {
        let mut a = AltStack::default();
        a.set(on(SS_AUTODISARM), 0).unwrap();
        assert_eq!(a.report(0).flags, SS_AUTODISARM);
        // With SS_AUTODISARM the thread never counts as on the stack: it may change it.
        assert_eq!(a.report(BASE + 8).flags, SS_AUTODISARM);
        assert_eq!(a.frame_top(0x5000_0000, true), (BASE + SIZE, true));
        let saved = a.saved();
        a.disarm();
        assert_eq!(a, AltStack::DISABLED);
        // rt_sigreturn puts the saved stack back.
        a.set(saved, BASE + 8).unwrap();
        assert_eq!(a.saved(), on(SS_AUTODISARM));
        // Without the flag, disarm does nothing.
        let mut b = AltStack::default();
        b.set(on(0), 0).unwrap();
        b.disarm();
        assert_eq!(b.saved(), on(0));
    }
}
