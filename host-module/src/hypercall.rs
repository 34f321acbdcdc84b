//! Host hypercall handlers. Every argument is an untrusted `u64`: each is validated, and no
//! value makes a handler panic.

use pvmux_hypercalls::hypercall::{CONSOLE_WRITE_MAX, HC_NR_MASK, PANIC_MSG_MAX};
use pvmux_hypercalls::{HcError, Hypercall};

use crate::clock::realtime_ns;
use crate::GuestMemory;

/// What the vCPU thread does after a hypercall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HcAction {
    /// Respond with this value.
    Return(i64),
    /// The guest asked to exit with this code (already masked to 0..=255).
    Shutdown(i32),
    /// The guest kernel panicked with this message.
    Panic(String),
}

/// Handles hypercall `nr` (flags in the high half) with `args`, writing console output to
/// `console`.
pub(crate) fn handle(
    mem: &GuestMemory,
    console: &mut dyn FnMut(&[u8]),
    nr: u64,
    args: [u64; 6],
) -> HcAction {
    let Some(call) = u32::try_from(nr & HC_NR_MASK)
        .ok()
        .and_then(Hypercall::from_raw)
    else {
        return HcAction::Return(HcError::UnknownCall.to_ret());
    };
    match call {
        Hypercall::Nop => HcAction::Return(0),
        Hypercall::ConsoleWrite => HcAction::Return(console_write(mem, console, args[0], args[1])),
        Hypercall::Shutdown => HcAction::Shutdown((args[0] & 0xff) as i32),
        Hypercall::Panic => HcAction::Panic(panic_message(mem, args[0], args[1])),
        Hypercall::WallClock => HcAction::Return(realtime_ns().min(i64::MAX as u64) as i64),
        _ => HcAction::Return(HcError::UnknownCall.to_ret()),
    }
}

fn console_write(mem: &GuestMemory, console: &mut dyn FnMut(&[u8]), gpa: u64, len: u64) -> i64 {
    if len > CONSOLE_WRITE_MAX {
        return HcError::TooLarge.to_ret();
    }
    match mem.read_vec(gpa, len as usize) {
        Ok(bytes) => {
            console(&bytes);
            len as i64
        }
        Err(_) => HcError::BadAddress.to_ret(),
    }
}

fn panic_message(mem: &GuestMemory, gpa: u64, len: u64) -> String {
    let len = len.min(PANIC_MSG_MAX);
    match mem.read_vec(gpa, len as usize) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => format!("<panic message at invalid address {gpa:#x}+{len:#x}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvmux_hypercalls::HC_FLAG_NOSPIN;

    fn call(mem: &GuestMemory, nr: u64, args: [u64; 6]) -> (HcAction, Vec<u8>) {
        let mut out = Vec::new();
        let a = handle(mem, &mut |b: &[u8]| out.extend_from_slice(b), nr, args);
        (a, out)
    }

    #[test]
    fn console_write_validation() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let size = mem.size();
        mem.write(0x5000, b"hello").unwrap();
        assert_eq!(
            call(&mem, 1, [0x5000, 5, 0, 0, 0, 0]),
            (HcAction::Return(5), b"hello".to_vec())
        );
        assert_eq!(
            call(&mem, 1 | HC_FLAG_NOSPIN, [0x5000, 0, 0, 0, 0, 0]).0,
            HcAction::Return(0)
        );
        let bad = HcAction::Return(HcError::BadAddress.to_ret());
        let big = HcAction::Return(HcError::TooLarge.to_ret());
        for (gpa, len, want) in [
            (size, 1, &bad),
            (size - 1, 2, &bad),
            (u64::MAX, 1, &bad),
            (u64::MAX - 2, 4, &bad),
            (0, CONSOLE_WRITE_MAX + 1, &big),
            (0, u64::MAX, &big),
            (u64::MAX, u64::MAX, &big),
        ] {
            let (a, out) = call(&mem, 1, [gpa, len, 0, 0, 0, 0]);
            assert_eq!(&a, want, "{gpa:#x} {len:#x}");
            assert!(out.is_empty());
        }
        assert_eq!(
            call(&mem, 1, [size - 1, 1, 0, 0, 0, 0]).0,
            HcAction::Return(1)
        );
    }

    #[test]
    fn other_calls() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let unknown = HcAction::Return(HcError::UnknownCall.to_ret());
        assert_eq!(call(&mem, 0, [u64::MAX; 6]).0, HcAction::Return(0));
        assert_eq!(call(&mem, 99, [0; 6]).0, unknown);
        assert_eq!(call(&mem, u64::MAX, [0; 6]).0, unknown);
        assert_eq!(
            call(&mem, 2, [0x1_0000_0107, 0, 0, 0, 0, 0]).0,
            HcAction::Shutdown(7)
        );
        assert_eq!(call(&mem, 2, [u64::MAX; 6]).0, HcAction::Shutdown(255));
        let HcAction::Return(t) = call(&mem, 4, [0; 6]).0 else {
            panic!()
        };
        assert!(t > 1_600_000_000_000_000_000);
        mem.write(0x100, b"oops \xff").unwrap();
        assert_eq!(
            call(&mem, 3, [0x100, 6, 0, 0, 0, 0]).0,
            HcAction::Panic("oops \u{fffd}".into())
        );
        let HcAction::Panic(m) = call(&mem, 3, [u64::MAX, u64::MAX, 0, 0, 0, 0]).0 else {
            panic!()
        };
        assert!(m.contains("invalid address"));
        let HcAction::Panic(m) = call(&mem, 3, [0x2000, u64::MAX, 0, 0, 0, 0]).0 else {
            panic!()
        };
        assert_eq!(m.len(), PANIC_MSG_MAX as usize);
    }
}
