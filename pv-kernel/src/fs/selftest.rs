//! `fs-selftest`: checks of every filesystem operation on the live filesystem, one result
//! line per check (`PASS name` / `FAIL name: why`), then `fs-selftest: X/Y checks passed`;
//! the exit code is the number of failures (the style of [`crate::selftest`]).
//!
//! Each check works in its own directory under `/.fs-selftest` (so initramfs contents are
//! left alone) using paths relative to it; the last check removes the tree and verifies that
//! no inode or handle leaked.
//!
//! The semantics of every operation, edge cases and errnos included, are the host unit tests
//! of [`super::ramfs`] (`cargo test -p pvmux-kernel`). This is the in-guest smoke pass over
//! what only the guest has: the live filesystem behind its lock, next to the initramfs and
//! the host share, the kernel heap, the real wall clock, and no leaks afterwards. (Checks
//! that duplicated host tests — create_excl, lseek_hole, truncate, append, access_modes,
//! rename_dirs, hard_links, getdents64_resume, path_edges — were removed.)

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::errno::Errno::*;
use super::ramfs::{
    dt, oflag::*, whence::*, FileType, Fs, Ino, DIRENT64_HEADER, NAME_MAX, ROOT_INO, SYMLOOP_MAX,
};
use crate::println;

/// Result of one check.
type Outcome = Result<(), String>;

/// A named check; it gets the filesystem and its own empty directory.
type Check = (&'static str, fn(&mut Fs, Ino) -> Outcome);

/// Scratch directory of the checks.
const SCRATCH: &[u8] = b"/.fs-selftest";

/// Fails the check with the line number unless `cond`.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)*) => {
        if !$cond {
            return Err(format!("line {}: {}", line!(), format_args!($($msg)*)));
        }
    };
}

/// Unwraps a `Result`, failing the check on `Err`.
macro_rules! ok {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => {
                return Err(format!(
                    "line {}: `{}` failed: {e}",
                    line!(),
                    stringify!($e)
                ))
            }
        }
    };
}

/// Fails the check unless `$e` is `Err($want)`.
macro_rules! err {
    ($e:expr, $want:expr) => {
        match $e {
            Err(e) if e == $want => {}
            other => {
                return Err(format!(
                    "line {}: `{}` returned {:?}, expected {}",
                    line!(),
                    stringify!($e),
                    other.map(|_| ()),
                    $want.name()
                ))
            }
        }
    };
}

/// Runs every check, prints the summary and shuts down with the number of failures.
pub(crate) fn run() -> ! {
    let checks: [Check; 7] = [
        ("write_read", write_read),
        ("unlink_open_file", unlink_open_file),
        ("mkdir_rmdir", mkdir_rmdir),
        ("rename", rename),
        ("symlinks", symlinks),
        ("getdents64_layout", getdents64_layout),
        ("stat_times", stat_times),
    ];
    let (inodes0, handles0) = super::with(|fs| (fs.inode_count(), fs.handle_count()));
    let (mut passed, mut failed) = (0u64, 0u64);
    let mut report = |name: &str, r: Outcome| match r {
        Ok(()) => {
            passed += 1;
            println!("PASS {name}");
        }
        Err(why) => {
            failed += 1;
            println!("FAIL {name}: {why}");
        }
    };
    let setup = super::with(|fs| {
        let _ = remove_tree(fs, ROOT_INO, SCRATCH);
        fs.mkdir(ROOT_INO, SCRATCH, 0o755)
    });
    match setup {
        Ok(_) => {
            for (name, check) in checks {
                let r = super::with(|fs| {
                    let dir = ok!(fs.mkdir(ROOT_INO, &path(&[SCRATCH, name.as_bytes()]), 0o755));
                    check(fs, dir)
                });
                report(name, r);
            }
            let cleanup = super::with(|fs| {
                ok!(remove_tree(fs, ROOT_INO, SCRATCH));
                let (inodes, handles) = (fs.inode_count(), fs.handle_count());
                ensure!(
                    inodes == inodes0 && handles == handles0,
                    "{inodes} inodes and {handles} handles left, expected {inodes0} and {handles0}"
                );
                Ok(())
            });
            report("cleanup_no_leaks", cleanup);
        }
        Err(e) => report("setup", Err(format!("mkdir {}: {e}", "/.fs-selftest"))),
    }
    println!("fs-selftest: {}/{} checks passed", passed, passed + failed);
    crate::hcall::shutdown(failed)
}

/// Joins path pieces with `/`.
fn path(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&b'/')
}

/// `rm -r`: removes `p` and everything below it (symlinks are not followed).
fn remove_tree(fs: &mut Fs, cwd: Ino, p: &[u8]) -> Result<(), super::Errno> {
    let st = fs.lstat(cwd, p)?;
    if st.file_type() != FileType::Directory {
        return fs.unlink(cwd, p);
    }
    for e in fs.list(st.ino)? {
        remove_tree(fs, st.ino, &e.name)?;
    }
    fs.rmdir(cwd, p)
}

/// Writes a whole new file.
fn put(fs: &mut Fs, d: Ino, name: &[u8], bytes: &[u8]) -> Result<(), super::Errno> {
    let h = fs.open(d, name, O_CREAT | O_WRONLY | O_TRUNC, 0o644)?;
    let r = fs.write(h, bytes);
    fs.close(h)?;
    r.map(|_| ())
}

/// Reads a whole file.
fn get(fs: &mut Fs, d: Ino, name: &[u8]) -> Result<Vec<u8>, super::Errno> {
    let h = fs.open(d, name, O_RDONLY, 0)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    let r = loop {
        match fs.read(h, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    fs.close(h)?;
    r.map(|()| out)
}

fn write_read(fs: &mut Fs, d: Ino) -> Outcome {
    let h = ok!(fs.open(d, b"f", O_CREAT | O_RDWR, 0o644));
    ensure!(ok!(fs.write(h, b"hello, world")) == 12, "short write");
    ensure!(ok!(fs.lseek(h, 0, SEEK_CUR)) == 12, "offset after write");
    let mut buf = [0u8; 32];
    ensure!(ok!(fs.read(h, &mut buf)) == 0, "read at EOF returned data");
    ensure!(ok!(fs.lseek(h, 7, SEEK_SET)) == 7, "lseek");
    let n = ok!(fs.read(h, &mut buf));
    ensure!(&buf[..n] == b"world", "read {:?}", &buf[..n]);
    ok!(fs.pwrite(h, b"J", 0));
    let n = ok!(fs.pread(h, &mut buf[..5], 0));
    ensure!(&buf[..n] == b"Jello", "pread {:?}", &buf[..n]);
    ensure!(
        ok!(fs.lseek(h, 0, SEEK_CUR)) == 12,
        "pread/pwrite moved the offset"
    );
    ok!(fs.close(h));
    ensure!(ok!(fs.stat(d, b"f")).size == 12, "size");
    let big: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
    ok!(put(fs, d, b"big", &big));
    ensure!(
        ok!(get(fs, d, b"big")) == big,
        "20000-byte file read back wrong"
    );
    Ok(())
}

fn unlink_open_file(fs: &mut Fs, d: Ino) -> Outcome {
    let before = fs.inode_count();
    ok!(put(fs, d, b"f", b"still here"));
    let h = ok!(fs.open(d, b"f", O_RDWR, 0));
    ok!(fs.unlink(d, b"f"));
    err!(fs.stat(d, b"f"), ENOENT);
    err!(fs.unlink(d, b"f"), ENOENT);
    let st = ok!(fs.fstat(h));
    ensure!(st.nlink == 0, "nlink {} after unlink", st.nlink);
    let mut buf = [0u8; 16];
    let n = ok!(fs.read(h, &mut buf));
    ensure!(&buf[..n] == b"still here", "data of unlinked open file");
    ok!(fs.write(h, b"!"));
    ensure!(fs.inode_count() == before + 1, "inode freed while open");
    ok!(fs.close(h));
    ensure!(fs.inode_count() == before, "inode not freed on last close");
    // A new file of the same name is a new inode.
    ok!(put(fs, d, b"f", b""));
    ensure!(ok!(fs.stat(d, b"f")).ino != st.ino, "inode number reused");
    Ok(())
}

fn mkdir_rmdir(fs: &mut Fs, d: Ino) -> Outcome {
    let n0 = ok!(fs.stat_ino(d)).nlink;
    ensure!(n0 == 2, "empty directory nlink {n0}");
    let sub = ok!(fs.mkdir(d, b"sub", 0o750));
    let st = ok!(fs.stat(d, b"sub"));
    ensure!(st.ino == sub && st.mode == 0o040_750, "mode {:o}", st.mode);
    ensure!(st.nlink == 2, "new directory nlink {}", st.nlink);
    ensure!(ok!(fs.stat_ino(d)).nlink == 3, "parent nlink after mkdir");
    err!(fs.mkdir(d, b"sub", 0o755), EEXIST);
    err!(fs.mkdir(d, b"sub/", 0o755), EEXIST);
    err!(fs.mkdir(d, b".", 0o755), EEXIST);
    err!(fs.mkdir(ROOT_INO, b"/", 0o755), EEXIST);
    err!(fs.mkdir(d, b"nope/x", 0o755), ENOENT);
    ok!(put(fs, d, b"file", b""));
    err!(fs.mkdir(d, b"file/x", 0o755), ENOTDIR);
    ok!(fs.mkdir(d, b"sub/inner/", 0o755));
    ensure!(
        ok!(fs.stat_ino(sub)).nlink == 3,
        "nlink with a subdirectory"
    );
    err!(fs.rmdir(d, b"sub"), ENOTEMPTY);
    err!(fs.rmdir(d, b"file"), ENOTDIR);
    err!(fs.unlink(d, b"sub"), EISDIR);
    err!(fs.rmdir(d, b"sub/inner/."), EINVAL);
    err!(fs.rmdir(d, b"sub/inner/.."), ENOTEMPTY);
    err!(fs.rmdir(ROOT_INO, b"/"), EBUSY);
    err!(fs.rmdir(d, b"missing"), ENOENT);
    ok!(fs.rmdir(d, b"sub/inner/"));
    ok!(fs.rmdir(d, b"sub"));
    ensure!(ok!(fs.stat_ino(d)).nlink == 2, "parent nlink after rmdir");
    err!(fs.stat(d, b"sub"), ENOENT);
    // An open handle on a removed directory lists nothing; creating in it fails.
    ok!(fs.mkdir(d, b"gone", 0o755));
    let gone = ok!(fs.lookup(d, b"gone", true));
    let h = ok!(fs.open(d, b"gone", O_RDONLY | O_DIRECTORY, 0));
    ok!(fs.rmdir(d, b"gone"));
    ensure!(
        ok!(fs.getdents64(h, &mut [0u8; 256])) == 0,
        "removed dir lists entries"
    );
    err!(fs.mkdir(gone, b"x", 0o755), ENOENT);
    ok!(fs.close(h));
    Ok(())
}

fn rename(fs: &mut Fs, d: Ino) -> Outcome {
    ok!(put(fs, d, b"a", b"AAA"));
    ok!(put(fs, d, b"b", b"BB"));
    let a = ok!(fs.stat(d, b"a")).ino;
    let hb = ok!(fs.open(d, b"b", O_RDONLY, 0));
    ok!(fs.rename(d, b"a", b"b"));
    err!(fs.stat(d, b"a"), ENOENT);
    let st = ok!(fs.stat(d, b"b"));
    ensure!(st.ino == a && st.nlink == 1, "b is not the old a");
    ensure!(
        ok!(get(fs, d, b"b")) == b"AAA",
        "contents after rename over"
    );
    ensure!(ok!(fs.fstat(hb)).nlink == 0, "replaced file still linked");
    ok!(fs.close(hb));
    ok!(fs.rename(d, b"b", b"b"));
    ensure!(ok!(fs.stat(d, b"b")).ino == a, "rename to itself");
    err!(fs.rename(d, b"missing", b"x"), ENOENT);
    ok!(fs.mkdir(d, b"dir", 0o755));
    err!(fs.rename(d, b"b", b"dir"), EISDIR);
    err!(fs.rename(d, b"dir", b"b"), ENOTDIR);
    err!(fs.rename(d, b"b/", b"c"), ENOTDIR);
    err!(fs.rename(d, b".", b"c"), EBUSY);
    err!(fs.rename(d, b"b", b"nope/c"), ENOENT);
    // Hard links to the same inode: rename is a no-op.
    ok!(fs.link(d, b"b", b"b2"));
    ok!(fs.rename(d, b"b", b"b2"));
    ensure!(
        fs.stat(d, b"b").is_ok(),
        "rename between links removed the source"
    );
    // Into another directory.
    ok!(fs.rename(d, b"b2", b"dir/moved"));
    ensure!(ok!(get(fs, d, b"dir/moved")) == b"AAA", "moved file");
    ensure!(
        ok!(fs.stat(d, b"b")).nlink == 2,
        "nlink after moving a link"
    );
    Ok(())
}

fn symlinks(fs: &mut Fs, d: Ino) -> Outcome {
    ok!(put(fs, d, b"target", b"T"));
    ok!(fs.symlink(d, b"target", b"link"));
    ensure!(ok!(fs.readlink(d, b"link")) == b"target", "readlink");
    let l = ok!(fs.lstat(d, b"link"));
    ensure!(
        l.mode == 0o120_777 && l.size == 6,
        "lstat mode {:o} size {}",
        l.mode,
        l.size
    );
    ensure!(
        ok!(fs.stat(d, b"link")).ino == ok!(fs.stat(d, b"target")).ino,
        "stat follows"
    );
    ensure!(ok!(get(fs, d, b"link")) == b"T", "open follows");
    err!(fs.readlink(d, b"target"), EINVAL);
    err!(fs.symlink(d, b"x", b"link"), EEXIST);
    err!(fs.symlink(d, b"", b"empty"), ENOENT);
    // Loops.
    ok!(fs.symlink(d, b"loop2", b"loop1"));
    ok!(fs.symlink(d, b"loop1", b"loop2"));
    err!(fs.stat(d, b"loop1"), ELOOP);
    err!(fs.open(d, b"loop1/x", O_RDONLY, 0), ELOOP);
    ok!(fs.symlink(d, b"self", b"self"));
    err!(fs.stat(d, b"self"), ELOOP);
    ensure!(fs.lstat(d, b"self").is_ok(), "lstat of a loop");
    // A chain of exactly SYMLOOP_MAX links resolves; one more is ELOOP.
    ok!(fs.symlink(d, b"target", b"c0"));
    for i in 1..=SYMLOOP_MAX {
        ok!(fs.symlink(
            d,
            format!("c{}", i - 1).as_bytes(),
            format!("c{i}").as_bytes()
        ));
    }
    ok!(fs.stat(d, format!("c{}", SYMLOOP_MAX - 1).as_bytes()));
    err!(fs.stat(d, format!("c{SYMLOOP_MAX}").as_bytes()), ELOOP);
    // Dangling, directory, absolute and intermediate links.
    ok!(fs.symlink(d, b"nowhere", b"dangling"));
    err!(fs.stat(d, b"dangling"), ENOENT);
    ok!(fs.mkdir(d, b"dir", 0o755));
    ok!(put(fs, d, b"dir/inner", b"I"));
    ok!(fs.symlink(d, b"dir", b"dlink"));
    ensure!(
        ok!(get(fs, d, b"dlink/inner")) == b"I",
        "through a directory link"
    );
    ensure!(
        ok!(fs.stat(d, b"dlink/")).file_type() == FileType::Directory,
        "trailing slash"
    );
    err!(fs.stat(d, b"link/"), ENOTDIR);
    err!(fs.rmdir(d, b"dlink"), ENOTDIR);
    let abs = path(&[SCRATCH, b"symlinks/dir"]);
    ok!(fs.symlink(d, &abs, b"alink"));
    ensure!(
        ok!(get(fs, d, b"alink/../dir/inner")) == b"I",
        "absolute link and '..'"
    );
    ok!(fs.symlink(d, b"../target", b"dir/rel"));
    ensure!(
        ok!(get(fs, d, b"dir/rel")) == b"T",
        "relative to the link's directory"
    );
    // O_CREAT through a dangling link creates the target; O_NOFOLLOW and O_EXCL do not follow.
    err!(
        fs.open(d, b"dangling", O_CREAT | O_EXCL | O_WRONLY, 0o644),
        EEXIST
    );
    err!(fs.open(d, b"link", O_RDONLY | O_NOFOLLOW, 0), ELOOP);
    let h = ok!(fs.open(d, b"dangling", O_CREAT | O_WRONLY, 0o644));
    ok!(fs.close(h));
    ensure!(
        fs.stat(d, b"nowhere").is_ok(),
        "O_CREAT through a dangling link"
    );
    // unlink removes the link, not the target.
    ok!(fs.unlink(d, b"link"));
    ensure!(fs.stat(d, b"target").is_ok(), "unlink followed the link");
    Ok(())
}

/// One parsed `linux_dirent64` record.
struct Dirent {
    ino: u64,
    off: u64,
    dtype: u8,
    name: Vec<u8>,
}

/// Parses `linux_dirent64` records, checking their layout.
fn parse_dirents(buf: &[u8]) -> Result<Vec<Dirent>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rec = &buf[pos..];
        ensure!(rec.len() > DIRENT64_HEADER, "record header cut at {pos}");
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&rec[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let reclen = usize::from(u16::from_le_bytes([rec[16], rec[17]]));
        ensure!(reclen % 8 == 0, "d_reclen {reclen} not 8-aligned");
        ensure!(reclen <= rec.len(), "d_reclen {reclen} past the buffer");
        let name_area = &rec[DIRENT64_HEADER..reclen];
        let Some(nul) = name_area.iter().position(|&b| b == 0) else {
            return Err(format!("line {}: name not NUL-terminated", line!()));
        };
        ensure!(
            reclen == (DIRENT64_HEADER + nul + 1 + 7) & !7,
            "d_reclen {reclen} for a {nul}-byte name"
        );
        out.push(Dirent {
            ino: u64_at(0),
            off: u64_at(8),
            dtype: rec[18],
            name: name_area[..nul].to_vec(),
        });
        pos += reclen;
    }
    Ok(out)
}

fn getdents64_layout(fs: &mut Fs, d: Ino) -> Outcome {
    let parent = ok!(fs.lookup(d, b"..", true));
    ok!(put(fs, d, b"file", b"x"));
    ok!(fs.mkdir(d, b"dir", 0o755));
    ok!(fs.symlink(d, b"file", b"link"));
    let long = [b'n'; NAME_MAX];
    ok!(put(fs, d, &long, b""));
    let h = ok!(fs.open(d, b".", O_RDONLY | O_DIRECTORY, 0));
    let mut buf = vec![0u8; 4096];
    let n = ok!(fs.getdents64(h, &mut buf));
    let recs = parse_dirents(&buf[..n])?;
    ensure!(
        ok!(fs.getdents64(h, &mut buf)) == 0,
        "second call not at the end"
    );
    ok!(fs.close(h));
    let names: Vec<&[u8]> = recs.iter().map(|r| r.name.as_slice()).collect();
    ensure!(names.len() == 6, "{} records", names.len());
    ensure!(
        names[0] == b"." && names[1] == b"..",
        "first records {:?} {:?}",
        names[0],
        names[1]
    );
    ensure!(
        recs[0].ino == d && recs[1].ino == parent,
        "d_ino of . and .."
    );
    for r in &recs {
        if r.name == b"." || r.name == b".." {
            ensure!(r.dtype == dt::DT_DIR, "d_type of dot entries");
            continue;
        }
        let st = ok!(fs.lstat(d, &r.name));
        ensure!(st.ino == r.ino, "d_ino mismatch");
        ensure!(
            r.dtype == st.file_type().dtype(),
            "d_type {} for {:?}",
            r.dtype,
            st.file_type()
        );
    }
    let want = [dt::DT_REG, dt::DT_DIR, dt::DT_LNK];
    for (name, dtype) in [
        (&b"file"[..], want[0]),
        (b"dir", want[1]),
        (b"link", want[2]),
    ] {
        ensure!(
            recs.iter().any(|r| r.name == name && r.dtype == dtype),
            "missing {name:?}"
        );
    }
    ensure!(
        recs.windows(2).all(|w| w[0].off < w[1].off),
        "d_off not increasing"
    );
    // A buffer too small for one record.
    let h = ok!(fs.open(d, b".", O_RDONLY | O_DIRECTORY, 0));
    err!(fs.getdents64(h, &mut buf[..8]), EINVAL);
    ok!(fs.close(h));
    Ok(())
}

fn stat_times(fs: &mut Fs, d: Ino) -> Outcome {
    ok!(put(fs, d, b"f", b"x"));
    let s0 = ok!(fs.stat(d, b"f"));
    // 2020-01-01 in ns: the wall clock must be plausible.
    ensure!(
        s0.mtime_ns > 1_577_836_800_000_000_000,
        "mtime {} is not a wall-clock time",
        s0.mtime_ns
    );
    let dir0 = ok!(fs.stat_ino(d)).mtime_ns;
    let h = ok!(fs.open(d, b"f", O_WRONLY, 0));
    ok!(fs.write(h, b"yz"));
    ok!(fs.close(h));
    let s1 = ok!(fs.stat(d, b"f"));
    ensure!(
        s1.mtime_ns >= s0.mtime_ns && s1.ctime_ns >= s0.ctime_ns,
        "times went back"
    );
    ok!(put(fs, d, b"g", b""));
    ensure!(ok!(fs.stat_ino(d)).mtime_ns >= dir0, "directory mtime");
    ensure!(
        s1.blksize == 4096 && s1.blocks == 8,
        "blksize {} blocks {}",
        s1.blksize,
        s1.blocks
    );
    let raw = s1.to_linux();
    ensure!(raw[8..16] == s1.ino.to_le_bytes(), "st_ino offset");
    ensure!(raw[24..28] == s1.mode.to_le_bytes(), "st_mode offset");
    ensure!(raw[48..56] == 2u64.to_le_bytes(), "st_size offset");
    ensure!(
        raw[88..96] == (s1.mtime_ns / 1_000_000_000).to_le_bytes(),
        "st_mtime offset"
    );
    ok!(fs.chmod(d, b"f", 0o4711));
    ensure!(ok!(fs.stat(d, b"f")).mode == 0o104_711, "chmod");
    Ok(())
}
