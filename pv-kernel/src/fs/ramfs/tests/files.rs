//! Regular files through handles: open flags, read/write/pread/pwrite, lseek, holes,
//! truncation, initramfs-borrowed bytes, unlinked open files, limits.

use super::super::contents::MAX_FILE_SIZE;
use super::super::handle::whence::*;
use super::super::handle::MAX_HANDLES;
use super::*;
use crate::fs::errno::Errno::*;

#[test]
fn create_excl_makes_a_regular_file_with_the_given_mode() {
    let (mut fs, d) = fs_with_dir();
    let h = fs.open(d, b"f", O_CREAT | O_EXCL | O_RDWR, 0o640).unwrap();
    let st = fs.fstat(h).unwrap();
    assert_eq!(st.mode, 0o100_640);
    assert_eq!((st.nlink, st.size, st.blocks), (1, 0, 0));
    assert_eq!((st.uid, st.gid, st.dev), (0, 0, 0));
    fs.close(h).unwrap();
    assert_eq!(
        fs.open(d, b"f", O_CREAT | O_EXCL | O_RDWR, 0o640),
        Err(EEXIST)
    );
    // O_CREAT without O_EXCL opens the existing file (its mode unchanged).
    let h = fs.open(d, b"f", O_CREAT | O_RDWR, 0o600).unwrap();
    assert_eq!(fs.fstat(h).unwrap().ino, st.ino);
    assert_eq!(fs.fstat(h).unwrap().mode, 0o100_640);
    fs.close(h).unwrap();
}

#[test]
fn create_keeps_only_permission_bits_of_the_mode() {
    let (mut fs, d) = fs_with_dir();
    let h = fs.open(d, b"f", O_CREAT | O_WRONLY, 0o170_777).unwrap();
    assert_eq!(fs.fstat(h).unwrap().mode, 0o100_777);
    fs.close(h).unwrap();
    let h = fs.open(d, b"s", O_CREAT | O_WRONLY, 0o7755).unwrap();
    assert_eq!(fs.fstat(h).unwrap().mode, 0o107_755);
    fs.close(h).unwrap();
}

#[test]
fn open_errors_follow_linux() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"x");
    fs.mkdir(d, b"sub", 0o755).unwrap();
    assert_eq!(fs.open(d, b"missing", O_RDONLY, 0), Err(ENOENT));
    assert_eq!(
        fs.open(d, b"missing/x", O_CREAT | O_RDWR, 0o644),
        Err(ENOENT)
    );
    // A trailing slash on a name to create: Linux refuses with EISDIR.
    assert_eq!(fs.open(d, b"newdir/", O_CREAT | O_RDWR, 0o644), Err(EISDIR));
    assert_eq!(fs.open(d, b"sub", O_WRONLY, 0), Err(EISDIR));
    assert_eq!(fs.open(d, b"sub", O_RDWR, 0), Err(EISDIR));
    assert_eq!(fs.open(d, b"sub", O_RDONLY | O_CREAT, 0), Err(EISDIR));
    assert_eq!(fs.open(d, b"sub", O_RDONLY | O_TRUNC, 0), Err(EISDIR));
    assert_eq!(fs.open(d, b"f", O_RDONLY | O_DIRECTORY, 0), Err(ENOTDIR));
    assert_eq!(fs.open(d, b"f/", O_RDONLY, 0), Err(ENOTDIR));
    assert_eq!(fs.open(d, b"f/x", O_CREAT | O_RDWR, 0o644), Err(ENOTDIR));
    // Access mode 3 (Linux's ioctl-only opens) asks for write access: EISDIR on a directory.
    assert_eq!(fs.open(d, b"sub", O_ACCMODE, 0), Err(EISDIR));
    let h = fs.open(d, b"sub", O_RDONLY | O_DIRECTORY, 0).unwrap();
    fs.close(h).unwrap();
    assert_eq!(fs.handle_count(), 0);
}

/// Access mode 3 (`O_ACCMODE`, Linux's ioctl-only opens): allowed on a file, opens it for
/// neither reading nor writing; with `O_TRUNC` it truncates (it asks for write access).
#[test]
fn access_mode_3_opens_for_neither_reading_nor_writing() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"0123456789");
    let h = fs.open(d, b"f", O_ACCMODE, 0).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(fs.read(h, &mut buf), Err(EBADF));
    assert_eq!(fs.pread(h, &mut buf, 0), Err(EBADF));
    assert_eq!(fs.write(h, b"x"), Err(EBADF));
    assert_eq!(fs.pwrite(h, b"x", 0), Err(EBADF));
    assert_eq!(fs.ftruncate(h, 0), Err(EINVAL));
    assert_eq!(fs.lseek(h, 3, SEEK_SET), Ok(3));
    assert_eq!(fs.fstat(h).unwrap().size, 10);
    fs.close(h).unwrap();
    let h = fs.open(d, b"f", O_ACCMODE | O_TRUNC, 0).unwrap();
    assert_eq!(fs.fstat(h).unwrap().size, 0);
    fs.close(h).unwrap();
    assert_eq!(fs.handle_count(), 0);
}

#[test]
fn access_modes_are_enforced_per_handle() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"x");
    fs.mkdir(d, b"sub", 0o755).unwrap();
    let mut buf = [0u8; 4];
    let r = fs.open(d, b"f", O_RDONLY, 0).unwrap();
    assert_eq!(fs.write(r, b"y"), Err(EBADF));
    assert_eq!(fs.pwrite(r, b"y", 0), Err(EBADF));
    assert_eq!(fs.ftruncate(r, 0), Err(EINVAL));
    let w = fs.open(d, b"f", O_WRONLY, 0).unwrap();
    assert_eq!(fs.read(w, &mut buf), Err(EBADF));
    assert_eq!(fs.pread(w, &mut buf, 0), Err(EBADF));
    let rw = fs.open(d, b"f", O_RDWR, 0).unwrap();
    assert_eq!(fs.pwrite(rw, b"z", 0), Ok(1));
    assert_eq!(fs.pread(rw, &mut buf, 0), Ok(1));
    assert_eq!(buf[0], b'z');
    let dh = fs.open(d, b"sub", O_RDONLY, 0).unwrap();
    assert_eq!(fs.read(dh, &mut buf), Err(EISDIR));
    assert_eq!(fs.pread(dh, &mut buf, 0), Err(EISDIR));
    assert_eq!(fs.ftruncate(dh, 0), Err(EINVAL));
    for h in [r, w, rw, dh] {
        fs.close(h).unwrap();
    }
    // A closed handle is EBADF everywhere, including a second close.
    assert_eq!(fs.read(r, &mut buf), Err(EBADF));
    assert_eq!(fs.write(w, b"x"), Err(EBADF));
    assert_eq!(fs.lseek(r, 0, SEEK_SET), Err(EBADF));
    assert_eq!(fs.fstat(r), Err(EBADF));
    assert_eq!(fs.ftruncate(w, 0), Err(EBADF));
    assert_eq!(fs.getdents64(dh, &mut [0; 64]), Err(EBADF));
    assert_eq!(fs.close(r), Err(EBADF));
}

#[test]
fn write_then_read_back_moves_the_offset() {
    let (mut fs, d) = fs_with_dir();
    let h = fs.open(d, b"f", O_CREAT | O_RDWR, 0o644).unwrap();
    assert_eq!(fs.write(h, b"hello, world"), Ok(12));
    assert_eq!(fs.lseek(h, 0, SEEK_CUR), Ok(12));
    let mut buf = [0u8; 32];
    assert_eq!(fs.read(h, &mut buf), Ok(0), "at EOF");
    assert_eq!(fs.lseek(h, 7, SEEK_SET), Ok(7));
    let n = fs.read(h, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"world");
    assert_eq!(fs.lseek(h, 0, SEEK_CUR), Ok(12));
    // A short buffer reads a prefix and advances by it.
    fs.lseek(h, 0, SEEK_SET).unwrap();
    assert_eq!(fs.read(h, &mut buf[..5]), Ok(5));
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(fs.lseek(h, 0, SEEK_CUR), Ok(5));
    // An empty read or write changes nothing.
    assert_eq!(fs.read(h, &mut []), Ok(0));
    assert_eq!(fs.write(h, b""), Ok(0));
    assert_eq!(fs.lseek(h, 0, SEEK_CUR), Ok(5));
    fs.close(h).unwrap();
    assert_eq!(fs.stat(d, b"f").unwrap().size, 12);
}

#[test]
fn pread_and_pwrite_leave_the_offset_alone() {
    let (mut fs, d) = fs_with_dir();
    let h = fs.open(d, b"f", O_CREAT | O_RDWR, 0o644).unwrap();
    fs.write(h, b"hello, world").unwrap();
    assert_eq!(fs.pwrite(h, b"J", 0), Ok(1));
    let mut buf = [0u8; 5];
    assert_eq!(fs.pread(h, &mut buf, 0), Ok(5));
    assert_eq!(&buf, b"Jello");
    assert_eq!(fs.pread(h, &mut buf, 12), Ok(0));
    assert_eq!(fs.pread(h, &mut buf, u64::MAX), Ok(0));
    assert_eq!(fs.lseek(h, 0, SEEK_CUR), Ok(12));
    // pwrite past the end grows the file with a hole.
    assert_eq!(fs.pwrite(h, b"!", 20), Ok(1));
    assert_eq!(fs.fstat(h).unwrap().size, 21);
    assert_eq!(fs.lseek(h, 0, SEEK_CUR), Ok(12));
    fs.close(h).unwrap();
}

#[test]
fn a_large_file_reads_back_exactly() {
    let (mut fs, d) = fs_with_dir();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    put(&mut fs, d, b"big", &big);
    assert_eq!(get(&mut fs, d, b"big").unwrap(), big);
    let st = fs.stat(d, b"big").unwrap();
    assert_eq!(st.size, 200_000);
    assert_eq!(st.blksize, 4096);
    assert_eq!(st.blocks, 200_000u64.div_ceil(4096) * 8);
}

#[test]
fn seeking_past_the_end_and_writing_leaves_a_hole_of_zeros() {
    let (mut fs, d) = fs_with_dir();
    let h = fs.open(d, b"f", O_CREAT | O_RDWR, 0o644).unwrap();
    fs.write(h, b"ab").unwrap();
    assert_eq!(fs.lseek(h, 8192, SEEK_SET), Ok(8192));
    assert_eq!(fs.stat(d, b"f").unwrap().size, 2, "seeking changes no size");
    let mut buf = [0xffu8; 4];
    assert_eq!(fs.read(h, &mut buf), Ok(0), "read past EOF");
    assert_eq!(fs.write(h, b"X"), Ok(1));
    assert_eq!(fs.fstat(h).unwrap().size, 8193);
    let mut mid = [0xffu8; 100];
    assert_eq!(fs.pread(h, &mut mid, 4000), Ok(100));
    assert!(mid.iter().all(|&b| b == 0), "the hole reads as zeros");
    assert_eq!(fs.lseek(h, -1, SEEK_END), Ok(8192));
    assert_eq!(fs.read(h, &mut buf), Ok(1));
    assert_eq!(buf[0], b'X');
    assert_eq!(fs.lseek(h, -8193, SEEK_CUR), Ok(0));
    fs.close(h).unwrap();
}

#[test]
fn lseek_errors() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"0123456789");
    let h = fs.open(d, b"f", O_RDONLY, 0).unwrap();
    assert_eq!(fs.lseek(h, 5, SEEK_SET), Ok(5));
    assert_eq!(fs.lseek(h, -1, SEEK_SET), Err(EINVAL));
    assert_eq!(fs.lseek(h, -6, SEEK_CUR), Err(EINVAL));
    assert_eq!(fs.lseek(h, -11, SEEK_END), Err(EINVAL));
    assert_eq!(fs.lseek(h, 0, 3), Err(EINVAL), "SEEK_DATA is not supported");
    assert_eq!(fs.lseek(h, 0, 7), Err(EINVAL));
    // A failed seek leaves the offset where it was.
    assert_eq!(fs.lseek(h, 0, SEEK_CUR), Ok(5));
    // Beyond i64::MAX is EINVAL, as on Linux (not EOVERFLOW), and leaves the offset too.
    assert_eq!(fs.lseek(h, i64::MAX, SEEK_CUR), Err(EINVAL));
    assert_eq!(fs.lseek(h, i64::MAX - 5, SEEK_END), Err(EINVAL));
    assert_eq!(fs.lseek(h, i64::MIN, SEEK_CUR), Err(EINVAL));
    assert_eq!(fs.lseek(h, 0, SEEK_CUR), Ok(5));
    assert_eq!(fs.lseek(h, i64::MAX, SEEK_SET), Ok(i64::MAX as u64));
    assert_eq!(fs.lseek(h, 0, SEEK_END), Ok(10));
    assert_eq!(fs.lseek(h, -10, SEEK_END), Ok(0));
    fs.close(h).unwrap();
}

#[test]
fn o_append_writes_at_the_end_whatever_the_offset() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"abc");
    let h = fs.open(d, b"f", O_WRONLY | O_APPEND, 0).unwrap();
    fs.lseek(h, 0, SEEK_SET).unwrap();
    assert_eq!(fs.write(h, b"def"), Ok(3));
    assert_eq!(fs.lseek(h, 0, SEEK_CUR), Ok(6));
    // Another writer grows the file; the next append still lands at the (new) end.
    let other = fs.open(d, b"f", O_WRONLY, 0).unwrap();
    fs.pwrite(other, b"XY", 6).unwrap();
    fs.write(h, b"!").unwrap();
    fs.close(other).unwrap();
    fs.close(h).unwrap();
    assert_eq!(get(&mut fs, d, b"f").unwrap(), b"abcdefXY!");
}

#[test]
fn o_trunc_empties_a_file_opened_for_writing() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"0123456789");
    let h = fs.open(d, b"f", O_WRONLY | O_TRUNC, 0).unwrap();
    assert_eq!(fs.fstat(h).unwrap().size, 0);
    fs.close(h).unwrap();
    assert_eq!(get(&mut fs, d, b"f").unwrap(), b"");
}

#[test]
fn truncate_shrinks_and_grows_with_zeros() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"0123456789");
    fs.truncate(d, b"f", 10_000).unwrap();
    let st = fs.stat(d, b"f").unwrap();
    assert_eq!(st.size, 10_000);
    assert_eq!(st.blocks, 8, "growing stores nothing");
    let data = get(&mut fs, d, b"f").unwrap();
    assert_eq!(&data[..10], b"0123456789");
    assert!(data[10..].iter().all(|&b| b == 0));
    fs.truncate(d, b"f", 3).unwrap();
    assert_eq!(get(&mut fs, d, b"f").unwrap(), b"012");
    // Shrink then grow again: the dropped bytes do not come back.
    fs.truncate(d, b"f", 6).unwrap();
    assert_eq!(get(&mut fs, d, b"f").unwrap(), b"012\0\0\0");
    fs.truncate(d, b"f", 0).unwrap();
    assert_eq!(fs.stat(d, b"f").unwrap().blocks, 0);
}

#[test]
fn ftruncate_needs_a_writable_regular_file() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"0123456789");
    let h = fs.open(d, b"f", O_RDWR, 0).unwrap();
    fs.ftruncate(h, 1).unwrap();
    assert_eq!(fs.fstat(h).unwrap().size, 1);
    assert_eq!(fs.ftruncate(h, -1), Err(EINVAL));
    assert_eq!(
        fs.ftruncate(h, MAX_FILE_SIZE as i64 + 1),
        Err(EFBIG),
        "over the size limit"
    );
    // The offset is not moved by truncation: a write past the new end leaves a hole.
    fs.lseek(h, 4, SEEK_SET).unwrap();
    fs.write(h, b"x").unwrap();
    fs.close(h).unwrap();
    assert_eq!(get(&mut fs, d, b"f").unwrap(), b"0\0\0\0x");
}

#[test]
fn truncate_errors() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"x");
    fs.mkdir(d, b"sub", 0o755).unwrap();
    assert_eq!(fs.truncate(d, b"sub", 0), Err(EISDIR));
    assert_eq!(fs.truncate(d, b"missing", 0), Err(ENOENT));
    assert_eq!(fs.truncate(d, b"f", -1), Err(EINVAL));
    assert_eq!(fs.truncate(d, b"f", 1 << 50), Err(EFBIG));
    assert_eq!(fs.truncate(d, b"f/", 0), Err(ENOTDIR));
    // truncate follows symbolic links.
    fs.symlink(d, b"f", b"link").unwrap();
    fs.truncate(d, b"link", 5).unwrap();
    assert_eq!(fs.stat(d, b"f").unwrap().size, 5);
}

#[test]
fn writes_past_the_size_limit_are_efbig() {
    let (mut fs, d) = fs_with_dir();
    let h = fs.open(d, b"f", O_CREAT | O_RDWR, 0o644).unwrap();
    assert_eq!(fs.pwrite(h, b"x", MAX_FILE_SIZE), Err(EFBIG));
    assert_eq!(fs.pwrite(h, b"xy", MAX_FILE_SIZE - 1), Err(EFBIG));
    assert_eq!(fs.pwrite(h, b"x", u64::MAX), Err(EFBIG));
    assert_eq!(
        fs.fstat(h).unwrap().size,
        0,
        "a failed write changes nothing"
    );
    fs.close(h).unwrap();
}

#[test]
fn initramfs_bytes_are_borrowed_until_the_first_write() {
    static ARCHIVE_BYTES: [u8; 6] = *b"static";
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"");
    let ino = fs.lookup(d, b"f", true).unwrap();
    fs.set_static_data(ino, &ARCHIVE_BYTES).unwrap();
    assert_eq!(fs.stat_ino(ino).unwrap().size, 6);
    assert_eq!(get(&mut fs, d, b"f").unwrap(), b"static");
    // Shrinking a borrowed file needs no copy; growing reads zeros past the borrowed bytes.
    fs.truncate(d, b"f", 4).unwrap();
    fs.truncate(d, b"f", 7).unwrap();
    assert_eq!(get(&mut fs, d, b"f").unwrap(), b"stat\0\0\0");
    // The first write copies; the borrowed bytes are never written.
    let h = fs.open(d, b"f", O_WRONLY, 0).unwrap();
    fs.pwrite(h, b"S", 0).unwrap();
    fs.close(h).unwrap();
    assert_eq!(get(&mut fs, d, b"f").unwrap(), b"Stat\0\0\0");
    assert_eq!(&ARCHIVE_BYTES, b"static");
    // Only regular files take static data.
    let sub = fs.mkdir(d, b"sub", 0o755).unwrap();
    assert_eq!(fs.set_static_data(sub, b"x"), Err(EISDIR));
}

#[test]
fn an_unlinked_open_file_lives_until_its_last_close() {
    let (mut fs, d) = fs_with_dir();
    let before = fs.inode_count();
    put(&mut fs, d, b"f", b"still here");
    let h = fs.open(d, b"f", O_RDWR, 0).unwrap();
    let h2 = fs.open(d, b"f", O_RDONLY, 0).unwrap();
    fs.unlink(d, b"f").unwrap();
    assert_eq!(fs.stat(d, b"f"), Err(ENOENT));
    assert_eq!(fs.unlink(d, b"f"), Err(ENOENT));
    let st = fs.fstat(h).unwrap();
    assert_eq!(st.nlink, 0);
    let mut buf = [0u8; 16];
    let n = fs.read(h, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"still here");
    fs.write(h, b"!").unwrap();
    assert_eq!(fs.inode_count(), before + 1);
    fs.close(h).unwrap();
    assert_eq!(
        fs.inode_count(),
        before + 1,
        "freed with a handle still open"
    );
    assert_eq!(fs.pread(h2, &mut buf, 0), Ok(11));
    fs.close(h2).unwrap();
    assert_eq!(fs.inode_count(), before, "not freed on the last close");
    // A new file of the same name is a new inode: numbers are never reused.
    put(&mut fs, d, b"f", b"");
    assert_ne!(fs.stat(d, b"f").unwrap().ino, st.ino);
    assert_eq!(fs.stat_ino(st.ino), Err(ENOENT));
}

#[test]
fn times_follow_reads_writes_and_metadata_changes() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"x");
    let s0 = fs.stat(d, b"f").unwrap();
    let d0 = fs.stat_ino(d).unwrap();
    let h = fs.open(d, b"f", O_RDWR, 0).unwrap();
    fs.write(h, b"yz").unwrap();
    let s1 = fs.fstat(h).unwrap();
    assert!(s1.mtime_ns > s0.mtime_ns && s1.ctime_ns > s0.ctime_ns);
    assert_eq!(s1.atime_ns, s0.atime_ns, "a write is no access");
    fs.pread(h, &mut [0; 4], 0).unwrap();
    let s2 = fs.fstat(h).unwrap();
    assert!(s2.atime_ns > s1.atime_ns);
    assert_eq!(s2.mtime_ns, s1.mtime_ns, "a read is no modification");
    fs.close(h).unwrap();
    assert_eq!(
        fs.stat_ino(d).unwrap().mtime_ns,
        d0.mtime_ns,
        "writing a file does not touch its directory"
    );
    put(&mut fs, d, b"g", b"");
    let d1 = fs.stat_ino(d).unwrap();
    assert!(d1.mtime_ns > d0.mtime_ns && d1.ctime_ns > d0.ctime_ns);
    fs.chmod(d, b"f", 0o4711).unwrap();
    let s3 = fs.stat(d, b"f").unwrap();
    assert_eq!(s3.mode, 0o104_711);
    assert!(s3.ctime_ns > s2.ctime_ns);
    assert_eq!(s3.mtime_ns, s2.mtime_ns, "chmod changes ctime only");
    let ino = s3.ino;
    fs.set_mtime(ino, 42).unwrap();
    let s4 = fs.stat_ino(ino).unwrap();
    assert_eq!((s4.atime_ns, s4.mtime_ns), (42, 42));
}

#[test]
fn a_fixed_clock_stamps_every_new_inode() {
    let mut fs = Fs::new(|| 1_234_000_000_567);
    let h = fs.open(ROOT_INO, b"f", O_CREAT | O_WRONLY, 0o644).unwrap();
    let st = fs.fstat(h).unwrap();
    assert_eq!(
        (st.atime_ns, st.mtime_ns, st.ctime_ns),
        (1_234_000_000_567, 1_234_000_000_567, 1_234_000_000_567)
    );
    let raw = st.to_linux();
    assert_eq!(raw[88..96], 1234u64.to_le_bytes(), "st_mtime seconds");
    assert_eq!(raw[96..104], 567u64.to_le_bytes(), "st_mtime nanoseconds");
    fs.close(h).unwrap();
}

#[test]
fn chmod_and_set_meta_keep_only_permission_bits() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"");
    fs.chmod(d, b"f", 0o177_777).unwrap();
    assert_eq!(fs.stat(d, b"f").unwrap().mode, 0o107_777);
    let ino = fs.lookup(d, b"f", true).unwrap();
    fs.set_meta(ino, 0o100_600, Some((1000, 100)), Some(7))
        .unwrap();
    let st = fs.stat_ino(ino).unwrap();
    assert_eq!(
        (st.mode, st.uid, st.gid, st.mtime_ns),
        (0o100_600, 1000, 100, 7)
    );
    assert_eq!(fs.chmod(d, b"missing", 0o644), Err(ENOENT));
    // chmod follows symbolic links.
    fs.symlink(d, b"f", b"link").unwrap();
    fs.chmod(d, b"link", 0o640).unwrap();
    assert_eq!(fs.stat(d, b"f").unwrap().mode, 0o100_640);
    assert_eq!(fs.lstat(d, b"link").unwrap().mode, 0o120_777);
}

#[test]
fn the_open_handle_table_is_bounded() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"");
    let mut open = Vec::new();
    for _ in 0..MAX_HANDLES {
        open.push(fs.open(d, b"f", O_RDONLY, 0).unwrap());
    }
    assert_eq!(fs.open(d, b"f", O_RDONLY, 0), Err(EMFILE));
    fs.close(open.pop().unwrap()).unwrap();
    let h = fs.open(d, b"f", O_RDONLY, 0).unwrap();
    assert!(!open.contains(&h), "a handle given out twice");
    fs.close(h).unwrap();
    for h in open {
        fs.close(h).unwrap();
    }
    assert_eq!(fs.handle_count(), 0);
}

#[test]
fn nothing_leaks_after_a_busy_session() {
    let (mut fs, d) = fs_with_dir();
    for i in 0..50u32 {
        let name = format!("f{i}");
        put(&mut fs, d, name.as_bytes(), &i.to_le_bytes());
        if i % 3 == 0 {
            fs.link(d, name.as_bytes(), format!("l{i}").as_bytes())
                .unwrap();
        }
        if i % 5 == 0 {
            fs.mkdir(d, format!("dir{i}").as_bytes(), 0o755).unwrap();
            fs.symlink(d, name.as_bytes(), format!("dir{i}/s").as_bytes())
                .unwrap();
        }
    }
    fs.rename(d, b"f1", b"dir0/moved").unwrap();
    fs.rename(d, b"dir5", b"dir0/dir5").unwrap();
    assert_eq!(counts_after_emptying(&mut fs), (1, 0));
}

#[test]
fn an_unnamed_file_lives_while_open_and_goes_with_its_last_handle() {
    let (mut fs, _d) = fs_with_dir();
    let before = fs.inode_count();
    let (h, ino) = fs.open_unnamed(0o777).unwrap();
    assert_eq!(fs.inode_count(), before + 1);
    assert_eq!(fs.pwrite(h, b"memfd", 0), Ok(5));
    let mut buf = [0u8; 8];
    assert_eq!(fs.pread(h, &mut buf, 0), Ok(5));
    assert_eq!(&buf[..5], b"memfd");
    let st = fs.fstat(h).unwrap();
    assert_eq!((st.ino, st.nlink, st.size), (ino, 0, 5));
    assert_eq!(st.mode, 0o100_777, "a regular file");
    fs.ftruncate(h, 8192).unwrap();
    assert_eq!(fs.fstat(h).unwrap().size, 8192);
    fs.close(h).unwrap();
    assert_eq!(fs.inode_count(), before, "freed with its last handle");
    assert!(fs.stat_ino(ino).is_err());
}

#[test]
fn every_change_of_contents_names_or_metadata_is_counted_and_reads_are_not() {
    let (mut fs, d) = fs_with_dir();
    let mut last = fs.changes();
    let mut changed = |fs: &Fs, what: &str, want: bool| {
        let now = fs.changes();
        assert_eq!(now != last, want, "{what}: {last} -> {now}");
        last = now;
    };
    put(&mut fs, d, b"f", b"bytes");
    changed(&fs, "a new file written", true);
    assert_eq!(get(&mut fs, d, b"f").unwrap(), b"bytes");
    let _ = fs.stat(d, b"f").unwrap();
    changed(&fs, "reads and stat", false);
    let ino = fs.lookup(d, b"f", false).unwrap();
    let perm = fs.stat_ino(ino).unwrap().mode & 0o7777;
    fs.set_meta(ino, perm, None, None).unwrap();
    changed(&fs, "the same mode set again", false);
    fs.set_meta(ino, 0o600, None, None).unwrap();
    changed(&fs, "a new mode", true);
    let h = fs.open(d, b"f", O_WRONLY | O_TRUNC, 0).unwrap();
    fs.close(h).unwrap();
    changed(&fs, "truncated", true);
    fs.rename(d, b"f", b"g").unwrap();
    changed(&fs, "renamed", true);
    fs.unlink(d, b"g").unwrap();
    changed(&fs, "removed", true);
    fs.mkdir(d, b"sub", 0o755).unwrap();
    changed(&fs, "a directory made", true);
}
