//! `getdents64` and the Linux encodings (`linux_dirent64`, `struct stat`, flag values),
//! checked against the host's own definitions in the `libc` crate.

use core::mem::{offset_of, size_of};

use super::super::encode::{dt, mode, put_dirent, DIRENT64_HEADER};
use super::super::handle::whence::*;
use super::super::path::NAME_MAX;
use super::super::FileType;
use super::*;
use crate::fs::errno::Errno::*;

/// One parsed `linux_dirent64` record.
#[derive(Debug)]
struct Dirent {
    ino: u64,
    off: u64,
    dtype: u8,
    name: Vec<u8>,
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Parses records, checking the layout of each against `libc::dirent64`.
fn parse(buf: &[u8]) -> Vec<Dirent> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rec = &buf[pos..];
        assert!(rec.len() > DIRENT64_HEADER, "record header cut at {pos}");
        let reclen = usize::from(u16::from_le_bytes(
            rec[offset_of!(libc::dirent64, d_reclen)..][..2]
                .try_into()
                .unwrap(),
        ));
        assert_eq!(reclen % 8, 0, "d_reclen {reclen} not 8-aligned");
        assert!(reclen <= rec.len(), "d_reclen {reclen} past the buffer");
        let name_area = &rec[offset_of!(libc::dirent64, d_name)..reclen];
        let nul = name_area.iter().position(|&b| b == 0).expect("NUL");
        assert_eq!(reclen, (DIRENT64_HEADER + nul + 1).next_multiple_of(8));
        assert!(name_area[nul..].iter().all(|&b| b == 0), "padding not zero");
        out.push(Dirent {
            ino: u64_at(rec, offset_of!(libc::dirent64, d_ino)),
            off: u64_at(rec, offset_of!(libc::dirent64, d_off)),
            dtype: rec[offset_of!(libc::dirent64, d_type)],
            name: name_area[..nul].to_vec(),
        });
        pos += reclen;
    }
    out
}

/// Opens `path` as a directory.
fn opendir(fs: &mut Fs, d: Ino, path: &[u8]) -> super::super::Handle {
    fs.open(d, path, O_RDONLY | O_DIRECTORY, 0).unwrap()
}

#[test]
fn the_encodings_match_the_hosts_linux_definitions() {
    assert_eq!(DIRENT64_HEADER, offset_of!(libc::dirent64, d_name));
    assert_eq!(
        (dt::DT_DIR, dt::DT_REG, dt::DT_LNK),
        (libc::DT_DIR, libc::DT_REG, libc::DT_LNK)
    );
    assert_eq!(
        (mode::S_IFMT, mode::S_IFREG, mode::S_IFDIR, mode::S_IFLNK),
        (libc::S_IFMT, libc::S_IFREG, libc::S_IFDIR, libc::S_IFLNK)
    );
    let o = |f: i32| f as u32;
    assert_eq!(
        [O_RDONLY, O_WRONLY, O_RDWR, O_ACCMODE, O_CREAT, O_EXCL],
        [
            o(libc::O_RDONLY),
            o(libc::O_WRONLY),
            o(libc::O_RDWR),
            o(libc::O_ACCMODE),
            o(libc::O_CREAT),
            o(libc::O_EXCL)
        ]
    );
    assert_eq!(
        [O_TRUNC, O_APPEND, O_DIRECTORY, O_NOFOLLOW],
        [
            o(libc::O_TRUNC),
            o(libc::O_APPEND),
            o(libc::O_DIRECTORY),
            o(libc::O_NOFOLLOW)
        ]
    );
    assert_eq!(
        [SEEK_SET, SEEK_CUR, SEEK_END],
        [o(libc::SEEK_SET), o(libc::SEEK_CUR), o(libc::SEEK_END)]
    );
}

#[test]
fn stat_is_encoded_as_the_x86_64_struct_stat() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", &[7u8; 5000]);
    let ino = fs.lookup(d, b"f", true).unwrap();
    fs.set_meta(
        ino,
        0o4750,
        Some((1000, 2000)),
        Some(1_600_000_000_123_456_789),
    )
    .unwrap();
    let st = fs.stat_ino(ino).unwrap();
    let raw = st.to_linux();
    assert_eq!(raw.len(), size_of::<libc::stat>());
    let u32_at = |off: usize| u32::from_le_bytes(raw[off..off + 4].try_into().unwrap());
    assert_eq!(u64_at(&raw, offset_of!(libc::stat, st_dev)), 0);
    assert_eq!(u64_at(&raw, offset_of!(libc::stat, st_ino)), ino);
    assert_eq!(u64_at(&raw, offset_of!(libc::stat, st_nlink)), 1);
    assert_eq!(u32_at(offset_of!(libc::stat, st_mode)), 0o104_750);
    assert_eq!(u32_at(offset_of!(libc::stat, st_uid)), 1000);
    assert_eq!(u32_at(offset_of!(libc::stat, st_gid)), 2000);
    assert_eq!(u64_at(&raw, offset_of!(libc::stat, st_rdev)), 0);
    assert_eq!(u64_at(&raw, offset_of!(libc::stat, st_size)), 5000);
    assert_eq!(u64_at(&raw, offset_of!(libc::stat, st_blksize)), 4096);
    assert_eq!(u64_at(&raw, offset_of!(libc::stat, st_blocks)), 16);
    assert_eq!(
        u64_at(&raw, offset_of!(libc::stat, st_mtime)),
        1_600_000_000
    );
    assert_eq!(
        u64_at(&raw, offset_of!(libc::stat, st_mtime_nsec)),
        123_456_789
    );
    assert_eq!(
        u64_at(&raw, offset_of!(libc::stat, st_atime)),
        1_600_000_000,
        "set_meta sets atime with mtime"
    );
    assert_eq!(
        u64_at(&raw, offset_of!(libc::stat, st_ctime)),
        st.ctime_ns / 1_000_000_000
    );
    assert_eq!(
        u64_at(&raw, offset_of!(libc::stat, st_ctime_nsec)),
        st.ctime_ns % 1_000_000_000
    );
    assert!(raw[offset_of!(libc::stat, st_ctime_nsec) + 8..]
        .iter()
        .all(|&b| b == 0));
}

#[test]
fn file_types_map_to_mode_bits_d_type_and_ls_letters() {
    for (ft, bits, d, c) in [
        (FileType::Regular, libc::S_IFREG, libc::DT_REG, '-'),
        (FileType::Directory, libc::S_IFDIR, libc::DT_DIR, 'd'),
        (FileType::Symlink, libc::S_IFLNK, libc::DT_LNK, 'l'),
    ] {
        assert_eq!((ft.mode_bits(), ft.dtype(), ft.ls_char()), (bits, d, c));
    }
}

#[test]
fn put_dirent_writes_aligned_records_and_refuses_to_overflow() {
    let mut buf = [0xaau8; 64];
    let mut pos = 0;
    assert!(put_dirent(&mut buf, &mut pos, 7, 3, dt::DT_REG, b"abcde"));
    assert_eq!(pos, 32, "19 + 5 + NUL = 25, rounded up to 32");
    assert!(put_dirent(&mut buf, &mut pos, 8, 4, dt::DT_DIR, b"x"));
    assert_eq!(pos, 56);
    assert!(
        !put_dirent(&mut buf, &mut pos, 9, 5, dt::DT_DIR, b"y"),
        "needs 24 bytes, 8 left"
    );
    assert_eq!(pos, 56);
    assert_eq!(&buf[56..], &[0xaa; 8], "nothing written past the records");
    let recs = parse(&buf[..56]);
    assert_eq!(recs.len(), 2);
    assert_eq!(
        (recs[0].ino, recs[0].off, recs[0].dtype, &recs[0].name[..]),
        (7, 3, dt::DT_REG, &b"abcde"[..])
    );
    assert_eq!(
        (recs[1].ino, recs[1].off, &recs[1].name[..]),
        (8, 4, &b"x"[..])
    );
    let mut exact = [0u8; 24];
    let mut pos = 0;
    assert!(put_dirent(&mut exact, &mut pos, 1, 1, dt::DT_DIR, b"."));
    assert_eq!(pos, 24, "a record that fits exactly");
}

#[test]
fn getdents64_lists_dot_dotdot_then_entries_with_types() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"file", b"x");
    fs.mkdir(d, b"dir", 0o755).unwrap();
    fs.symlink(d, b"file", b"link").unwrap();
    put(&mut fs, d, &[b'n'; NAME_MAX], b"");
    let h = opendir(&mut fs, d, b".");
    let mut buf = vec![0u8; 4096];
    let n = fs.getdents64(h, &mut buf).unwrap();
    let recs = parse(&buf[..n]);
    assert_eq!(fs.getdents64(h, &mut buf), Ok(0), "then the end");
    assert_eq!(fs.getdents64(h, &mut buf), Ok(0), "and it stays there");
    fs.close(h).unwrap();
    let names: Vec<&[u8]> = recs.iter().map(|r| r.name.as_slice()).collect();
    assert_eq!(names.len(), 6);
    assert_eq!((names[0], names[1]), (&b"."[..], &b".."[..]));
    assert_eq!((recs[0].ino, recs[1].ino), (d, ROOT_INO));
    assert_eq!((recs[0].dtype, recs[1].dtype), (dt::DT_DIR, dt::DT_DIR));
    for r in &recs[2..] {
        let st = fs.lstat(d, &r.name).unwrap();
        assert_eq!(r.ino, st.ino);
        assert_eq!(r.dtype, st.file_type().dtype());
    }
    for (name, dtype) in [
        (&b"file"[..], dt::DT_REG),
        (b"dir", dt::DT_DIR),
        (b"link", dt::DT_LNK),
    ] {
        assert!(
            recs.iter().any(|r| r.name == name && r.dtype == dtype),
            "{name:?}"
        );
    }
    assert!(
        recs.windows(2).all(|w| w[0].off < w[1].off),
        "d_off increases"
    );
    // The root's ".." is the root.
    let h = opendir(&mut fs, ROOT_INO, b"/");
    let n = fs.getdents64(h, &mut buf).unwrap();
    let recs = parse(&buf[..n]);
    assert_eq!(
        (recs[1].name.as_slice(), recs[1].ino),
        (&b".."[..], ROOT_INO)
    );
    fs.close(h).unwrap();
}

#[test]
fn getdents64_needs_room_for_one_record_and_a_directory() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"");
    let h = opendir(&mut fs, d, b".");
    let mut buf = [0u8; 64];
    assert_eq!(fs.getdents64(h, &mut buf[..8]), Err(EINVAL));
    assert_eq!(fs.getdents64(h, &mut buf[..23]), Err(EINVAL));
    assert_eq!(fs.getdents64(h, &mut []), Err(EINVAL));
    // Nothing was consumed by the failures.
    let n = fs.getdents64(h, &mut buf[..24]).unwrap();
    assert_eq!(parse(&buf[..n])[0].name, b".");
    fs.close(h).unwrap();
    let fh = fs.open(d, b"f", O_RDONLY, 0).unwrap();
    assert_eq!(fs.getdents64(fh, &mut buf), Err(ENOTDIR));
    fs.close(fh).unwrap();
}

#[test]
fn getdents64_resumes_from_any_d_off() {
    let (mut fs, d) = fs_with_dir();
    for i in 0..20 {
        put(&mut fs, d, format!("e{i:02}").as_bytes(), b"");
    }
    let h = opendir(&mut fs, d, b".");
    // One record at a time: 24 bytes fit one short name.
    let (mut seen, mut offs) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 24];
    loop {
        let n = fs.getdents64(h, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        let recs = parse(&buf[..n]);
        assert_eq!(recs.len(), 1);
        assert_eq!(fs.lseek(h, 0, SEEK_CUR), Ok(recs[0].off), "offset is d_off");
        offs.push(recs[0].off);
        seen.push(recs[0].name.clone());
    }
    assert_eq!(seen.len(), 22);
    let mut big = vec![0u8; 4096];
    for start in [0, 1, 2, 9, 21] {
        fs.lseek(h, offs[start] as i64, SEEK_SET).unwrap();
        let n = fs.getdents64(h, &mut big).unwrap();
        let rest: Vec<Vec<u8>> = parse(&big[..n]).into_iter().map(|r| r.name).collect();
        assert_eq!(rest[..], seen[start + 1..], "resume after record {start}");
    }
    fs.lseek(h, 0, SEEK_SET).unwrap();
    let n = fs.getdents64(h, &mut big).unwrap();
    assert_eq!(parse(&big[..n]).len(), 22, "rewind");
    // A directory has no end to seek from.
    assert_eq!(fs.lseek(h, 0, SEEK_END), Err(EINVAL));
    fs.close(h).unwrap();
}

#[test]
fn changes_during_a_listing_neither_skip_nor_repeat_other_entries() {
    let (mut fs, d) = fs_with_dir();
    for i in 0..20 {
        put(&mut fs, d, format!("e{i:02}").as_bytes(), b"");
    }
    let h = opendir(&mut fs, d, b".");
    let mut big = vec![0u8; 200];
    let n = fs.getdents64(h, &mut big).unwrap();
    let mut all: Vec<Vec<u8>> = parse(&big[..n]).into_iter().map(|r| r.name).collect();
    assert_eq!(all.len(), 8, "200 bytes hold 8 records");
    // Remove some listed entries and some not yet listed; add new ones.
    for name in ["e02", "e03", "e10", "e11"] {
        fs.unlink(d, name.as_bytes()).unwrap();
    }
    put(&mut fs, d, b"new1", b"");
    put(&mut fs, d, b"a-new", b"");
    loop {
        let n = fs.getdents64(h, &mut big).unwrap();
        if n == 0 {
            break;
        }
        all.extend(parse(&big[..n]).into_iter().map(|r| r.name));
    }
    fs.close(h).unwrap();
    let mut want: Vec<Vec<u8>> = [".", ".."].iter().map(|s| s.as_bytes().to_vec()).collect();
    want.extend((0..20).map(|i| format!("e{i:02}").into_bytes()));
    want.retain(|n| n != b"e10" && n != b"e11");
    // New entries come after every older one (cookie order), whatever their names.
    want.extend([b"new1".to_vec(), b"a-new".to_vec()]);
    assert_eq!(
        all.iter()
            .map(|n| String::from_utf8_lossy(n))
            .collect::<Vec<_>>(),
        want.iter()
            .map(|n| String::from_utf8_lossy(n))
            .collect::<Vec<_>>()
    );
}
