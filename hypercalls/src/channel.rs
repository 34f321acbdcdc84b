//! Channels between kernels (`pvmux run --channel NAME`, docs/MULTIKERNEL.md "Channels
//! between kernels", docs/ABI.md §channels).
//!
//! A channel connects exactly two tenants through a host-owned shared-memory object, a
//! [`ChannelHeader`] followed by two byte rings of [`RING_SIZE`] bytes, one per direction.
//! Only the two tenants' **host** processes map it; a guest names a channel by its index (the
//! order of the `--channel` flags, the [`crate::bootargs::command::CHANNEL`] record) and
//! moves bytes with three hypercalls:
//!
//! * `ChannelSend(index, buf_gpa, len, flags) -> n`: copies up to `len` (at most [`IO_MAX`]) bytes
//!   into the ring towards the peer; `Busy` when the ring is full, [`RET_CLOSED`] when the
//!   peer reads no more (it closed its reading side or ended) or this side shut writing.
//! * `ChannelRecv(index, buf_gpa, len, flags) -> n`: copies up to `len` (at most [`IO_MAX`]) bytes
//!   from the ring from the peer; 0 at the end of the stream (the peer shut writing or ended
//!   and everything it wrote was read), `Busy` when the ring is empty.
//! * `ChannelCtl(index, op, arg)`: [`op::POLL`] (`arg`: [`poll`] bits wanted; returns the bits
//!   in force), [`op::SHUT_WR`], [`op::SHUT_RD`].
//!
//! A call that returns `Busy` (or a poll without the bits asked) arms a wake-up, unless it
//! has [`flag::NO_WAKE`]: the host
//! raises [`crate::vcpu::pending::CHANNEL`] on vCPU 0 once the peer moved data, made room or
//! closed; the guest then retries. [`RET_BROKEN`] says the shared object's indices are
//! inconsistent (a peer writing garbage): the channel is unusable, nothing outside it is.

use core::mem::{offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Channels one tenant may have.
pub const MAX_CHANNELS: u32 = 16;
/// The longest channel name, in bytes.
pub const NAME_MAX: usize = 64;
/// Bytes one `ChannelSend`/`ChannelRecv` moves at most (longer requests are short).
pub const IO_MAX: u64 = 256 * 1024;
/// Bytes of each ring (a power of two).
pub const RING_SIZE: u64 = 1 << 20;
/// Size of the shared object: the header page and the two rings.
pub const OBJECT_SIZE: u64 = HEADER_SIZE + 2 * RING_SIZE;
/// Bytes reserved for the header (the rings start page aligned).
pub const HEADER_SIZE: u64 = 4096;
/// [`ChannelHeader::magic`]: `"PVMUXCHN"`.
pub const CHANNEL_MAGIC: u64 = u64::from_le_bytes(*b"PVMUXCHN");
/// [`ChannelHeader::version`].
pub const CHANNEL_VERSION: u32 = 1;

/// `ChannelSend`: the peer reads no more (`EPIPE` for the guest's writer).
pub const RET_CLOSED: i64 = -100;
/// The channel's shared state is inconsistent (`EIO`); nothing outside the channel is.
pub const RET_BROKEN: i64 = -101;

/// Flags of `ChannelSend` and `ChannelRecv` (argument `a3`; other bits are
/// `InvalidArgument`).
pub mod flag {
    /// A poll: when the call would be `Busy`, arm no wake-up (the guest polls the ring for
    /// a short while before it sleeps; its last try before sleeping arms one).
    pub const NO_WAKE: u64 = 1;
    /// Every flag.
    pub const ALL: u64 = NO_WAKE;
}

/// `ChannelCtl` operations.
pub mod op {
    /// `arg` = [`super::poll`] bits wanted; returns the bits in force (and arms a wake-up
    /// when none of the wanted ones is).
    pub const POLL: u64 = 1;
    /// This side writes no more: the peer reads the end of the stream after the data.
    pub const SHUT_WR: u64 = 2;
    /// This side reads no more: the peer's sends fail with [`super::RET_CLOSED`].
    pub const SHUT_RD: u64 = 3;
}

/// `ChannelCtl(POLL)` bits.
pub mod poll {
    /// Data to read, or the end of the stream.
    pub const READABLE: u64 = 1;
    /// Room to write (or a send would fail at once: [`CLOSED`] is set too).
    pub const WRITABLE: u64 = 2;
    /// The peer ended its stream (end of file once the ring is empty).
    pub const HUP: u64 = 4;
    /// The peer reads no more: sends fail.
    pub const CLOSED: u64 = 8;
    /// Every bit.
    pub const ALL: u64 = READABLE | WRITABLE | HUP | CLOSED;
}

/// Whether `name` is a valid channel name: 1..=[`NAME_MAX`] bytes of `[A-Za-z0-9_.-]`,
/// starting with a letter or digit (a file name in the state root and under `/dev/pvmux`).
pub const fn name_ok(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > NAME_MAX || !name[0].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < name.len() {
        let c = name[i];
        if !(c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-') {
            return false;
        }
        i += 1;
    }
    true
}

/// One end's words in the header (end 0 took the channel first, end 1 second). Each sits on
/// its own cache line.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct EndWords {
    /// 1 once a tenant took this end (an end is taken once).
    pub joined: u32,
    /// 1: this end writes no more (its peer reads the end of the stream after the data).
    pub closed_tx: u32,
    /// 1: this end reads no more (its peer's sends fail).
    pub closed_rx: u32,
    /// The doorbell: the peer adds 1 and `FUTEX_WAKE`s it when this end waits.
    pub bell: u32,
    /// 1: this end waits for data, room or a close (the peer rings [`Self::bell`]).
    pub want: u32,
    /// Reserved (zero).
    pub _pad: [u32; 11],
}

/// One ring's positions (free-running byte counts; `tail - head` bytes are queued). Ring `d`
/// carries end `d`'s bytes to end `1 - d`: end `d` writes `tail`, the other end `head`.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct RingWords {
    /// Bytes read so far (written by the reading end).
    pub head: u64,
    /// Reserved (zero; keeps `tail` on its own cache line).
    pub _pad0: [u64; 7],
    /// Bytes written so far (written by the writing end).
    pub tail: u64,
    /// Reserved (zero).
    pub _pad1: [u64; 7],
}

/// The start of the shared object ([`HEADER_SIZE`] reserved). Every word is read by the
/// other side as untrusted: a reader checks `0 <= tail - head <= RING_SIZE` against its own
/// private copy of its position and never uses a shared value as an offset or a length.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct ChannelHeader {
    /// [`CHANNEL_MAGIC`].
    pub magic: u64,
    /// [`CHANNEL_VERSION`].
    pub version: u32,
    /// Reserved (zero).
    pub _pad: u32,
    /// [`RING_SIZE`].
    pub ring_size: u64,
    /// Reserved (zero).
    pub _pad1: [u64; 5],
    /// The two ends.
    pub ends: [EndWords; 2],
    /// The two rings (ring `d`: end `d` to end `1 - d`).
    pub rings: [RingWords; 2],
}

const _: () = assert!(size_of::<EndWords>() == 64);
const _: () = assert!(size_of::<RingWords>() == 128);
const _: () = assert!(offset_of!(RingWords, tail) == 64);
const _: () = assert!(offset_of!(EndWords, bell) == 12);
const _: () = assert!(offset_of!(EndWords, want) == 16);
const _: () = assert!(offset_of!(ChannelHeader, ring_size) == 16);
const _: () = assert!(offset_of!(ChannelHeader, ends) == 64);
const _: () = assert!(offset_of!(ChannelHeader, rings) == 192);
const _: () = assert!(size_of::<ChannelHeader>() == 448);
const _: () = assert!(size_of::<ChannelHeader>() as u64 <= HEADER_SIZE);
const _: () = assert!(RING_SIZE.is_power_of_two() && IO_MAX <= RING_SIZE);

/// Byte offset in the shared object of ring `d`'s data.
pub const fn ring_offset(d: usize) -> u64 {
    HEADER_SIZE + d as u64 * RING_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name_ok(b"a"));
        assert!(name_ok(b"web-1.to_db"));
        assert!(name_ok(&[b'x'; NAME_MAX]));
        assert!(!name_ok(&[b'x'; NAME_MAX + 1]));
        assert!(!name_ok(b""));
        assert!(!name_ok(b"-a"));
        assert!(!name_ok(b".."));
        assert!(!name_ok(b"a/b"));
        assert!(!name_ok(b"a b"));
        assert!(!name_ok(b"a\0"));
    }

    #[test]
    fn layout() {
        assert_eq!(ring_offset(0), 4096);
        assert_eq!(ring_offset(1), 4096 + RING_SIZE);
        assert_eq!(OBJECT_SIZE, ring_offset(2));
    }
}
