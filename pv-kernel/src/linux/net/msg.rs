//! `struct msghdr` and control messages (`cmsghdr`) between user memory and kernel values:
//! descriptors passed with `SCM_RIGHTS` become open files on the way in and new descriptors
//! on the way out.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::Control;
use crate::fs::Errno;
use crate::linux::files::file::OpenFile;
use crate::linux::uaccess::{copy_from_user, copy_to_user, read_val, write_val};

/// `SOL_SOCKET`.
pub(crate) const SOL_SOCKET: i32 = 1;
/// `SCM_RIGHTS`.
pub(crate) const SCM_RIGHTS: i32 = 1;
/// `SCM_CREDENTIALS`.
pub(crate) const SCM_CREDENTIALS: i32 = 2;
/// Most descriptors in one `SCM_RIGHTS` message (Linux `SCM_MAX_FD`).
pub(crate) const SCM_MAX_FD: usize = 253;
/// Most control bytes a send may carry (Linux's default `optmem_max`): `ENOBUFS` above.
const MAX_CONTROL: usize = 20480;
/// `sizeof(struct cmsghdr)`.
const CMSG_HDR: usize = 16;

/// A decoded `struct msghdr` (x86-64 layout: 56 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MsgHdr {
    /// `msg_name`.
    pub(crate) name: u64,
    /// `msg_namelen`.
    pub(crate) namelen: u32,
    /// `msg_iov`.
    pub(crate) iov: u64,
    /// `msg_iovlen`.
    pub(crate) iovlen: u64,
    /// `msg_control`.
    pub(crate) control: u64,
    /// `msg_controllen`.
    pub(crate) controllen: u64,
    /// `msg_flags`.
    pub(crate) flags: u32,
}

/// `sizeof(struct msghdr)`.
pub(crate) const MSGHDR_SIZE: u64 = 56;

impl MsgHdr {
    /// Decodes the 56 bytes of a `msghdr`.
    pub(crate) fn decode(b: &[u8; 56]) -> Self {
        let q = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        let d = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
        Self {
            name: q(0),
            namelen: d(8),
            iov: q(16),
            iovlen: q(24),
            control: q(32),
            controllen: q(40),
            flags: d(48),
        }
    }

    /// Reads the `msghdr` at `va`.
    pub(crate) fn read(va: u64) -> Result<Self, Errno> {
        let b: [u8; 56] = read_val(va)?;
        Ok(Self::decode(&b))
    }
}

/// Writes `recvmsg`'s results into the `msghdr` at `va`: `msg_namelen`, `msg_controllen`,
/// `msg_flags`.
pub(crate) fn write_results(
    va: u64,
    namelen: u32,
    controllen: u64,
    flags: u32,
) -> Result<(), Errno> {
    write_val(va + 8, &namelen)?;
    write_val(va + 40, &controllen)?;
    write_val(va + 48, &flags)
}

/// `CMSG_ALIGN`.
const fn align(n: usize) -> usize {
    (n + 7) & !7
}

/// One raw control message: (level, type, payload).
pub(crate) type RawCmsg = (i32, i32, Vec<u8>);

/// Splits the control buffer `buf` into messages (`EINVAL` for a malformed header, as
/// Linux's `__scm_send`).
pub(crate) fn parse_cmsgs(buf: &[u8]) -> Result<Vec<RawCmsg>, Errno> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= CMSG_HDR {
        let h = &buf[at..at + CMSG_HDR];
        let len = u64::from_le_bytes(h[..8].try_into().map_err(|_| Errno::EINVAL)?);
        let level = i32::from_le_bytes(h[8..12].try_into().map_err(|_| Errno::EINVAL)?);
        let ty = i32::from_le_bytes(h[12..16].try_into().map_err(|_| Errno::EINVAL)?);
        let len = usize::try_from(len).map_err(|_| Errno::EINVAL)?;
        if len < CMSG_HDR || len > buf.len() - at {
            return Err(Errno::EINVAL);
        }
        out.push((level, ty, buf[at + CMSG_HDR..at + len].to_vec()));
        at += align(len);
        if at > buf.len() {
            break;
        }
    }
    Ok(out)
}

/// The current process's credentials for `SCM_CREDENTIALS`: (pid, uid, gid).
pub(crate) fn own_credentials() -> (i32, u32, u32) {
    let p = crate::linux::task::current_process();
    let c = p.creds.lock();
    (p.pid, c.euid, c.egid)
}

/// Whether the current process may send `SCM_CREDENTIALS` naming `pid`, `uid`, `gid`
/// (Linux's `scm_check_creds`): its own pid or `CAP_SYS_ADMIN`, one of its real, effective
/// or saved uids or `CAP_SETUID`, and likewise its gids or `CAP_SETGID`.
fn may_claim(pid: i32, uid: u32, gid: u32) -> bool {
    use crate::linux::caps::cap;
    let p = crate::linux::task::current_process();
    let c = p.creds.lock();
    (pid == p.pid || c.capable(cap::SYS_ADMIN))
        && ([c.uid, c.euid, c.suid].contains(&uid) || c.capable(cap::SETUID))
        && ([c.gid, c.egid, c.sgid].contains(&gid) || c.capable(cap::SETGID))
}

/// Reads and decodes the control messages of a send: `SCM_RIGHTS` descriptors become the
/// open files (`EBADF` for one not open, `EINVAL` above [`SCM_MAX_FD`]), `SCM_CREDENTIALS`
/// are checked against the sender (`EPERM` for a pid, uid or gid it may not claim).
pub(crate) fn read_control(va: u64, len: u64) -> Result<Vec<Control>, Errno> {
    if va == 0 || len == 0 {
        return Ok(Vec::new());
    }
    let len = usize::try_from(len).map_err(|_| Errno::ENOBUFS)?;
    if len > MAX_CONTROL {
        return Err(Errno::ENOBUFS);
    }
    let mut buf = alloc::vec![0u8; len];
    copy_from_user(va, &mut buf)?;
    let mut out = Vec::new();
    for (level, ty, data) in parse_cmsgs(&buf)? {
        out.push(match (level, ty) {
            (SOL_SOCKET, SCM_RIGHTS) => Control::Rights(rights_files(&data)?),
            (SOL_SOCKET, SCM_CREDENTIALS) => {
                let (pid, uid, gid) = decode_ucred(&data)?;
                if !may_claim(pid, uid, gid) {
                    return Err(Errno::EPERM);
                }
                Control::Credentials { pid, uid, gid }
            }
            (SOL_SOCKET, _) => return Err(Errno::EINVAL),
            _ => Control::Raw { level, ty, data },
        });
    }
    Ok(out)
}

/// A `struct ucred` (`EINVAL` unless exactly 12 bytes).
fn decode_ucred(d: &[u8]) -> Result<(i32, u32, u32), Errno> {
    if d.len() != 12 {
        return Err(Errno::EINVAL);
    }
    let w = |o: usize| u32::from_le_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]]);
    Ok((w(0) as i32, w(4), w(8)))
}

/// The open files of an `SCM_RIGHTS` payload.
fn rights_files(data: &[u8]) -> Result<Vec<Arc<OpenFile>>, Errno> {
    if !data.len().is_multiple_of(4) || data.len() / 4 > SCM_MAX_FD {
        return Err(Errno::EINVAL);
    }
    let p = crate::linux::task::current_process();
    let t = p.files.lock();
    data.chunks_exact(4)
        .map(|c| t.get(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect()
}

/// Writes received control messages to the user buffer at `va` of `room` bytes: passed
/// files are installed as new descriptors (close-on-exec with `cloexec`); what does not fit
/// is dropped (files closed) and `MSG_CTRUNC` reported. Returns (bytes written, truncated).
pub(crate) fn write_control(
    va: u64,
    room: u64,
    control: Vec<Control>,
    cloexec: bool,
) -> Result<(u64, bool), Errno> {
    let room = usize::try_from(room).unwrap_or(usize::MAX).min(1 << 20);
    let mut out: Vec<u8> = Vec::new();
    let mut truncated = false;
    for c in control {
        let (level, ty, payload) = match c {
            Control::Rights(files) => {
                let space = room.saturating_sub(out.len());
                if va == 0 || space < CMSG_HDR + 4 {
                    truncated = true;
                    continue;
                }
                let fit = ((space - CMSG_HDR) / 4).min(files.len());
                truncated |= fit < files.len();
                let p = crate::linux::task::current_process();
                let limit = crate::linux::rlimit::nofile(&p);
                let mut fds = Vec::new();
                {
                    let mut t = p.files.lock();
                    for f in files.into_iter().take(fit) {
                        match t.alloc(f, cloexec, 0, limit) {
                            Ok(fd) => fds.extend_from_slice(&fd.to_le_bytes()),
                            Err(_) => {
                                truncated = true;
                                break;
                            }
                        }
                    }
                }
                (SOL_SOCKET, SCM_RIGHTS, fds)
            }
            Control::Credentials { pid, uid, gid } => {
                let mut b = Vec::with_capacity(12);
                b.extend_from_slice(&pid.to_le_bytes());
                b.extend_from_slice(&uid.to_le_bytes());
                b.extend_from_slice(&gid.to_le_bytes());
                (SOL_SOCKET, SCM_CREDENTIALS, b)
            }
            Control::Raw { level, ty, data } => (level, ty, data),
        };
        if payload.is_empty() {
            continue;
        }
        let need = CMSG_HDR + payload.len();
        if va == 0 || out.len() + need > room {
            truncated = true;
            continue;
        }
        out.extend_from_slice(&(need as u64).to_le_bytes());
        out.extend_from_slice(&level.to_le_bytes());
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&payload);
        let padded = align(out.len()).min(room);
        out.resize(padded, 0);
    }
    if !out.is_empty() {
        copy_to_user(va, &out)?;
    }
    Ok((out.len() as u64, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, ty: i32, data: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((CMSG_HDR + data.len()) as u64).to_le_bytes());
        b.extend_from_slice(&level.to_le_bytes());
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(data);
        b.resize(align(b.len()), 0);
        b
    }

    #[test]
    fn parses_two_messages() {
        let mut buf = cmsg(1, 1, &[3, 0, 0, 0]);
        buf.extend(cmsg(0, 8, &[1, 2, 3, 4, 5]));
        let m = parse_cmsgs(&buf).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], (1, 1, alloc::vec![3, 0, 0, 0]));
        assert_eq!(m[1], (0, 8, alloc::vec![1, 2, 3, 4, 5]));
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut buf = cmsg(1, 1, &[0; 4]);
        buf[0] = 8; // shorter than the header
        assert_eq!(parse_cmsgs(&buf), Err(Errno::EINVAL));
        let mut buf = cmsg(1, 1, &[0; 4]);
        buf[0] = 200; // past the buffer
        assert_eq!(parse_cmsgs(&buf), Err(Errno::EINVAL));
        // A tail shorter than a header is ignored, as Linux's CMSG_NXTHDR.
        assert_eq!(parse_cmsgs(&[0; 8]).unwrap().len(), 0);
    }

    #[test]
    fn ucred_is_twelve_bytes() {
        let mut d = Vec::new();
        for v in [7u32, 1000, 100] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(decode_ucred(&d), Ok((7, 1000, 100)));
        assert_eq!(decode_ucred(&d[..8]), Err(Errno::EINVAL));
    }

    #[test]
    fn msghdr_fields() {
        let mut b = [0u8; 56];
        b[0..8].copy_from_slice(&0x1000u64.to_le_bytes());
        b[8..12].copy_from_slice(&16u32.to_le_bytes());
        b[16..24].copy_from_slice(&0x2000u64.to_le_bytes());
        b[24..32].copy_from_slice(&2u64.to_le_bytes());
        b[32..40].copy_from_slice(&0x3000u64.to_le_bytes());
        b[40..48].copy_from_slice(&24u64.to_le_bytes());
        b[48..52].copy_from_slice(&0x40u32.to_le_bytes());
        let m = MsgHdr::decode(&b);
        assert_eq!(
            m,
            MsgHdr {
                name: 0x1000,
                namelen: 16,
                iov: 0x2000,
                iovlen: 2,
                control: 0x3000,
                controllen: 24,
                flags: 0x40
            }
        );
    }
}
