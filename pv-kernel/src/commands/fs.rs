//! Filesystem commands: `ls=PATH` and `cat=PATH`.
//!
//! On success they print their output and the command line goes on (so `ls=/ cat=/a` works
//! in one boot; the kernel shuts down with 0 at the end as usual). On error they print
//! `pvmux-kernel: <cmd> <path>: <ERRNO> (<message>)` and shut down at once with
//! [`EXIT_FS_ERROR_BASE`] + errno (e.g. 66 for `ENOENT`, 84 for `ENOTDIR`, 85 for `EISDIR`).

use alloc::format;
use alloc::string::String;
use alloc::vec;

use crate::fs::ramfs::{oflag, FileType, ROOT_INO};
use crate::fs::{self, Errno};
use crate::{console, hcall, println};

/// Exit code base for a failed filesystem command: the code is this plus the errno.
pub(crate) const EXIT_FS_ERROR_BASE: u64 = 64;

/// Bytes `cat` reads (and writes to the console) at a time.
const CAT_CHUNK: usize = 64 << 10;

/// Reports `e` for `cmd path` and shuts down with `EXIT_FS_ERROR_BASE + errno`.
fn fail(cmd: &str, path: &str, e: Errno) -> ! {
    let code = EXIT_FS_ERROR_BASE + e.code() as u64;
    println!("pvmux-kernel: {cmd} {path}: {e}");
    println!("pvmux-kernel: exiting with {code}");
    hcall::shutdown(code)
}

/// A file name for display: printable ASCII as is, `\` as `\\`, anything else as `\xNN`.
pub(crate) fn escape(name: &[u8]) -> String {
    let mut s = String::with_capacity(name.len());
    for &b in name {
        match b {
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// One `ls` line: type character, permissions in octal, size, name (and a link's target).
fn ls_line(fs: &mut fs::Fs, dir: fs::ramfs::Ino, name: &[u8]) -> Result<String, Errno> {
    let st = fs.lstat(dir, name)?;
    let mut line = format!(
        "{} {:04o} {} {}",
        st.file_type().ls_char(),
        st.mode & 0o7777,
        st.size,
        escape(name)
    );
    if st.file_type() == FileType::Symlink {
        line.push_str(" -> ");
        line.push_str(&escape(&fs.readlink(dir, name)?));
    }
    Ok(line)
}

/// `ls=PATH`: a header line `pvmux-kernel: ls PATH: N entries`, then one line per entry
/// sorted by name (see [`ls_line`]); for a non-directory, its own line.
pub(crate) fn ls(path: &str) {
    let lines = fs::with(|fs| {
        let ino = fs.lookup(ROOT_INO, path.as_bytes(), true)?;
        if fs.stat_ino(ino)?.file_type() != FileType::Directory {
            return Ok(vec![ls_line(fs, ROOT_INO, path.as_bytes())?]);
        }
        let mut lines = vec![];
        for e in fs.list(ino)? {
            lines.push(ls_line(fs, ino, &e.name)?);
        }
        Ok(lines)
    });
    match lines {
        Ok(lines) => {
            // One piece, so that a message from another vCPU cannot land inside the listing.
            let mut out = alloc::format!("pvmux-kernel: ls {path}: {} entries\n", lines.len());
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
            console::write_pieces(&[out.as_bytes()]);
        }
        Err(e) => fail("ls", path, e),
    }
}

/// `cat=PATH`: a header line `pvmux-kernel: cat PATH: N bytes`, then exactly the file's
/// bytes, then (if they did not end in a newline) a newline.
pub(crate) fn cat(path: &str) {
    let opened = fs::with(|fs| {
        let h = fs.open(ROOT_INO, path.as_bytes(), oflag::O_RDONLY, 0)?;
        match fs.fstat(h) {
            Ok(st) if st.file_type() == FileType::Directory => {
                let _ = fs.close(h);
                Err(Errno::EISDIR)
            }
            Ok(st) => Ok((h, st.size)),
            Err(e) => {
                let _ = fs.close(h);
                Err(e)
            }
        }
    });
    let (h, size) = match opened {
        Ok(v) => v,
        Err(e) => fail("cat", path, e),
    };
    // Read everything first, then write header and bytes in one piece, so that a message
    // from another vCPU cannot land between them.
    let mut data = alloc::vec::Vec::new();
    let mut buf = vec![0u8; CAT_CHUNK];
    loop {
        match fs::with(|fs| fs.read(h, &mut buf)) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) => {
                let _ = fs::with(|fs| fs.close(h));
                fail("cat", path, e)
            }
        }
    }
    let _ = fs::with(|fs| fs.close(h));
    let header = alloc::format!("pvmux-kernel: cat {path}: {size} bytes\n");
    let tail: &[u8] = if data.last().is_some_and(|&b| b != b'\n') {
        b"\n"
    } else {
        b""
    };
    console::write_pieces(&[header.as_bytes(), &data, tail]);
}
