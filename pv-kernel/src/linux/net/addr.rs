//! Socket addresses between user memory and the families: raw `sockaddr` bytes in, raw bytes
//! out (each family decodes its own), with Linux's length rules.

use alloc::vec::Vec;

use crate::fs::Errno;
use crate::linux::uaccess::{copy_from_user, copy_to_user, read_val, write_val};

/// `sizeof(struct sockaddr_storage)`: the longest address accepted.
pub(crate) const MAX_ADDR: usize = 128;

/// Reads the address of `len` bytes at `va` (`EINVAL` if longer than [`MAX_ADDR`] or
/// negative, `EFAULT` if unreadable).
pub(crate) fn read_sockaddr(va: u64, len: u64) -> Result<Vec<u8>, Errno> {
    let len = usize::try_from(len as u32 as i32).map_err(|_| Errno::EINVAL)?;
    if len > MAX_ADDR {
        return Err(Errno::EINVAL);
    }
    let mut b = alloc::vec![0u8; len];
    copy_from_user(va, &mut b)?;
    Ok(b)
}

/// Writes `addr` to the buffer at `va` whose size is the `socklen_t` at `lenp` (value-result,
/// as `accept`, `getsockname`, `recvfrom`): truncated to the buffer, the full length written
/// back. Nothing is written when `va` is 0 (the caller did not ask).
pub(crate) fn write_sockaddr(va: u64, lenp: u64, addr: &[u8]) -> Result<(), Errno> {
    if va == 0 || lenp == 0 {
        return Ok(());
    }
    let room: i32 = read_val(lenp)?;
    let room = usize::try_from(room).map_err(|_| Errno::EINVAL)?;
    let n = room.min(addr.len());
    copy_to_user(va, &addr[..n])?;
    write_val(lenp, &(addr.len() as u32))
}

/// The address family of a raw address (`None` if shorter than the family field).
pub(crate) fn family_of(addr: &[u8]) -> Option<u16> {
    Some(u16::from_le_bytes([*addr.first()?, *addr.get(1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_needs_two_bytes() {
        assert_eq!(family_of(&[]), None);
        assert_eq!(family_of(&[1]), None);
        assert_eq!(family_of(&[1, 0, b'/']), Some(1));
        assert_eq!(family_of(&[10, 0]), Some(10));
    }
}
