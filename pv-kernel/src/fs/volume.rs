//! The guest side of volumes (`pvmux run --volume`, docs/ABI.md §volumes): the `VolumeOp`
//! hypercall as the [`VolumeHost`] behind the volume inodes of [`super::ramfs`], and
//! [`mount_all`], which mounts the boot arguments' `VOLUME` records at boot.
//!
//! Requests, paths and buffers are passed by guest-physical address: kernel buffers outside
//! the direct map (a kernel stack, say) are bounced through the heap. A hypercall error
//! (which a well-behaved kernel never causes) is `EIO`; the operation's own failure is the
//! host's Linux errno.

use alloc::sync::Arc;
use alloc::vec::Vec;

use pvmux_hypercalls::hostfs::HostfsEntry;
use pvmux_hypercalls::volume::{allowed_flags, flag, op, VolumeRequest, VolumeResponse};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use super::ramfs::{VolumeBuf, VolumeHost, VolumeReq};
use super::Errno;
use crate::println;

/// The host's volumes, reached by hypercalls.
pub(crate) struct Host;

/// Guest-physical address of `bytes` if it is in the direct map or the image.
fn gpa_of(bytes: &[u8]) -> Option<u64> {
    crate::boot::virt_to_phys(bytes.as_ptr() as u64, bytes.len().max(1) as u64)
}

/// A heap copy of `bytes` (zeroed, `len` long, if `bytes` is empty).
fn heap_copy(bytes: &[u8], len: usize) -> Result<Vec<u8>, Errno> {
    let mut v = Vec::new();
    v.try_reserve_exact(len.max(1)).map_err(|_| Errno::ENOMEM)?;
    if bytes.is_empty() {
        v.resize(len.max(1), 0);
    } else {
        v.extend_from_slice(bytes);
    }
    Ok(v)
}

/// The errno a host response names (x86-64 Linux numbers); unknown ones are `EIO`.
pub(crate) fn errno_of(n: u32) -> Errno {
    use Errno::*;
    match n {
        1 => EPERM,
        2 => ENOENT,
        11 => EAGAIN,
        12 => ENOMEM,
        13 => EACCES,
        16 => EBUSY,
        17 => EEXIST,
        18 => EXDEV,
        20 => ENOTDIR,
        21 => EISDIR,
        22 => EINVAL,
        24 => EMFILE,
        27 => EFBIG,
        28 | 122 => ENOSPC,
        30 => EROFS,
        31 => EMLINK,
        36 => ENAMETOOLONG,
        39 => ENOTEMPTY,
        40 => ELOOP,
        95 => ENOTSUP,
        _ => EIO,
    }
}

impl VolumeHost for Host {
    fn call(
        &self,
        vol: u32,
        req: &VolumeReq<'_>,
        buf: VolumeBuf<'_>,
    ) -> Result<(u64, HostfsEntry), Errno> {
        // Paths, and data outside the direct map, in heap memory the host can reach.
        let path = heap_copy(req.path, 0)?;
        let path2 = heap_copy(req.path2, 0)?;
        let direct = match &buf {
            VolumeBuf::In(b) if !b.is_empty() => gpa_of(b),
            VolumeBuf::Out(b) if !b.is_empty() => gpa_of(b),
            _ => None,
        };
        let out_direct = match &buf {
            VolumeBuf::Out(_) => direct,
            _ => None,
        };
        let data = match &buf {
            VolumeBuf::In(b) if direct.is_none() && !b.is_empty() => heap_copy(b, 0)?,
            VolumeBuf::Out(b) if direct.is_none() && !b.is_empty() => heap_copy(&[], b.len())?,
            _ => Vec::new(),
        };
        let data_len = match &buf {
            VolumeBuf::None => 0,
            VolumeBuf::In(b) => b.len(),
            VolumeBuf::Out(b) => b.len(),
        };
        let data_gpa = match (direct, data_len) {
            (_, 0) => 0,
            (Some(g), _) => g,
            (None, _) => gpa_of(&data).ok_or(Errno::EIO)?,
        };
        let mut r = VolumeRequest::new_zeroed();
        r.op = req.op;
        r.volume = vol;
        r.path_gpa = gpa_of(&path).ok_or(Errno::EIO)?;
        r.path_len = req.path.len() as u64;
        r.path2_gpa = gpa_of(&path2).ok_or(Errno::EIO)?;
        r.path2_len = req.path2.len() as u64;
        r.buf_gpa = data_gpa;
        r.buf_len = data_len as u64;
        r.offset = req.offset;
        r.mode = req.mode;
        r.flags = req.flags;
        r.atime_ns = req.atime;
        r.mtime_ns = req.mtime;
        if let Some((uid, gid)) = req.owner {
            if req.op == op::CHOWN {
                (r.uid, r.gid) = (uid, gid);
            } else if allowed_flags(req.op) & flag::OWNER != 0 {
                // The creator's ids: the host gives them to the new object if it may.
                r.flags |= flag::OWNER;
                (r.uid, r.gid) = (uid, gid);
            }
        }
        let req_box = heap_copy(r.as_bytes(), 0)?;
        let resp_box = heap_copy(&[], core::mem::size_of::<VolumeResponse>())?;
        let rgpa = gpa_of(&req_box).ok_or(Errno::EIO)?;
        let sgpa = gpa_of(&resp_box).ok_or(Errno::EIO)?;
        crate::hcall::volume_op(rgpa, sgpa).map_err(|_| Errno::EIO)?;
        let resp = VolumeResponse::read_from_bytes(&resp_box).map_err(|_| Errno::EIO)?;
        if resp.errno != 0 {
            return Err(errno_of(resp.errno));
        }
        if let VolumeBuf::Out(b) = buf {
            if out_direct.is_none() && !b.is_empty() {
                let n = (resp.value as usize).min(b.len());
                b[..n].copy_from_slice(&data[..n]);
            }
            if resp.value as usize > b.len() && req.op != pvmux_hypercalls::volume::op::READLINK {
                return Err(Errno::EIO);
            }
        }
        Ok((resp.value, resp.stat))
    }

    fn chown(
        &self,
        vol: u32,
        path: &[u8],
        uid: u32,
        gid: u32,
    ) -> Result<Option<HostfsEntry>, Errno> {
        let req = VolumeReq {
            op: op::CHOWN,
            path,
            owner: Some((uid, gid)),
            ..VolumeReq::default()
        };
        match self.call(vol, &req, VolumeBuf::None) {
            Ok((_, st)) => Ok(Some(st)),
            // A host that may not change owners: the owner lives in guest memory.
            Err(Errno::ENOTSUP) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Exit code when a volume cannot be mounted (as for a working directory the guest lacks:
/// the program cannot run as asked).
pub(crate) const EXIT_VOLUME_UNUSABLE: u64 = 126;

/// Mounts every volume of the boot arguments (after [`super::init`]). A volume that cannot
/// be mounted (a component of its guest path is not a directory, the host directory is gone)
/// ends boot with a message on standard error and [`EXIT_VOLUME_UNUSABLE`]: the program must
/// not run without the directory it was promised.
pub(crate) fn mount_all() {
    for v in crate::boot::args().volumes() {
        let r = super::with(|fs| fs.mount_volume(Arc::new(Host), v.id, v.read_only, v.path));
        let path = alloc::string::String::from_utf8_lossy(v.path);
        match r {
            Ok(()) => println!(
                "pvmux-kernel: volume {} mounted at {path}{}",
                v.id,
                if v.read_only { " (read-only)" } else { "" }
            ),
            Err(e) => {
                let msg = alloc::format!(
                    "pvmux: volume \"{}\" cannot be mounted in the guest: {}\n",
                    path.escape_debug(),
                    e.message()
                );
                crate::hcall::console_write_stream(
                    pvmux_hypercalls::hypercall::stream::STDERR,
                    msg.as_bytes(),
                );
                println!("pvmux-kernel: volume {}: cannot mount at {path}: {e}", v.id);
                crate::hcall::shutdown(EXIT_VOLUME_UNUSABLE)
            }
        }
    }
}
