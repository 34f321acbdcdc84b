//! `hostile=volume`: malformed `VolumeOp` requests (bad addresses, unknown ops and volumes,
//! bad flags, oversized paths and buffers, random garbage) get the documented hypercall
//! errors, and well-formed requests aimed outside volume 0 (`..`, absolute and relative
//! symbolic links, the `canary=` path, `/proc` magic links) never reach anything outside it:
//! the host answers with an errno or acts inside the volume. The test checks on the host that
//! the canary was never created and the volume's neighbours are untouched.

use alloc::vec::Vec;

use pvmux_hypercalls::hostfs::PATH_MAX;
use pvmux_hypercalls::volume::{
    flag, op, VolumeRequest, VolumeResponse, IO_MAX, NO_ID, REQUEST_LEN,
};
use pvmux_hypercalls::{HcError, Hypercall};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::{hcall, println};

const VOLUME_OP: u64 = Hypercall::VolumeOp as u64;

/// A heap buffer and its guest-physical address.
struct GBuf {
    bytes: Vec<u8>,
}

impl GBuf {
    fn new(bytes: &[u8]) -> Self {
        let mut v = Vec::with_capacity(bytes.len().max(1));
        v.extend_from_slice(bytes);
        if v.is_empty() {
            v.push(0);
        }
        Self { bytes: v }
    }

    fn zeroed(len: usize) -> Self {
        Self {
            bytes: alloc::vec![0; len.max(1)],
        }
    }

    fn gpa(&self) -> u64 {
        crate::boot::virt_to_phys(self.bytes.as_ptr() as u64, self.bytes.len() as u64).unwrap_or(0)
    }
}

/// Makes the call with request `r`; the return value and the response.
fn call(r: &VolumeRequest) -> (i64, VolumeResponse) {
    let req = GBuf::new(r.as_bytes());
    let resp = GBuf::zeroed(core::mem::size_of::<VolumeResponse>());
    let ret = hcall::raw(VOLUME_OP, [req.gpa(), resp.gpa(), 0, 0, 0]);
    let v = VolumeResponse::read_from_bytes(&resp.bytes).unwrap_or_default();
    (ret, v)
}

/// A request for `o` on `path` (kept alive by the returned buffer).
fn req(o: u32, path: &GBuf, len: usize) -> VolumeRequest {
    let mut r = VolumeRequest::new_zeroed();
    r.op = o;
    r.path_gpa = path.gpa();
    r.path_len = len as u64;
    r
}

pub(crate) fn run() -> bool {
    let mem = crate::boot::info().mem_size;
    let mut ok = true;
    let mut check = |what: &str, got: i64, want: i64| {
        let good = got == want;
        println!(
            "hostile: volume {what} -> {got} ({}: expected {want})",
            if good { "ok" } else { "MISMATCH" }
        );
        ok &= good;
    };
    let bad = HcError::BadAddress.to_ret();
    let inval = HcError::InvalidArgument.to_ret();
    let big = HcError::TooLarge.to_ret();
    let p = GBuf::new(b"/");
    // Request and response addresses.
    let r = GBuf::new(req(op::LOOKUP, &p, 1).as_bytes());
    let resp = GBuf::zeroed(64);
    for (what, a0, a1) in [
        ("request at mem_size", mem, resp.gpa()),
        (
            "request straddling the end",
            mem - (REQUEST_LEN as u64 / 2),
            resp.gpa(),
        ),
        ("request at u64::MAX", u64::MAX, resp.gpa()),
        ("response at mem_size", r.gpa(), mem),
        ("response at u64::MAX-8", r.gpa(), u64::MAX - 8),
    ] {
        check(what, hcall::raw(VOLUME_OP, [a0, a1, 0, 0, 0]), bad);
    }
    // Malformed fields.
    let mut cases: Vec<(&str, VolumeRequest, i64)> = Vec::new();
    let base = req(op::LOOKUP, &p, 1);
    let with = |f: &dyn Fn(&mut VolumeRequest)| {
        let mut r = base;
        f(&mut r);
        r
    };
    cases.push(("op 0", with(&|r| r.op = 0), inval));
    cases.push(("op LAST+1", with(&|r| r.op = op::LAST + 1), inval));
    cases.push(("op u32::MAX", with(&|r| r.op = u32::MAX), inval));
    cases.push(("volume 63", with(&|r| r.volume = 63), inval));
    cases.push(("volume u32::MAX", with(&|r| r.volume = u32::MAX), inval));
    cases.push(("unknown flag", with(&|r| r.flags = 1 << 7), inval));
    cases.push(("EXCL on LOOKUP", with(&|r| r.flags = flag::EXCL), inval));
    cases.push(("path2 on LOOKUP", with(&|r| r.path2_len = 1), inval));
    cases.push(("buffer on LOOKUP", with(&|r| r.buf_len = 1), inval));
    cases.push(("owner on LOOKUP", with(&|r| r.uid = 1), inval));
    cases.push((
        "OWNER on UNLINK",
        with(&|r| (r.op, r.flags) = (op::UNLINK, flag::OWNER)),
        inval,
    ));
    cases.push((
        "CHOWN to (uid_t)-1",
        with(&|r| (r.op, r.gid) = (op::CHOWN, NO_ID)),
        inval,
    ));
    cases.push((
        "path_len PATH_MAX+1",
        with(&|r| r.path_len = PATH_MAX + 1),
        big,
    ));
    cases.push(("path_len u64::MAX", with(&|r| r.path_len = u64::MAX), big));
    cases.push(("path at mem_size", with(&|r| r.path_gpa = mem), bad));
    cases.push((
        "path wraps",
        with(&|r| (r.path_gpa, r.path_len) = (u64::MAX - 1, 4)),
        bad,
    ));
    cases.push((
        "READ len IO_MAX+1",
        with(&|r| (r.op, r.buf_len) = (op::READ, IO_MAX + 1)),
        big,
    ));
    cases.push((
        "READ buffer at mem_size",
        with(&|r| (r.op, r.buf_gpa, r.buf_len) = (op::READ, mem, 16)),
        bad,
    ));
    cases.push((
        "WRITE buffer straddling the end",
        with(&|r| (r.op, r.buf_gpa, r.buf_len) = (op::WRITE, mem - 8, 16)),
        bad,
    ));
    cases.push((
        "RENAME path2 at u64::MAX",
        with(&|r| (r.op, r.path2_gpa, r.path2_len) = (op::RENAME, u64::MAX, 2)),
        bad,
    ));
    for (what, r, want) in &cases {
        check(what, call(r).0, *want);
    }
    // Well-formed requests aimed outside the volume: an errno, never the outside.
    let canary = super::canary_path().as_bytes();
    let mut up = Vec::new();
    for _ in 0..16 {
        up.extend_from_slice(b"../");
    }
    up.extend_from_slice(canary);
    let targets: [&[u8]; 6] = [
        &up,
        canary,
        b"esc/pwned",
        b"hostlink",
        b"/proc/self/root/tmp/pwned",
        b"../outside/pwned",
    ];
    for t in targets {
        let path = GBuf::new(t);
        for o in [
            op::CREATE,
            op::WRITE,
            op::TRUNCATE,
            op::CHMOD,
            op::MKDIR,
            op::CHOWN,
        ] {
            let mut r = req(o, &path, t.len());
            if o == op::CHOWN {
                (r.uid, r.gid) = (4242, 4242);
            }
            let data = GBuf::new(b"pwned\n");
            if o == op::WRITE {
                r.buf_gpa = data.gpa();
                r.buf_len = 6;
            }
            r.mode = 0o6777;
            let (ret, v) = call(&r);
            println!(
                "hostile: volume op {o} on {:?} -> {ret}, errno {}",
                core::str::from_utf8(t).unwrap_or("?"),
                v.errno
            );
            if ret != 0 {
                check("well-formed request returns 0", ret, 0);
            }
            // Whatever succeeded happened inside the volume: the set-id bits never stick.
            if ret == 0 && v.errno == 0 && v.stat.perm & 0o6000 != 0 {
                check("set-id bits cleared", i64::from(v.stat.perm), 0);
            }
        }
    }
    // A link to the canary made by the guest is never followed by the host.
    let link = GBuf::new(b"guestlink");
    let target = GBuf::new(canary);
    let mut r = req(op::SYMLINK, &link, 9);
    r.path2_gpa = target.gpa();
    r.path2_len = canary.len() as u64;
    let (ret, _) = call(&r);
    check("SYMLINK to the canary", ret, 0);
    for o in [op::CREATE, op::WRITE, op::TRUNCATE, op::READ] {
        let mut r = req(o, &link, 9);
        let data = GBuf::new(b"pwned\n");
        if matches!(o, op::WRITE | op::READ) {
            r.buf_gpa = data.gpa();
            r.buf_len = 6;
        }
        let (ret, v) = call(&r);
        check("through a guest link: returns 0", ret, 0);
        check("through a guest link: an errno", i64::from(v.errno != 0), 1);
    }
    // Random garbage (seeded): never a hang or an undocumented error.
    let mut x = super::seed().unwrap_or(0x5eed_0001) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let scratch = GBuf::zeroed(4096);
    for _ in 0..2000 {
        let mut raw = [0u8; REQUEST_LEN];
        for chunk in raw.chunks_mut(8) {
            let v = next();
            chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
        }
        let mut r = VolumeRequest::read_from_bytes(&raw).unwrap_or_default();
        // Keep some requests plausible so they get past the first checks.
        if next().is_multiple_of(2) {
            r.op = (next() % u64::from(op::LAST + 1)) as u32;
            r.volume = 0;
            r.flags = 0;
            r.path_gpa = scratch.gpa() + next() % 4096;
            r.path_len = next() % 64;
            r.path2_len = 0;
            r.buf_gpa = scratch.gpa();
            r.buf_len = next() % 4096;
        }
        let (ret, _) = call(&r);
        if !(ret == 0 || ret == inval || ret == bad || ret == big) {
            check("garbage request", ret, inval);
        }
    }
    ok
}
