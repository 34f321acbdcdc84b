//! `struct sockaddr_un`: decoding what programs pass and encoding what `getsockname`,
//! `getpeername`, `accept` and `recvfrom` return, with Linux's rules (`af_unix.c`
//! `unix_validate_addr` and `unix_mkname_bsd`). Pure logic, unit-tested on the host.

use alloc::vec::Vec;

use crate::fs::Errno;
use crate::linux::net::af::AF_UNIX;

/// `offsetof(struct sockaddr_un, sun_path)`.
const PATH_OFFSET: usize = 2;
/// `sizeof(struct sockaddr_un)`.
const SOCKADDR_UN_SIZE: usize = 110;

/// A decoded `AF_UNIX` address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UnixName<'a> {
    /// Just the family: `bind` autobinds.
    Unnamed,
    /// An abstract name: the bytes after the leading NUL (the length is part of it).
    Abstract(&'a [u8]),
    /// A filesystem path (up to the first NUL).
    Path(&'a [u8]),
}

/// Decodes the raw address `raw` (`EINVAL` for a wrong length or family).
pub(crate) fn parse(raw: &[u8]) -> Result<UnixName<'_>, Errno> {
    if raw.len() < PATH_OFFSET || raw.len() > SOCKADDR_UN_SIZE {
        return Err(Errno::EINVAL);
    }
    if u16::from_le_bytes([raw[0], raw[1]]) != AF_UNIX {
        return Err(Errno::EINVAL);
    }
    let p = &raw[PATH_OFFSET..];
    Ok(match p.first() {
        None => UnixName::Unnamed,
        Some(0) => UnixName::Abstract(&p[1..]),
        Some(_) => {
            let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
            UnixName::Path(&p[..end])
        }
    })
}

/// The raw address of a socket with no name: the family alone.
pub(crate) fn unnamed() -> Vec<u8> {
    AF_UNIX.to_le_bytes().to_vec()
}

/// The raw address of path `p`, as Linux returns it (with the terminating NUL).
pub(crate) fn path_addr(p: &[u8]) -> Vec<u8> {
    let mut v = unnamed();
    v.extend_from_slice(p);
    v.push(0);
    v
}

/// The raw address of abstract name `n` (a leading NUL, then `n`).
pub(crate) fn abstract_addr(n: &[u8]) -> Vec<u8> {
    let mut v = unnamed();
    v.push(0);
    v.extend_from_slice(n);
    v
}

/// The abstract name autobind number `n` gives: five hex digits, as Linux's `unix_autobind`.
pub(crate) fn autobind_name(n: u32) -> Vec<u8> {
    alloc::format!("{:05x}", n & 0xf_ffff).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(path: &[u8]) -> Vec<u8> {
        let mut v = vec![1, 0];
        v.extend_from_slice(path);
        v
    }

    #[test]
    fn lengths_and_family_are_checked() {
        assert_eq!(parse(&[1]), Err(Errno::EINVAL));
        assert_eq!(parse(&[2, 0, b'/']), Err(Errno::EINVAL), "AF_INET");
        assert_eq!(parse(&raw(&[b'a'; 109])), Err(Errno::EINVAL));
        assert_eq!(parse(&raw(&[b'a'; 108])), Ok(UnixName::Path(&[b'a'; 108])));
        assert_eq!(parse(&[1, 0]), Ok(UnixName::Unnamed));
    }

    #[test]
    fn paths_end_at_the_first_nul_and_abstract_names_keep_every_byte() {
        assert_eq!(parse(&raw(b"/tmp/s\0junk")), Ok(UnixName::Path(b"/tmp/s")));
        assert_eq!(
            parse(&raw(b"\0name\0x")),
            Ok(UnixName::Abstract(b"name\0x"))
        );
        assert_eq!(parse(&raw(b"\0")), Ok(UnixName::Abstract(b"")));
        assert_eq!(path_addr(b"/tmp/s"), raw(b"/tmp/s\0"));
        assert_eq!(abstract_addr(b"ab"), raw(b"\0ab"));
        assert_eq!(unnamed(), [1, 0]);
    }

    #[test]
    fn autobind_names_are_five_hex_digits() {
        assert_eq!(autobind_name(0), b"00000");
        assert_eq!(autobind_name(0xabc), b"00abc");
        assert_eq!(autobind_name(0x12_3456), b"23456");
        assert_eq!(abstract_addr(&autobind_name(1)).len(), 8);
    }
}
