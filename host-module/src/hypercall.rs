//! Host hypercall handlers. Every argument is an untrusted `u64`: each is validated, and no
//! value makes a handler panic.

use pvmux_hypercalls::hypercall::{CONSOLE_WRITE_MAX, HC_NR_MASK, PANIC_MSG_MAX};
use pvmux_hypercalls::{HcError, Hypercall};

use pvmux_hypercalls::shutdown::{ShutdownRecord, SHUTDOWN_RECORD_SIZE};
use zerocopy::FromBytes;

use crate::clock::realtime_ns;
use crate::console::Stream;
use crate::program_end::ProgramDeath;
use crate::GuestMemory;

/// What the vCPU thread does after a hypercall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HcAction {
    /// Respond with this value.
    Return(i64),
    /// The guest asked to exit with this code (already masked to 0..=255), saying how its
    /// program died if it was killed (a valid shutdown record).
    Shutdown(i32, Option<Box<ProgramDeath>>),
    /// The guest kernel panicked with this message.
    Panic(String),
}

/// The tenant services hypercalls use besides guest memory.
pub(crate) trait HcEnv {
    /// Writes console output to `stream`.
    fn console_write(&self, stream: Stream, bytes: &[u8]);
    /// Takes up to `max` bytes of console input (see [`crate::console_input`]).
    fn console_read(&self, max: usize) -> Result<Vec<u8>, HcError>;
    /// Takes the signals the host sent the guest's init (bit `n - 1`: signal `n`).
    fn take_signals(&self) -> u64 {
        0
    }
    /// The console's size as the host last set it, `(rows << 16) | cols` (0: never set).
    fn console_winsize(&self) -> u32 {
        0
    }
    /// `TaskLimitTake`: the task limit the host set since the last call (0: none).
    fn take_task_limit(&self) -> u32 {
        0
    }
    /// `StatsReport`: the guest's figures (checked).
    fn stats_report(&self, _stats: pvmux_hypercalls::resources::GuestStats) {}
    /// The tenant's balloon (`BalloonTake`, `BalloonReport`), if it has one.
    fn balloon(&self) -> Option<&crate::balloon::Balloon> {
        None
    }
    /// `SpaceCreate(ctx_gpa)`.
    fn space_create(&self, ctx_gpa: u64, reaped_gpa: u64) -> Result<u64, HcError>;
    /// `SpaceDestroy(handle)`.
    fn space_destroy(&self, handle: u64) -> Result<(), HcError>;
    /// The host directory shared with `--rootfs`, if any.
    fn hostfs(&self) -> Option<&crate::hostfs::HostFs> {
        None
    }
    /// The tenant's host file windows (with a share), if any.
    fn windows(&self) -> Option<&crate::window::Windows> {
        None
    }
    /// The tenant's host networking (`--net host`, `--publish`), if any.
    fn net(&self) -> Option<&crate::net::HostNet> {
        None
    }
    /// The writable host directories of `--volume`, by volume id.
    fn volumes(&self) -> &[std::sync::Arc<crate::volume::Volume>] {
        &[]
    }
    /// The tenant's channels to other tenants, by index.
    fn channels(&self) -> &[std::sync::Arc<crate::channel::ChannelEnd>] {
        &[]
    }

    /// The tenant's block devices (`DiskTake`, `DiskSubmit`, `DiskReport`), if it has any.
    fn disks(&self) -> Option<&crate::disk::Disks> {
        None
    }

    /// The tenant's kernel hand-over exchange (`pvmux upgrade`), if it has one.
    fn handover(&self) -> Option<&crate::upgrade::Handover> {
        None
    }
    /// The hand-over record offered to this tenant's kernel for adoption, if any.
    fn adoption(&self) -> Option<std::sync::Arc<crate::upgrade::Adoption>> {
        None
    }
    /// The tenant's exec sessions, if it takes them.
    fn exec(&self) -> Option<&crate::exec::ExecTable> {
        None
    }
}

/// Handles hypercall `nr` (flags in the high half) with `args`.
pub(crate) fn handle(mem: &GuestMemory, env: &dyn HcEnv, nr: u64, args: [u64; 6]) -> HcAction {
    let Some(call) = u32::try_from(nr & HC_NR_MASK)
        .ok()
        .and_then(Hypercall::from_raw)
    else {
        return HcAction::Return(HcError::UnknownCall.to_ret());
    };
    let ret = |r: Result<u64, HcError>| {
        HcAction::Return(match r {
            Ok(v) => v.min(i64::MAX as u64) as i64,
            Err(e) => e.to_ret(),
        })
    };
    match call {
        Hypercall::Nop => HcAction::Return(0),
        Hypercall::ConsoleWrite => ret(console_write(mem, env, args[0], args[1], args[2])),
        Hypercall::Shutdown => {
            let code = (args[0] & 0xff) as i32;
            HcAction::Shutdown(code, shutdown_record(mem, args[1], code))
        }
        Hypercall::Panic => HcAction::Panic(panic_message(mem, args[0], args[1])),
        Hypercall::WallClock => HcAction::Return(realtime_ns().min(i64::MAX as u64) as i64),
        Hypercall::SpaceCreate => ret(env.space_create(args[0], args[1])),
        Hypercall::SpaceDestroy => ret(env.space_destroy(args[0]).map(|()| 0)),
        Hypercall::ConsoleRead => ret(console_read(mem, env, args[0], args[1])),
        Hypercall::HostfsList => ret(crate::hostfs::hc_list(mem, env.hostfs(), args)),
        Hypercall::HostfsRead => ret(crate::hostfs::hc_read(mem, env.hostfs(), args)),
        Hypercall::HostfsLookup => ret(crate::hostfs::hc_lookup(mem, env.hostfs(), args)),
        Hypercall::WindowOpen => ret(crate::window::hc_open(
            mem,
            env.hostfs(),
            env.windows(),
            args,
        )),
        Hypercall::WindowRead => ret(env
            .windows()
            .ok_or(HcError::UnknownCall)
            .and_then(|w| w.read(mem, args[0], args[1], args[2], args[3]))),
        Hypercall::VolumeOp => ret(crate::volume::hc_volume_op(mem, env.volumes(), args)),
        Hypercall::NetSocket
        | Hypercall::NetBind
        | Hypercall::NetListen
        | Hypercall::NetAccept
        | Hypercall::NetConnect
        | Hypercall::NetSend
        | Hypercall::NetRecv
        | Hypercall::NetShutdown
        | Hypercall::NetClose
        | Hypercall::NetPoll
        | Hypercall::NetName
        | Hypercall::NetSetOpt
        | Hypercall::NetGetOpt
        | Hypercall::NetPublished => HcAction::Return(crate::net::hc(mem, env.net(), call, args)),
        Hypercall::ChannelSend | Hypercall::ChannelRecv | Hypercall::ChannelCtl => {
            HcAction::Return(crate::channel::hc(mem, env.channels(), call, args))
        }
        Hypercall::ExecFetch
        | Hypercall::ExecStatus
        | Hypercall::ExecWrite
        | Hypercall::ExecRead
        | Hypercall::ExecTermSize
        | Hypercall::ExecSignalTake => ret(crate::exec::hc(mem, env.exec(), call, args)),
        // At most bit 62 is set (signal 63): always a non-negative return.
        Hypercall::SignalTake => HcAction::Return((env.take_signals() & (u64::MAX >> 1)) as i64),
        Hypercall::ConsoleWinsize => HcAction::Return(i64::from(env.console_winsize())),
        Hypercall::TaskLimitTake => HcAction::Return(i64::from(env.take_task_limit())),
        Hypercall::StatsReport => ret(crate::resources::read_report(mem, args[0]).map(|s| {
            env.stats_report(s);
            0
        })),
        Hypercall::DiskTake => ret(env
            .disks()
            .ok_or(HcError::UnknownCall)
            .and_then(|d| d.hc_take(mem, args[0]))),
        Hypercall::DiskSubmit => ret(env
            .disks()
            .ok_or(HcError::UnknownCall)
            .and_then(|d| d.hc_submit(mem, args))),
        Hypercall::DiskReport => ret(env
            .disks()
            .ok_or(HcError::UnknownCall)
            .and_then(|d| d.hc_report(args))),
        Hypercall::DiskMounted => ret(env
            .disks()
            .ok_or(HcError::UnknownCall)
            .and_then(|d| d.hc_mounted(mem, args))),
        Hypercall::BalloonTake => ret(env.balloon().map(|b| b.take()).ok_or(HcError::UnknownCall)),
        Hypercall::BalloonReport => ret(env
            .balloon()
            .ok_or(HcError::UnknownCall)
            .and_then(|b| b.report(mem, args[0], args[1], args[2]))
            .map(|()| 0)),
        Hypercall::HandoverTake => {
            ret(env.handover().map(|h| h.take()).ok_or(HcError::UnknownCall))
        }
        Hypercall::HandoverRecord => ret(env
            .handover()
            .ok_or(HcError::UnknownCall)
            .and_then(|h| h.record(mem, args[0], args[1]))
            .map(|()| 0)),
        Hypercall::HandoverFetch => ret(env
            .adoption()
            .ok_or(HcError::InvalidArgument)
            .and_then(|a| a.fetch(mem, args[0], args[1]))),
        Hypercall::HandoverAdopted => ret(env
            .adoption()
            .ok_or(HcError::InvalidArgument)
            .and_then(|a| a.adopted(mem, args[0], args[1], args[2]))
            .map(|()| 0)),
        _ => HcAction::Return(HcError::UnknownCall.to_ret()),
    }
}

fn console_write(
    mem: &GuestMemory,
    env: &dyn HcEnv,
    gpa: u64,
    len: u64,
    stream: u64,
) -> Result<u64, HcError> {
    let stream = Stream::from_raw(stream).ok_or(HcError::InvalidArgument)?;
    if len > CONSOLE_WRITE_MAX {
        return Err(HcError::TooLarge);
    }
    let bytes = mem
        .read_vec(gpa, len as usize)
        .map_err(|_| HcError::BadAddress)?;
    env.console_write(stream, &bytes);
    Ok(len)
}

/// `ConsoleRead(gpa, len)`: at most [`CONSOLE_WRITE_MAX`] bytes per call (longer requests
/// are short reads); the whole requested range (up to that cap) must be guest memory.
fn console_read(mem: &GuestMemory, env: &dyn HcEnv, gpa: u64, len: u64) -> Result<u64, HcError> {
    let len = len.min(CONSOLE_WRITE_MAX);
    mem.check_range(gpa, len).map_err(|_| HcError::BadAddress)?;
    let bytes = env.console_read(len as usize)?;
    mem.write(gpa, &bytes).map_err(|_| HcError::BadAddress)?;
    Ok(bytes.len() as u64)
}

/// The program's death from the shutdown record at `gpa` (0: none), if it is readable and
/// well formed for exit code `code`; anything else is ignored (the exit code stands).
fn shutdown_record(mem: &GuestMemory, gpa: u64, code: i32) -> Option<Box<ProgramDeath>> {
    if gpa == 0 {
        return None;
    }
    let bytes = mem.read_vec(gpa, SHUTDOWN_RECORD_SIZE).ok()?;
    let record = ShutdownRecord::read_from_bytes(&bytes).ok()?;
    ProgramDeath::decode(&record, code).map(Box::new)
}

fn panic_message(mem: &GuestMemory, gpa: u64, len: u64) -> String {
    let len = len.min(PANIC_MSG_MAX);
    match mem.read_vec(gpa, len as usize) {
        Ok(bytes) => crate::escape::escape_guest(&bytes, crate::escape::Mode::Text),
        Err(_) => format!("<panic message at invalid address {gpa:#x}+{len:#x}>"),
    }
}

/// A fake tenant for tests: records console output per stream and space calls, serves
/// input (`None`: no source, end of input; empty: `Busy`); destroy accepts only handle 7.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct TestEnv {
    pub(crate) out: std::cell::RefCell<Vec<(Stream, Vec<u8>)>>,
    pub(crate) input: std::cell::RefCell<Option<Vec<u8>>>,
    pub(crate) spaces: std::cell::RefCell<Vec<String>>,
    /// Host signals for `SignalTake`.
    pub(crate) signals: std::cell::Cell<u64>,
    /// The console size for `ConsoleWinsize`.
    pub(crate) winsize: std::cell::Cell<u32>,
}

#[cfg(test)]
impl HcEnv for TestEnv {
    fn console_write(&self, stream: Stream, bytes: &[u8]) {
        self.out.borrow_mut().push((stream, bytes.to_vec()));
    }
    fn console_read(&self, max: usize) -> Result<Vec<u8>, HcError> {
        match self.input.borrow_mut().as_mut() {
            None => Ok(vec![]),
            Some(v) if v.is_empty() => Err(HcError::Busy),
            Some(v) => Ok(v.drain(..max.min(v.len())).collect()),
        }
    }
    fn take_signals(&self) -> u64 {
        self.signals.replace(0)
    }
    fn console_winsize(&self) -> u32 {
        self.winsize.get()
    }
    fn space_create(&self, ctx_gpa: u64, _reaped_gpa: u64) -> Result<u64, HcError> {
        self.spaces
            .borrow_mut()
            .push(format!("create {ctx_gpa:#x}"));
        Ok(7)
    }
    fn space_destroy(&self, handle: u64) -> Result<(), HcError> {
        self.spaces.borrow_mut().push(format!("destroy {handle}"));
        if handle == 7 {
            Ok(())
        } else {
            Err(HcError::InvalidArgument)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvmux_hypercalls::HC_FLAG_NOSPIN;

    fn call(mem: &GuestMemory, nr: u64, args: [u64; 6]) -> (HcAction, Vec<u8>) {
        let env = TestEnv::default();
        let a = handle(mem, &env, nr, args);
        let out = env
            .out
            .borrow()
            .iter()
            .flat_map(|(_, b)| b.clone())
            .collect();
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
    fn signal_take_takes_the_set_once() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let env = TestEnv::default();
        let nr = Hypercall::SignalTake as u64;
        assert_eq!(handle(&mem, &env, nr, [u64::MAX; 6]), HcAction::Return(0));
        // SIGTERM (15) and signal 63; the top bit cannot be set by the host but would not
        // make the return negative either.
        env.signals.set((1 << 14) | (1 << 62) | (1 << 63));
        assert_eq!(
            handle(&mem, &env, nr, [0; 6]),
            HcAction::Return((1 << 14) | (1 << 62))
        );
        assert_eq!(handle(&mem, &env, nr, [0; 6]), HcAction::Return(0));
    }

    #[test]
    fn console_winsize_is_the_last_size_set() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let env = TestEnv::default();
        let nr = Hypercall::ConsoleWinsize as u64;
        assert_eq!(handle(&mem, &env, nr, [u64::MAX; 6]), HcAction::Return(0));
        env.winsize.set((50 << 16) | 132);
        for _ in 0..2 {
            assert_eq!(
                handle(&mem, &env, nr, [0; 6]),
                HcAction::Return((50 << 16) | 132)
            );
        }
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
            HcAction::Shutdown(7, None)
        );
        assert_eq!(
            call(&mem, 2, [u64::MAX; 6]).0,
            HcAction::Shutdown(255, None)
        );
        // A shutdown record: decoded when well formed for the code, else ignored.
        let mut r = pvmux_hypercalls::ShutdownRecord::new(pvmux_hypercalls::ProgramEnd::Signaled);
        r.pid = 1;
        r.signal = 11;
        r.sender_pid = 1;
        r.set_exe(b"/prog");
        mem.write(0x2000, zerocopy::IntoBytes::as_bytes(&r))
            .unwrap();
        let HcAction::Shutdown(139, Some(d)) = call(&mem, 2, [139, 0x2000, 0, 0, 0, 0]).0 else {
            panic!("record not decoded")
        };
        assert_eq!(d.to_string(), "killed by SIGSEGV (sent by itself)");
        assert_eq!(
            call(&mem, 2, [137, 0x2000, 0, 0, 0, 0]).0,
            HcAction::Shutdown(137, None),
            "a record that does not match the code is ignored"
        );
        assert_eq!(
            call(&mem, 2, [139, u64::MAX - 8, 0, 0, 0, 0]).0,
            HcAction::Shutdown(139, None)
        );
        let HcAction::Return(t) = call(&mem, 4, [0; 6]).0 else {
            panic!()
        };
        assert!(t > 1_600_000_000_000_000_000);
        mem.write(0x100, b"oops \xff\x1b]0;t\x07\n").unwrap();
        assert_eq!(
            call(&mem, 3, [0x100, 13, 0, 0, 0, 0]).0,
            HcAction::Panic("oops \\xff\\x1b]0;t\\x07\n".into())
        );
        let HcAction::Panic(m) = call(&mem, 3, [u64::MAX, u64::MAX, 0, 0, 0, 0]).0 else {
            panic!()
        };
        assert!(m.contains("invalid address"));
        let HcAction::Panic(m) = call(&mem, 3, [0x2000, u64::MAX, 0, 0, 0, 0]).0 else {
            panic!()
        };
        // Cut at PANIC_MSG_MAX bytes, each escaped.
        let raw = mem.read_vec(0x2000, PANIC_MSG_MAX as usize).unwrap();
        assert_eq!(
            m,
            crate::escape::escape_guest(&raw, crate::escape::Mode::Text)
        );
    }

    #[test]
    fn console_write_streams() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        mem.write(0x5000, b"abc").unwrap();
        let env = TestEnv::default();
        for (stream, want) in [
            (0, Stream::Stdout),
            (1, Stream::KernelLog),
            (2, Stream::Stderr),
        ] {
            assert_eq!(
                handle(&mem, &env, 1, [0x5000, 3, stream, 0, 0, 0]),
                HcAction::Return(3)
            );
            assert_eq!(env.out.borrow_mut().pop(), Some((want, b"abc".to_vec())));
        }
        for bad in [3, 0x100, u64::MAX] {
            assert_eq!(
                handle(&mem, &env, 1, [0x5000, 3, bad, 0, 0, 0]),
                HcAction::Return(HcError::InvalidArgument.to_ret())
            );
        }
        assert!(env.out.borrow().is_empty());
    }

    #[test]
    fn console_read() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let size = mem.size();
        let env = TestEnv::default();
        let r = |gpa, len| handle(&mem, &env, 7, [gpa, len, 0, 0, 0, 0]);
        // No input source: end of input.
        assert_eq!(r(0x6000, 10), HcAction::Return(0));
        *env.input.borrow_mut() = Some(b"hello world".to_vec());
        assert_eq!(r(0x6000, 5), HcAction::Return(5));
        assert_eq!(mem.read_vec(0x6000, 5).unwrap(), b"hello");
        // Bad ranges consume nothing.
        for (gpa, len) in [(size, 1), (size - 2, 3), (u64::MAX, 2), (u64::MAX - 1, 4)] {
            assert_eq!(
                r(gpa, len),
                HcAction::Return(HcError::BadAddress.to_ret()),
                "{gpa:#x}"
            );
        }
        // Huge lengths are short reads (capped at 64 KiB, which must be guest memory).
        assert_eq!(r(0x7000, u64::MAX), HcAction::Return(6));
        assert_eq!(mem.read_vec(0x7000, 6).unwrap(), b" world");
        assert_eq!(r(0x7000, 1), HcAction::Return(HcError::Busy.to_ret()));
        assert_eq!(
            r(size - 100, u64::MAX),
            HcAction::Return(HcError::BadAddress.to_ret())
        );
    }

    #[test]
    fn space_calls_reach_the_tenant() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let env = TestEnv::default();
        assert_eq!(
            handle(&mem, &env, 5, [0x80_0000, 9, 9, 9, 9, 9]),
            HcAction::Return(7)
        );
        assert_eq!(
            handle(&mem, &env, 6, [7, 0, 0, 0, 0, 0]),
            HcAction::Return(0)
        );
        assert_eq!(
            handle(&mem, &env, 6, [u64::MAX, 0, 0, 0, 0, 0]),
            HcAction::Return(HcError::InvalidArgument.to_ret())
        );
        assert_eq!(
            *env.spaces.borrow(),
            [
                "create 0x800000",
                "destroy 7",
                &format!("destroy {}", u64::MAX)
            ]
        );
    }
}
