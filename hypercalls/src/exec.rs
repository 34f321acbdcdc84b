//! Exec sessions: a new process in a running guest (`runc exec`, `pvmux exec`), hypercalls
//! 25..=29 and 33 and pending bit [`crate::vcpu::pending::EXEC`] (docs/ABI.md §exec).
//!
//! The host queues an **exec request** for a running tenant and raises `pending::EXEC` on
//! vCPU 0. The guest kernel takes it with `ExecFetch` into its own memory — an
//! [`ExecRequestHeader`] followed by the working directory, the arguments and the
//! environment (the encoding below, [`encode`] / [`ExecRequest::parse`]) — starts the
//! program, and reports with `ExecStatus` that it started (its pid), that it could not
//! start (an errno), and later how it ended (a wait status). Each request has a **session**
//! id the host chose (>= 1, never reused within a tenant): the program's standard input is
//! what the host's caller writes to the session (`ExecRead`), its standard output and
//! standard error go to the session (`ExecWrite`, streams [`stream::STDOUT`] and
//! [`stream::STDERR`]).
//!
//! * `ExecFetch(buf_gpa, buf_len) -> len`: the next queued request, written at `buf_gpa`;
//!   `Busy` when none is queued; `TooLarge` if it does not fit in `buf_len` (it stays
//!   queued: pass [`REQUEST_MAX`] bytes); `BadAddress` if `[buf_gpa, buf_gpa +
//!   min(buf_len, REQUEST_MAX))` is not guest memory (checked first, nothing is taken).
//! * `ExecStatus(session, kind, value) -> 0` ([`status`]): `STARTED` (value: the guest pid,
//!   1..=`i32::MAX`) once, after the fetch; `FAILED` (value: the Linux errno, 1..=4095)
//!   instead of `STARTED` when the program cannot be started; `EXITED` (value: the Linux
//!   wait status, [`wait_status_valid`]) after `STARTED`, once the program has ended *and*
//!   every copy of its standard output and standard error is closed (all output has been
//!   written). `FAILED` and `EXITED` end the session: its id is unknown from then on.
//! * `ExecWrite(session, stream, buf_gpa, len) -> n`: output of the session's program
//!   (`len` at most [`IO_MAX`]); the host takes `n` (1..=len) bytes, as many as its bounded
//!   buffer for the stream has room for, and answers `Busy` when it is full (it raises
//!   `pending::EXEC` when room frees). `len` 0 returns 0.
//! * `ExecRead(session, buf_gpa, len) -> n`: the session's input, at most `min(len,
//!   IO_MAX)` bytes; 0 at its end; `Busy` when nothing is buffered yet (the host raises
//!   `pending::EXEC` when input or its end arrives).
//! * `ExecSignalTake(session) -> set` (hypercall 33): the signals the host sent to the
//!   session's program since the last call (bit `n - 1`: signal `n`), taken; the host
//!   raises `pending::EXEC` when one arrives, and the guest delivers each to the program's
//!   process (`SI_USER` from pid 0). `InvalidArgument` before the fetch and after the end.
//! * `ExecTermSize(session) -> (rows << 16) | cols`: a terminal session's size as the host
//!   last set it (the request's at first, 24 x 80 for zeros); the host raises
//!   `pending::EXEC` when it changes. `InvalidArgument` for a session without a terminal.
//!
//! `InvalidArgument`: an unknown session (never given, or ended), a call the session's
//! state does not allow (`STARTED` twice, `EXITED` before `STARTED`, ...), an unknown kind,
//! stream or malformed value. The host keeps at most [`MAX_SESSIONS`] sessions per tenant
//! and at most [`OUTPUT_BUFFER`] bytes per output stream and [`INPUT_BUFFER`] bytes of
//! input per session, whatever the guest does.

use core::mem::{offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::bootargs::{CapSets, Gids, GROUPS_MAX};

/// `"PVEX"`: the first word of every request.
pub const REQUEST_MAGIC: u32 = u32::from_le_bytes(*b"PVEX");
/// Largest encoded request (header, directory, arguments, environment).
pub const REQUEST_MAX: usize = 64 * 1024;
/// Largest `ExecWrite`/`ExecRead` transfer.
pub const IO_MAX: u64 = 64 * 1024;
/// Most sessions one tenant may have at once (queued, starting or running).
pub const MAX_SESSIONS: usize = 64;
/// Bytes of one output stream (stdout or stderr) of one session the host buffers.
pub const OUTPUT_BUFFER: usize = 64 * 1024;
/// Bytes of one session's input the host buffers.
pub const INPUT_BUFFER: usize = 64 * 1024;

/// `ExecWrite` streams.
pub mod stream {
    /// The program's standard output.
    pub const STDOUT: u64 = 1;
    /// The program's standard error.
    pub const STDERR: u64 = 2;
}

/// `ExecStatus` kinds.
pub mod status {
    /// The program runs: value = its guest pid.
    pub const STARTED: u64 = 1;
    /// The program could not be started: value = the Linux errno (`ENOENT`: no such
    /// program, `EACCES`: not executable, ...). The kernel writes a message to the session's
    /// standard error first.
    pub const FAILED: u64 = 2;
    /// The program ended and its output is closed: value = the Linux wait status.
    pub const EXITED: u64 = 3;
}

/// [`ExecRequestHeader::flags`].
pub mod flag {
    /// Give the program a terminal (a pseudo-terminal in the guest; standard error goes to
    /// standard output, as with `runc exec --tty`).
    pub const TTY: u32 = 1 << 0;
    /// Run as [`super::ExecRequestHeader::uid`] / `gid` (else as the guest's init program).
    pub const USER: u32 = 1 << 1;
    /// Resource limits follow the environment: the rest of the request is [`super::ExecRlimit`]
    /// records (at least one; else the program has init's limits).
    pub const RLIMITS: u32 = 1 << 2;
    /// Supplementary groups follow the environment: a `u32` count (at most
    /// [`crate::bootargs::GROUPS_MAX`]) then that many `u32` group ids, strictly ascending
    /// (else, with [`USER`], none; without it, init's).
    pub const GROUPS: u32 = 1 << 3;
    /// Capability sets follow the groups (if any): the 40 bytes of a boot command `CAPS`
    /// payload ([`crate::bootargs::CapSets`]: effective, permitted, inheritable, bounding,
    /// ambient, each a `u64` mask, valid), the sets the program's process holds when it
    /// calls `execve` (as runc's `capset` leaves them): the program runs with what Linux's
    /// `execve` rules make of them. Else the container's sets.
    pub const CAPS: u32 = 1 << 4;
    /// Every flag this version knows.
    pub const ALL: u32 = TTY | USER | RLIMITS | GROUPS | CAPS;
}

/// The fixed part of an exec request (48 bytes), followed by `cwd_len` bytes of working
/// directory (0: the root), then `nr_args` arguments and `nr_env` environment entries, each
/// a `u32` length and that many bytes (no NUL inside, no padding), then the optional parts
/// in this order: the groups ([`flag::GROUPS`]), the capability sets ([`flag::CAPS`]), the
/// resource limits ([`flag::RLIMITS`]). Canonical: `total_len`
/// is exactly the bytes used, unknown flags and non-zero reserved fields are refused.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ExecRequestHeader {
    /// [`REQUEST_MAGIC`].
    pub magic: u32,
    /// `size_of::<ExecRequestHeader>()` (48).
    pub header_len: u32,
    /// Bytes of the whole request, header included (at most [`REQUEST_MAX`]).
    pub total_len: u32,
    /// [`flag`] bits.
    pub flags: u32,
    /// The session id (>= 1).
    pub session: u64,
    /// With [`flag::USER`]: the user id to run as.
    pub uid: u32,
    /// With [`flag::USER`]: the group id to run as.
    pub gid: u32,
    /// Number of arguments (>= 1: `argv[0]` is the program).
    pub nr_args: u32,
    /// Number of environment entries (0: the kernel's default environment).
    pub nr_env: u32,
    /// Bytes of the working directory (0: `/`; else an absolute path).
    pub cwd_len: u32,
    /// With [`flag::TTY`]: the terminal's rows (0: 24); else 0.
    pub tty_rows: u16,
    /// With [`flag::TTY`]: the terminal's columns (0: 80); else 0.
    pub tty_cols: u16,
}

const _: () = assert!(size_of::<ExecRequestHeader>() == 48);
const _: () = assert!(offset_of!(ExecRequestHeader, session) == 16);
const _: () = assert!(offset_of!(ExecRequestHeader, uid) == 24);
const _: () = assert!(offset_of!(ExecRequestHeader, nr_args) == 32);
const _: () = assert!(offset_of!(ExecRequestHeader, cwd_len) == 40);
const _: () = assert!(offset_of!(ExecRequestHeader, tty_rows) == 44);
const _: () = assert!(offset_of!(ExecRequestHeader, tty_cols) == 46);

/// Bytes of the header.
pub const HEADER_LEN: usize = size_of::<ExecRequestHeader>();

/// One resource limit of the program (with [`flag::RLIMITS`]; 24 bytes, unaligned in the
/// request): it replaces the limit the program would inherit from init. Canonical: resources
/// strictly increasing, each below [`crate::bootargs::RLIMIT_RESOURCES`], `soft <= hard`,
/// `reserved` zero. The kernel may still refuse one it cannot honour (an `RLIMIT_NOFILE` hard
/// limit above its ceiling): that one is skipped.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ExecRlimit {
    /// Linux's `RLIMIT_*` number.
    pub resource: u32,
    /// Zero.
    pub reserved: u32,
    /// The soft limit (`u64::MAX`: unlimited).
    pub soft: u64,
    /// The hard limit (`u64::MAX`: unlimited).
    pub hard: u64,
}

const _: () = assert!(size_of::<ExecRlimit>() == 24);
const _: () = assert!(offset_of!(ExecRlimit, soft) == 8);
const _: () = assert!(offset_of!(ExecRlimit, hard) == 16);

/// Bytes of one [`ExecRlimit`].
pub const RLIMIT_LEN: usize = size_of::<ExecRlimit>();

/// The resource limits of a request: checked [`ExecRlimit`] records (empty: init's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecRlimits<'a>(&'a [u8]);

impl<'a> ExecRlimits<'a> {
    /// These records (checked by [`encode`]).
    pub fn new(records: &'a [ExecRlimit]) -> Self {
        Self(records.as_bytes())
    }

    /// Checks encoded records: canonical, as [`ExecRlimit`] says.
    fn parse(bytes: &'a [u8]) -> Result<Self, RequestError> {
        if !bytes.len().is_multiple_of(RLIMIT_LEN) {
            return Err(RequestError::Truncated);
        }
        let mut last = None;
        for c in bytes.chunks_exact(RLIMIT_LEN) {
            let r = ExecRlimit::read_from_bytes(c).map_err(|_| RequestError::Truncated)?;
            if r.resource >= crate::bootargs::RLIMIT_RESOURCES
                || r.reserved != 0
                || r.soft > r.hard
                || last.is_some_and(|l| l >= r.resource)
            {
                return Err(RequestError::BadRlimit);
            }
            last = Some(r.resource);
        }
        Ok(Self(bytes))
    }

    /// No limits given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The limits, in order.
    pub fn iter(&self) -> impl Iterator<Item = ExecRlimit> + 'a {
        self.0
            .chunks_exact(RLIMIT_LEN)
            .filter_map(|c| ExecRlimit::read_from_bytes(c).ok())
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// Shorter than its header, or its lengths run past the end.
    Truncated,
    /// Wrong magic or header length.
    BadHeader,
    /// `total_len` is not the bytes given, or more than [`REQUEST_MAX`].
    BadLength,
    /// An unknown flag, or a user or terminal size without its flag.
    Unknown,
    /// No arguments, or session 0.
    Empty,
    /// A string holds a NUL byte, or the working directory is not absolute.
    BadString,
    /// Bytes left after the last string.
    Trailing,
    /// A resource limit record is not canonical ([`ExecRlimit`]).
    BadRlimit,
    /// The supplementary groups are cut, more than [`crate::bootargs::GROUPS_MAX`], or not
    /// strictly ascending.
    BadGroups,
    /// The capability sets are cut or not valid ([`CapSets::ok`]).
    BadCaps,
}

/// Bytes of the [`flag::CAPS`] part.
pub const CAPS_LEN: usize = 40;

/// Bytes of the [`flag::GROUPS`] part with `n` groups.
const fn groups_len(n: usize) -> usize {
    4 + 4 * n
}

/// What the host asks the kernel to run (the typed view of an encoded request).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecParams<'a> {
    /// The session id (>= 1).
    pub session: u64,
    /// A terminal ([`flag::TTY`]).
    pub tty: bool,
    /// With `tty`: its rows and columns (0: 24 rows, 80 columns).
    pub tty_size: (u16, u16),
    /// The user and group to run as; `None`: init's.
    pub user: Option<(u32, u32)>,
    /// The working directory (absolute); `None`: `/`.
    pub cwd: Option<&'a [u8]>,
    /// Resource limits ([`flag::RLIMITS`]); empty: init's.
    pub rlimits: ExecRlimits<'a>,
    /// Supplementary groups ([`flag::GROUPS`]); `None`: none with `user`, else init's.
    pub groups: Option<Gids<'a>>,
    /// Capability sets ([`flag::CAPS`]); `None`: the container's (init's sets from the
    /// boot arguments).
    pub caps: Option<CapSets>,
}

/// Bytes the encoding of a request takes; `None` above [`REQUEST_MAX`].
pub fn encoded_len(p: &ExecParams<'_>, args: &[&[u8]], env: &[&[u8]]) -> Option<usize> {
    let mut n = HEADER_LEN
        + p.cwd.map_or(0, <[u8]>::len)
        + p.groups.map_or(0, |g| groups_len(g.len()))
        + if p.caps.is_some() { CAPS_LEN } else { 0 }
        + p.rlimits.0.len();
    for s in args.iter().chain(env) {
        n = n.checked_add(4)?.checked_add(s.len())?;
    }
    (n <= REQUEST_MAX).then_some(n)
}

/// Encodes a request into `out` (at least [`encoded_len`] bytes); returns its length.
/// Refuses what [`ExecRequest::parse`] would refuse (no arguments, session 0, NUL bytes, a
/// relative directory, too long).
pub fn encode(
    out: &mut [u8],
    p: &ExecParams<'_>,
    args: &[&[u8]],
    env: &[&[u8]],
) -> Result<usize, RequestError> {
    if args.is_empty() || p.session == 0 {
        return Err(RequestError::Empty);
    }
    let bad = |s: &[u8]| s.contains(&0);
    if args.iter().chain(env).any(|s| bad(s))
        || p.cwd.is_some_and(|c| bad(c) || !c.starts_with(b"/"))
    {
        return Err(RequestError::BadString);
    }
    if !p.tty && p.tty_size != (0, 0) {
        return Err(RequestError::Unknown);
    }
    ExecRlimits::parse(p.rlimits.0)?;
    if p.caps.is_some_and(|c| !c.ok()) {
        return Err(RequestError::BadCaps);
    }
    let len = encoded_len(p, args, env).ok_or(RequestError::BadLength)?;
    let out = out.get_mut(..len).ok_or(RequestError::Truncated)?;
    let cwd = p.cwd.unwrap_or_default();
    let (uid, gid) = p.user.unwrap_or_default();
    let h = ExecRequestHeader {
        magic: REQUEST_MAGIC,
        header_len: HEADER_LEN as u32,
        total_len: len as u32,
        flags: if p.tty { flag::TTY } else { 0 }
            | if p.user.is_some() { flag::USER } else { 0 }
            | if p.rlimits.is_empty() {
                0
            } else {
                flag::RLIMITS
            }
            | if p.groups.is_some() { flag::GROUPS } else { 0 }
            | if p.caps.is_some() { flag::CAPS } else { 0 },
        session: p.session,
        uid,
        gid,
        nr_args: args.len() as u32,
        nr_env: env.len() as u32,
        cwd_len: cwd.len() as u32,
        tty_rows: p.tty_size.0,
        tty_cols: p.tty_size.1,
    };
    out[..HEADER_LEN].copy_from_slice(h.as_bytes());
    let mut at = HEADER_LEN;
    out[at..at + cwd.len()].copy_from_slice(cwd);
    at += cwd.len();
    for s in args.iter().chain(env) {
        out[at..at + 4].copy_from_slice(&(s.len() as u32).to_le_bytes());
        at += 4;
        out[at..at + s.len()].copy_from_slice(s);
        at += s.len();
    }
    if let Some(g) = p.groups {
        out[at..at + 4].copy_from_slice(&(g.len() as u32).to_le_bytes());
        at += 4;
        for id in g.iter() {
            out[at..at + 4].copy_from_slice(&id.to_le_bytes());
            at += 4;
        }
    }
    if let Some(c) = p.caps {
        out[at..at + CAPS_LEN].copy_from_slice(&c.to_le_bytes());
        at += CAPS_LEN;
    }
    let rl = p.rlimits.0;
    out[at..at + rl.len()].copy_from_slice(rl);
    at += rl.len();
    Ok(at)
}

/// A checked request, read in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecRequest<'a> {
    header: ExecRequestHeader,
    cwd: &'a [u8],
    /// The arguments then the environment.
    strings: &'a [u8],
    rlimits: ExecRlimits<'a>,
    groups: Option<Gids<'a>>,
    caps: Option<CapSets>,
}

impl<'a> ExecRequest<'a> {
    /// Checks `bytes` (exactly one request) completely.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, RequestError> {
        let (header, rest) =
            ExecRequestHeader::read_from_prefix(bytes).map_err(|_| RequestError::Truncated)?;
        if header.magic != REQUEST_MAGIC || header.header_len as usize != HEADER_LEN {
            return Err(RequestError::BadHeader);
        }
        if header.total_len as usize != bytes.len() || bytes.len() > REQUEST_MAX {
            return Err(RequestError::BadLength);
        }
        if header.flags & !flag::ALL != 0
            || (header.flags & flag::TTY == 0 && (header.tty_rows | header.tty_cols) != 0)
        {
            return Err(RequestError::Unknown);
        }
        if header.nr_args == 0 || header.session == 0 {
            return Err(RequestError::Empty);
        }
        if header.flags & flag::USER == 0 && (header.uid != 0 || header.gid != 0) {
            return Err(RequestError::Unknown);
        }
        let cwd_len = header.cwd_len as usize;
        let cwd = rest.get(..cwd_len).ok_or(RequestError::Truncated)?;
        if cwd.contains(&0) || (!cwd.is_empty() && !cwd.starts_with(b"/")) {
            return Err(RequestError::BadString);
        }
        let strings = &rest[cwd_len..];
        let mut it = Strings {
            rest: strings,
            left: header.nr_args as u64 + header.nr_env as u64,
        };
        for _ in 0..it.left {
            let s = it.next_checked()?;
            if s.contains(&0) {
                return Err(RequestError::BadString);
            }
        }
        let strings = &strings[..strings.len() - it.rest.len()];
        let mut rest = it.rest;
        let groups = if header.flags & flag::GROUPS != 0 {
            let (n, after) = rest.split_at_checked(4).ok_or(RequestError::BadGroups)?;
            let n = u32::from_le_bytes([n[0], n[1], n[2], n[3]]) as usize;
            if n > GROUPS_MAX {
                return Err(RequestError::BadGroups);
            }
            let (ids, after) = after
                .split_at_checked(4 * n)
                .ok_or(RequestError::BadGroups)?;
            rest = after;
            Some(Gids::from_le_bytes(ids).ok_or(RequestError::BadGroups)?)
        } else {
            None
        };
        let caps = if header.flags & flag::CAPS != 0 {
            let (c, after) = rest
                .split_at_checked(CAPS_LEN)
                .ok_or(RequestError::BadCaps)?;
            rest = after;
            Some(CapSets::from_le_bytes(c).ok_or(RequestError::BadCaps)?)
        } else {
            None
        };
        let rlimits = if header.flags & flag::RLIMITS != 0 {
            if rest.is_empty() {
                return Err(RequestError::BadRlimit);
            }
            ExecRlimits::parse(rest)?
        } else if !rest.is_empty() {
            return Err(RequestError::Trailing);
        } else {
            ExecRlimits::default()
        };
        Ok(Self {
            header,
            cwd,
            strings,
            rlimits,
            groups,
            caps,
        })
    }

    /// The session, terminal, user and directory.
    pub fn params(&self) -> ExecParams<'a> {
        let h = &self.header;
        ExecParams {
            session: h.session,
            tty: h.flags & flag::TTY != 0,
            tty_size: (h.tty_rows, h.tty_cols),
            user: (h.flags & flag::USER != 0).then_some((h.uid, h.gid)),
            cwd: (!self.cwd.is_empty()).then_some(self.cwd),
            rlimits: self.rlimits,
            groups: self.groups,
            caps: self.caps,
        }
    }

    /// The arguments (at least one).
    pub fn args(&self) -> Strings<'a> {
        Strings {
            rest: self.strings,
            left: u64::from(self.header.nr_args),
        }
    }

    /// The environment (empty: the kernel's default).
    pub fn env(&self) -> Strings<'a> {
        let mut it = self.args();
        while it.next().is_some() {}
        Strings {
            rest: it.rest,
            left: u64::from(self.header.nr_env),
        }
    }
}

/// The length-prefixed strings of a request.
#[derive(Clone, Debug)]
pub struct Strings<'a> {
    rest: &'a [u8],
    left: u64,
}

impl<'a> Strings<'a> {
    fn next_checked(&mut self) -> Result<&'a [u8], RequestError> {
        let (len, rest) = self
            .rest
            .split_at_checked(4)
            .ok_or(RequestError::Truncated)?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let s = rest.get(..len).ok_or(RequestError::Truncated)?;
        self.rest = &rest[len..];
        self.left -= 1;
        Ok(s)
    }
}

impl<'a> Iterator for Strings<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        self.next_checked().ok()
    }
}

/// True if `ws` is a Linux wait status of an ended process: an exit code (`code << 8`) or a
/// fatal signal 1..=64 (with or without the core-dump bit `0x80`).
pub const fn wait_status_valid(ws: u64) -> bool {
    let sig = ws & 0x7f;
    if sig == 0 {
        ws & !0xff00 == 0
    } else {
        ws & !0xff == 0 && sig <= 64 && sig != 0x7f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(p: &ExecParams<'_>, args: &[&[u8]], env: &[&[u8]]) -> ([u8; 512], usize) {
        let mut buf = [0u8; 512];
        let n = encode(&mut buf, p, args, env).unwrap();
        (buf, n)
    }

    #[test]
    fn round_trip() {
        let p = ExecParams {
            session: 9,
            tty: true,
            tty_size: (40, 120),
            user: Some((1000, 100)),
            cwd: Some(b"/tmp"),
            rlimits: ExecRlimits::new(&LIMITS),
            ..ExecParams::default()
        };
        let (buf, n) = enc(&p, &[b"sh", b"-c", b""], &[b"A=1"]);
        assert_eq!(Some(n), encoded_len(&p, &[b"sh", b"-c", b""], &[b"A=1"]));
        let r = ExecRequest::parse(&buf[..n]).unwrap();
        assert!(r.params().rlimits.iter().eq(LIMITS));
        let r = ExecRequest::parse(&buf[..n]).unwrap();
        assert_eq!(r.params(), p);
        assert!(r.args().eq([&b"sh"[..], b"-c", b""]));
        assert!(r.env().eq([&b"A=1"[..]]));
        let q = ExecParams {
            session: 1,
            ..ExecParams::default()
        };
        let (buf, n) = enc(&q, &[b"true"], &[]);
        let r = ExecRequest::parse(&buf[..n]).unwrap();
        assert_eq!(r.params(), q);
        assert_eq!(r.env().count(), 0);
    }

    #[test]
    fn refusals() {
        let p = ExecParams {
            session: 3,
            ..ExecParams::default()
        };
        let mut buf = [0u8; 512];
        assert_eq!(encode(&mut buf, &p, &[], &[]), Err(RequestError::Empty));
        assert_eq!(
            encode(&mut buf, &p, &[b"a\0b"], &[]),
            Err(RequestError::BadString)
        );
        let rel = ExecParams {
            cwd: Some(b"tmp"),
            ..p
        };
        assert_eq!(
            encode(&mut buf, &rel, &[b"a"], &[]),
            Err(RequestError::BadString)
        );
        assert_eq!(
            encode(&mut [0u8; 10], &p, &[b"a"], &[]),
            Err(RequestError::Truncated)
        );
        let (good, n) = enc(&p, &[b"abc"], &[b"X=y"]);
        for cut in 0..n {
            assert!(ExecRequest::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good;
        extra[8..12].copy_from_slice(&((n + 1) as u32).to_le_bytes());
        assert_eq!(
            ExecRequest::parse(&extra[..n + 1]),
            Err(RequestError::Trailing)
        );
        let mut flags = good;
        flags[12] = 0x80;
        assert_eq!(ExecRequest::parse(&flags[..n]), Err(RequestError::Unknown));
        let mut nul = good;
        nul[HEADER_LEN + 5] = 0;
        assert_eq!(ExecRequest::parse(&nul[..n]), Err(RequestError::BadString));
    }

    const LIMITS: [ExecRlimit; 2] = [
        ExecRlimit {
            resource: 4,
            reserved: 0,
            soft: 0,
            hard: u64::MAX,
        },
        ExecRlimit {
            resource: 7,
            reserved: 0,
            soft: 100,
            hard: 200,
        },
    ];

    #[test]
    fn rlimits_are_canonical() {
        let mut buf = [0u8; 512];
        fn p(l: &[ExecRlimit]) -> ExecParams<'_> {
            ExecParams {
                session: 1,
                rlimits: ExecRlimits::new(l),
                ..ExecParams::default()
            }
        }
        let bad = |l: &[ExecRlimit]| encode(&mut [0u8; 512], &p(l), &[b"a"], &[]);
        let [a, b] = LIMITS;
        assert_eq!(bad(&[b, a]), Err(RequestError::BadRlimit));
        assert_eq!(bad(&[a, a]), Err(RequestError::BadRlimit));
        let inverted = ExecRlimit { soft: 300, ..b };
        assert_eq!(bad(&[inverted]), Err(RequestError::BadRlimit));
        let unknown = ExecRlimit { resource: 16, ..b };
        assert_eq!(bad(&[unknown]), Err(RequestError::BadRlimit));
        let n = encode(&mut buf, &p(&LIMITS), &[b"a"], &[]).unwrap();
        // The flag without records, a cut record, a reserved word set.
        let mut none = buf;
        none[8..12].copy_from_slice(&((n - 2 * RLIMIT_LEN) as u32).to_le_bytes());
        assert_eq!(
            ExecRequest::parse(&none[..n - 2 * RLIMIT_LEN]),
            Err(RequestError::BadRlimit)
        );
        let mut cut = buf;
        cut[8..12].copy_from_slice(&((n - 1) as u32).to_le_bytes());
        assert_eq!(
            ExecRequest::parse(&cut[..n - 1]),
            Err(RequestError::Truncated)
        );
        let mut reserved = buf;
        reserved[n - RLIMIT_LEN + 4] = 1;
        assert_eq!(
            ExecRequest::parse(&reserved[..n]),
            Err(RequestError::BadRlimit)
        );
        // Without the flag the records are trailing bytes.
        let mut noflag = buf;
        noflag[12] &= !(flag::RLIMITS as u8);
        assert_eq!(
            ExecRequest::parse(&noflag[..n]),
            Err(RequestError::Trailing)
        );
    }

    const CAPS: CapSets = CapSets {
        effective: 1 << 5,
        permitted: 1 << 5 | 1,
        inheritable: 1 << 5,
        bounding: 1 << 5 | 1 | 1 << 13,
        ambient: 1 << 5,
    };

    #[test]
    fn groups_and_caps_round_trip() {
        let ids = [10u32, 20, 65534].map(u32::to_le_bytes).concat();
        let p = ExecParams {
            session: 2,
            user: Some((1000, 1000)),
            groups: Gids::from_le_bytes(&ids),
            caps: Some(CAPS),
            rlimits: ExecRlimits::new(&LIMITS),
            ..ExecParams::default()
        };
        let (buf, n) = enc(&p, &[b"id"], &[b"A=1"]);
        assert_eq!(
            n,
            HEADER_LEN + 4 + 2 + 4 + 3 + 4 + 12 + CAPS_LEN + 2 * RLIMIT_LEN
        );
        let r = ExecRequest::parse(&buf[..n]).unwrap();
        assert_eq!(r.params(), p);
        assert!(r.params().groups.unwrap().iter().eq([10, 20, 65534]));
        assert!(r.env().eq([&b"A=1"[..]]));
        // Each part alone, and an empty group list (no groups, said explicitly).
        for q in [
            ExecParams {
                caps: None,
                rlimits: ExecRlimits::default(),
                ..p
            },
            ExecParams {
                groups: None,
                rlimits: ExecRlimits::default(),
                ..p
            },
            ExecParams {
                groups: Gids::from_le_bytes(&[]),
                caps: None,
                ..p
            },
        ] {
            let (buf, n) = enc(&q, &[b"id"], &[]);
            assert_eq!(ExecRequest::parse(&buf[..n]).unwrap().params(), q);
        }
    }

    #[test]
    fn groups_and_caps_are_canonical() {
        let mut buf = [0u8; 512];
        let bad_caps = CapSets {
            effective: 1 << 6,
            ..CAPS
        };
        let p = ExecParams {
            session: 1,
            caps: Some(bad_caps),
            ..ExecParams::default()
        };
        assert_eq!(
            encode(&mut buf, &p, &[b"a"], &[]),
            Err(RequestError::BadCaps)
        );
        let ids = [3u32, 7].map(u32::to_le_bytes).concat();
        let p = ExecParams {
            session: 1,
            groups: Gids::from_le_bytes(&ids),
            caps: Some(CAPS),
            ..ExecParams::default()
        };
        let n = encode(&mut buf, &p, &[b"a"], &[]).unwrap();
        let groups_at = HEADER_LEN + 4 + 1;
        let caps_at = groups_at + 4 + 8;
        assert_eq!(n, caps_at + CAPS_LEN);
        let parse = |b: &[u8]| ExecRequest::parse(b).map(|_| ());
        // Ids out of order, repeated; a count past the end or above GROUPS_MAX.
        let mut swapped = buf;
        swapped[groups_at + 4..groups_at + 12].copy_from_slice(&[7, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(parse(&swapped[..n]), Err(RequestError::BadGroups));
        let mut twice = buf;
        twice[groups_at + 8..groups_at + 12].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(parse(&twice[..n]), Err(RequestError::BadGroups));
        for count in [13u32, GROUPS_MAX as u32 + 1, u32::MAX] {
            let mut long = buf;
            long[groups_at..groups_at + 4].copy_from_slice(&count.to_le_bytes());
            assert_eq!(parse(&long[..n]), Err(RequestError::BadGroups), "{count}");
        }
        // Sets that break Linux's invariants, a bit above CAP_LAST_CAP, cut sets.
        let mut stray = buf;
        stray[caps_at] |= 1 << 6;
        assert_eq!(parse(&stray[..n]), Err(RequestError::BadCaps));
        let mut high = buf;
        high[caps_at + 3 * 8 + 7] = 0x80;
        assert_eq!(parse(&high[..n]), Err(RequestError::BadCaps));
        let mut cut = buf;
        cut[8..12].copy_from_slice(&((n - 1) as u32).to_le_bytes());
        assert_eq!(parse(&cut[..n - 1]), Err(RequestError::BadCaps));
        // A flag without its part, a part without its flag.
        let mut no_caps_flag = buf;
        no_caps_flag[12] &= !(flag::CAPS as u8);
        assert_eq!(parse(&no_caps_flag[..n]), Err(RequestError::Trailing));
        let mut no_groups_flag = buf;
        no_groups_flag[12] &= !(flag::GROUPS as u8);
        assert!(parse(&no_groups_flag[..n]).is_err());
        let mut only_flag = buf;
        only_flag[8..12].copy_from_slice(&(groups_at as u32).to_le_bytes());
        assert_eq!(parse(&only_flag[..groups_at]), Err(RequestError::BadGroups));
        assert_eq!(parse(&buf[..n]), Ok(()));
    }

    #[test]
    fn wait_statuses() {
        for ok in [0, 7 << 8, 255 << 8, 9, 15, 64, 0x80 | 11] {
            assert!(wait_status_valid(ok), "{ok:#x}");
        }
        for bad in [0x7f, 65, 1 << 16, 0x107, u64::MAX, 0x1ff00] {
            assert!(!wait_status_valid(bad), "{bad:#x}");
        }
    }
}
