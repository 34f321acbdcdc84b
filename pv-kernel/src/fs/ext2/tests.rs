//! ext2 on images made by the host's `mkfs.ext2`, checked after by `e2fsck -fn` and read back
//! with `debugfs` (e2fsprogs). Without e2fsprogs (`mkfs.ext2` not on PATH) these tests fail:
//! the kernel's filesystem must be checked against the real tools.

use std::path::PathBuf;
use std::process::Command;
use std::vec::Vec;

use pvmux_hypercalls::hostfs::{kind, parse_record};
use pvmux_hypercalls::volume::{flag, op, UTIME_OMIT};

use super::cache::BlockDev;
use super::*;

/// A disk in memory.
struct Mem {
    bytes: Vec<u8>,
    fail_reads: bool,
}

impl BlockDev for Mem {
    fn sectors(&self) -> u64 {
        self.bytes.len() as u64 / 512
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if self.fail_reads {
            return Err(EIO);
        }
        let o = (sector * 512) as usize;
        buf.copy_from_slice(self.bytes.get(o..o + buf.len()).ok_or(EIO)?);
        Ok(())
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), Errno> {
        let o = (sector * 512) as usize;
        self.bytes
            .get_mut(o..o + buf.len())
            .ok_or(EIO)?
            .copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Errno> {
        Ok(())
    }
}

fn now() -> u32 {
    1_700_000_000
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pvmux-ext2-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&d);
    d
}

/// A fresh image: `mkfs.ext2 -q -F ARGS FILE SIZE_K`.
fn mkfs(name: &str, size_k: u32, args: &[&str]) -> Vec<u8> {
    let f = tmp(name);
    std::fs::File::create(&f)
        .unwrap()
        .set_len(u64::from(size_k) << 10)
        .unwrap();
    let st = Command::new("mkfs.ext2")
        .args(["-q", "-F"])
        .args(args)
        .arg(&f)
        .arg(format!("{size_k}"))
        .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
        .status()
        .expect("mkfs.ext2 (e2fsprogs) runs");
    assert!(st.success());
    let b = std::fs::read(&f).unwrap();
    let _ = std::fs::remove_file(&f);
    b
}

/// `e2fsck -fn` on `bytes`: its exit status and output.
fn fsck(name: &str, bytes: &[u8]) -> (i32, String) {
    let f = tmp(name);
    std::fs::write(&f, bytes).unwrap();
    let out = Command::new("e2fsck")
        .args(["-fn"])
        .arg(&f)
        .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
        .output()
        .expect("e2fsck runs");
    let _ = std::fs::remove_file(&f);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `debugfs -R CMD` on `bytes`: its output.
fn debugfs(name: &str, bytes: &[u8], cmd: &str) -> Vec<u8> {
    let f = tmp(name);
    std::fs::write(&f, bytes).unwrap();
    let out = Command::new("debugfs")
        .args(["-R", cmd])
        .arg(&f)
        .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
        .output()
        .expect("debugfs runs");
    let _ = std::fs::remove_file(&f);
    out.stdout
}

fn mount(bytes: Vec<u8>) -> Ext2<Mem> {
    Ext2::mount(
        Mem {
            bytes,
            fail_reads: false,
        },
        false,
        now,
    )
    .unwrap()
}

fn req<'a>(op: u32, path: &'a [u8]) -> VolumeReq<'a> {
    VolumeReq {
        op,
        path,
        ..VolumeReq::default()
    }
}

fn call(fs: &mut Ext2<Mem>, r: VolumeReq<'_>) -> Result<HostfsEntry, Errno> {
    fs.call(&r, VolumeBuf::None).map(|x| x.1)
}

fn write(fs: &mut Ext2<Mem>, path: &[u8], off: u64, data: &[u8]) {
    let r = VolumeReq {
        offset: off,
        ..req(op::WRITE, path)
    };
    assert_eq!(
        fs.call(&r, VolumeBuf::In(data)).unwrap().0,
        data.len() as u64
    );
}

fn read(fs: &mut Ext2<Mem>, path: &[u8], off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    let r = VolumeReq {
        offset: off,
        ..req(op::READ, path)
    };
    let n = fs.call(&r, VolumeBuf::Out(&mut b)).unwrap().0 as usize;
    b.truncate(n);
    b
}

fn list(fs: &mut Ext2<Mem>, path: &[u8]) -> Vec<(Vec<u8>, u8)> {
    let mut out = Vec::new();
    let mut cookie = 0;
    loop {
        let mut b = vec![0u8; 4096];
        let r = VolumeReq {
            offset: cookie,
            ..req(op::LIST, path)
        };
        let n = fs.call(&r, VolumeBuf::Out(&mut b)).unwrap().0 as usize;
        if n == 0 {
            break;
        }
        let mut pos = 0;
        while pos < n {
            let (rec, len) = parse_record(&b[pos..n]).unwrap();
            out.push((rec.name.to_vec(), rec.entry.kind));
            pos += len;
            cookie += 1;
        }
    }
    out.sort();
    out
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2654435761).rotate_left(seed as u32) as u8 ^ seed)
        .collect()
}

fn assert_clean(name: &str, bytes: &[u8]) {
    let (code, out) = fsck(name, bytes);
    assert_eq!(code, 0, "e2fsck -fn found problems:\n{out}");
}

#[test]
fn files_dirs_and_links_survive_e2fsck_and_debugfs_reads_them() {
    for (bs, extra) in [("1024", "256"), ("4096", "128")] {
        let img = mkfs("a", 8192, &["-b", bs, "-I", extra]);
        let mut fs = mount(img);
        // Files of every mapping depth (direct, indirect, double indirect with 1 KiB blocks).
        call(
            &mut fs,
            VolumeReq {
                mode: 0o644,
                ..req(op::CREATE, b"/small")
            },
        )
        .unwrap();
        write(&mut fs, b"/small", 0, b"hello, ext2\n");
        let big = pattern(300 << 10, 7);
        call(
            &mut fs,
            VolumeReq {
                mode: 0o600,
                ..req(op::CREATE, b"big")
            },
        )
        .unwrap();
        write(&mut fs, b"big", 0, &big[..1000]);
        write(&mut fs, b"big", 1000, &big[1000..]);
        assert_eq!(read(&mut fs, b"big", 0, big.len() + 10), big);
        assert_eq!(read(&mut fs, b"big", 5000, 3), &big[5000..5003]);
        // Directories, nested; a sparse file.
        call(
            &mut fs,
            VolumeReq {
                mode: 0o755,
                ..req(op::MKDIR, b"d")
            },
        )
        .unwrap();
        call(
            &mut fs,
            VolumeReq {
                mode: 0o755,
                ..req(op::MKDIR, b"d/e")
            },
        )
        .unwrap();
        call(
            &mut fs,
            VolumeReq {
                mode: 0o644,
                ..req(op::CREATE, b"d/e/sparse")
            },
        )
        .unwrap();
        write(&mut fs, b"d/e/sparse", 3 << 20, b"end");
        assert_eq!(read(&mut fs, b"d/e/sparse", (3 << 20) - 2, 10), b"\0\0end");
        // Many names: the directory grows past one block.
        for k in 0..200 {
            let p = format!("d/f{k:03}-a-rather-long-name-to-fill-blocks");
            call(
                &mut fs,
                VolumeReq {
                    mode: 0o644,
                    ..req(op::CREATE, p.as_bytes())
                },
            )
            .unwrap();
        }
        for k in (0..200).step_by(2) {
            let p = format!("d/f{k:03}-a-rather-long-name-to-fill-blocks");
            call(&mut fs, req(op::UNLINK, p.as_bytes())).unwrap();
        }
        assert_eq!(list(&mut fs, b"d").len(), 101);
        // Links, fast and slow.
        let long = [b'x'; 100];
        call(
            &mut fs,
            VolumeReq {
                path2: b"small",
                ..req(op::SYMLINK, b"ln")
            },
        )
        .unwrap();
        call(
            &mut fs,
            VolumeReq {
                path2: &long,
                ..req(op::SYMLINK, b"ln2")
            },
        )
        .unwrap();
        let mut t = [0u8; 200];
        let n = fs
            .call(&req(op::READLINK, b"ln2"), VolumeBuf::Out(&mut t))
            .unwrap()
            .0;
        assert_eq!(&t[..n as usize], &long[..]);
        // Rename across directories, replacing; directory rename.
        call(
            &mut fs,
            VolumeReq {
                path2: b"d/e/moved",
                ..req(op::RENAME, b"small")
            },
        )
        .unwrap();
        call(
            &mut fs,
            VolumeReq {
                path2: b"d/e2",
                ..req(op::RENAME, b"d/e")
            },
        )
        .unwrap();
        call(
            &mut fs,
            VolumeReq {
                mode: 0o755,
                ..req(op::MKDIR, b"top")
            },
        )
        .unwrap();
        call(
            &mut fs,
            VolumeReq {
                path2: b"top/e3",
                ..req(op::RENAME, b"d/e2")
            },
        )
        .unwrap();
        assert_eq!(read(&mut fs, b"top/e3/moved", 0, 100), b"hello, ext2\n");
        // Truncate down and up.
        let t = call(
            &mut fs,
            VolumeReq {
                offset: 70_000,
                ..req(op::TRUNCATE, b"big")
            },
        )
        .unwrap();
        assert_eq!(t.size, 70_000);
        call(
            &mut fs,
            VolumeReq {
                offset: 80_000,
                ..req(op::TRUNCATE, b"big")
            },
        )
        .unwrap();
        let back = read(&mut fs, b"big", 0, 100_000);
        assert_eq!(&back[..70_000], &big[..70_000]);
        assert!(back[70_000..].iter().all(|&b| b == 0));
        let c = call(
            &mut fs,
            VolumeReq {
                mode: 0o4751,
                ..req(op::CHMOD, b"big")
            },
        )
        .unwrap();
        assert_eq!(c.perm, 0o751, "set-id bits are cleared");
        let u = VolumeReq {
            atime: UTIME_OMIT,
            mtime: 1_600_000_000_000_000_000,
            ..req(op::UTIMES, b"big")
        };
        assert_eq!(
            call(&mut fs, u).unwrap().mtime_ns,
            1_600_000_000_000_000_000
        );
        // rmdir of an empty and a non-empty directory.
        assert_eq!(call(&mut fs, req(op::RMDIR, b"top")), Err(ENOTEMPTY));
        call(
            &mut fs,
            VolumeReq {
                mode: 0o755,
                ..req(op::MKDIR, b"gone")
            },
        )
        .unwrap();
        call(&mut fs, req(op::RMDIR, b"gone")).unwrap();
        let names = list(&mut fs, b"/");
        let want: Vec<(Vec<u8>, u8)> = [
            ("big", kind::REG),
            ("d", kind::DIR),
            ("ln", kind::SYMLINK),
            ("ln2", kind::SYMLINK),
            ("lost+found", kind::DIR),
            ("top", kind::DIR),
        ]
        .iter()
        .map(|(n, k)| (n.as_bytes().to_vec(), *k))
        .collect();
        assert_eq!(names, want);
        fs.unmount().unwrap();
        let img = fs.into_dev().bytes;
        assert_clean("a", &img);
        // The real tools read what was written.
        assert_eq!(debugfs("a", &img, "cat /top/e3/moved"), b"hello, ext2\n");
        let cat = debugfs("a", &img, "cat /d/e/sparse");
        assert!(cat.is_empty(), "renamed away");
        let big_back = debugfs("a", &img, "cat /big");
        assert_eq!(&big_back[..70_000], &big[..70_000]);
        assert_eq!(big_back.len(), 80_000);
        // Remount: everything is there; delete it all, and fsck again.
        let mut fs = mount(img);
        assert_eq!(read(&mut fs, b"top/e3/sparse", 3 << 20, 3), b"end");
        for p in ["big", "ln", "ln2", "top/e3/moved", "top/e3/sparse"] {
            call(&mut fs, req(op::UNLINK, p.as_bytes())).unwrap();
        }
        call(&mut fs, req(op::RMDIR, b"top/e3")).unwrap();
        call(&mut fs, req(op::RMDIR, b"top")).unwrap();
        fs.unmount().unwrap();
        assert_clean("a2", &fs.into_dev().bytes);
    }
}

#[test]
fn a_full_disk_is_enospc_and_stays_consistent() {
    let img = mkfs("full", 1024, &["-b", "1024"]);
    let mut fs = mount(img);
    call(
        &mut fs,
        VolumeReq {
            mode: 0o644,
            ..req(op::CREATE, b"f")
        },
    )
    .unwrap();
    let chunk = vec![0x5a; 64 << 10];
    let mut off = 0u64;
    let err = loop {
        let r = VolumeReq {
            offset: off,
            ..req(op::WRITE, b"f")
        };
        match fs.call(&r, VolumeBuf::In(&chunk)) {
            Ok((n, _)) if n > 0 => off += n,
            Ok(_) => break ENOSPC,
            Err(e) => break e,
        }
        assert!(off < 2 << 20);
    };
    assert_eq!(err, ENOSPC);
    assert!(off > 700 << 10, "wrote {off}");
    fs.unmount().unwrap();
    let img = fs.into_dev().bytes;
    assert_clean("full", &img);
    let mut fs = mount(img);
    call(&mut fs, req(op::UNLINK, b"f")).unwrap();
    fs.unmount().unwrap();
    assert_clean("full2", &fs.into_dev().bytes);
}

#[test]
fn read_only_mounts_refuse_changes_and_write_nothing() {
    let img = mkfs("ro", 2048, &[]);
    let before = img.clone();
    let mut fs = Ext2::mount(
        Mem {
            bytes: img,
            fail_reads: false,
        },
        true,
        now,
    )
    .unwrap();
    assert!(fs.read_only());
    assert_eq!(
        call(
            &mut fs,
            VolumeReq {
                mode: 0o644,
                ..req(op::CREATE, b"x")
            }
        ),
        Err(EROFS)
    );
    assert_eq!(call(&mut fs, req(op::MKDIR, b"y")), Err(EROFS));
    assert_eq!(list(&mut fs, b"/").len(), 1);
    fs.unmount().unwrap();
    assert_eq!(fs.into_dev().bytes, before);
}

#[test]
fn errors_name_the_problem() {
    let img = mkfs("err", 2048, &[]);
    let mut fs = mount(img);
    assert_eq!(call(&mut fs, req(op::LOOKUP, b"nope")), Err(ENOENT));
    call(
        &mut fs,
        VolumeReq {
            mode: 0o644,
            ..req(op::CREATE, b"f")
        },
    )
    .unwrap();
    assert_eq!(call(&mut fs, req(op::LOOKUP, b"f/x")), Err(ENOTDIR));
    assert_eq!(
        call(
            &mut fs,
            VolumeReq {
                mode: 0o644,
                flags: flag::EXCL,
                ..req(op::CREATE, b"f")
            }
        ),
        Err(EEXIST)
    );
    assert_eq!(call(&mut fs, req(op::RMDIR, b"f")), Err(ENOTDIR));
    assert_eq!(call(&mut fs, req(op::UNLINK, b"lost+found")), Err(EISDIR));
    call(
        &mut fs,
        VolumeReq {
            mode: 0o755,
            ..req(op::MKDIR, b"a")
        },
    )
    .unwrap();
    assert_eq!(
        call(
            &mut fs,
            VolumeReq {
                path2: b"a/b",
                ..req(op::RENAME, b"a")
            }
        ),
        Err(EINVAL)
    );
    assert_eq!(
        call(
            &mut fs,
            VolumeReq {
                path2: b"f",
                flags: flag::NOREPLACE,
                ..req(op::RENAME, b"a")
            }
        ),
        Err(EEXIST)
    );
    assert_eq!(
        call(
            &mut fs,
            VolumeReq {
                path2: b"f",
                ..req(op::RENAME, b"a")
            }
        ),
        Err(ENOTDIR)
    );
    let long = [b'n'; 256];
    assert_eq!(
        call(
            &mut fs,
            VolumeReq {
                mode: 0o644,
                ..req(op::CREATE, &long)
            }
        ),
        Err(ENAMETOOLONG)
    );
    fs.unmount().unwrap();
    assert_clean("err", &fs.into_dev().bytes);
}

#[test]
fn corrupted_images_are_euclean_or_einval_never_a_panic() {
    let img = mkfs("bad", 2048, &["-b", "1024"]);
    // Not ext2.
    let mut zero = img.clone();
    zero[1024 + 56] = 0;
    assert!(matches!(
        Ext2::mount(
            Mem {
                bytes: zero,
                fail_reads: false
            },
            false,
            now
        ),
        Err(EINVAL)
    ));
    // An impossible geometry.
    let mut geo = img.clone();
    geo[1024 + 32..1024 + 36].copy_from_slice(&0u32.to_le_bytes());
    assert!(matches!(
        Ext2::mount(
            Mem {
                bytes: geo,
                fail_reads: false
            },
            false,
            now
        ),
        Err(EUCLEAN)
    ));
    // Garbage over the root directory's block: its records are refused.
    let mut fs = mount(img.clone());
    call(
        &mut fs,
        VolumeReq {
            mode: 0o755,
            ..req(op::MKDIR, b"d")
        },
    )
    .unwrap();
    fs.unmount().unwrap();
    let mut img2 = fs.into_dev().bytes;
    let root_blk = {
        let mut fs = mount(img2.clone());
        let i = fs.inode(ROOT).unwrap();
        i.block(0) as usize
    };
    for b in &mut img2[root_blk * 1024..root_blk * 1024 + 1024] {
        *b = 0xff;
    }
    let mut fs = mount(img2.clone());
    assert_eq!(call(&mut fs, req(op::LOOKUP, b"d")), Err(EUCLEAN));
    let mut out = vec![0u8; 4096];
    assert_eq!(
        fs.call(&req(op::LIST, b"/"), VolumeBuf::Out(&mut out))
            .map(|x| x.0),
        Err(EUCLEAN)
    );
    // Random garbage everywhere but the superblock: errors, never a panic.
    let mut seed = 0x1234_5678u32;
    for round in 0..40 {
        let mut g = img.clone();
        for _ in 0..200 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let at = 2048 + (seed as usize % (g.len() - 2048));
            g[at] = (seed >> 16) as u8;
        }
        let Ok(mut fs) = Ext2::mount(
            Mem {
                bytes: g,
                fail_reads: false,
            },
            false,
            now,
        ) else {
            continue;
        };
        let _ = list_ok(&mut fs, b"/");
        let _ = call(
            &mut fs,
            VolumeReq {
                mode: 0o644,
                ..req(op::CREATE, b"new")
            },
        );
        let _ = fs.call(
            &VolumeReq {
                offset: 0,
                ..req(op::WRITE, b"new")
            },
            VolumeBuf::In(&[1u8; 5000]),
        );
        let _ = call(&mut fs, req(op::UNLINK, b"lost+found"));
        let _ = call(
            &mut fs,
            VolumeReq {
                mode: 0o755,
                ..req(op::MKDIR, format!("d{round}").as_bytes())
            },
        );
        let _ = fs.unmount();
    }
    // A device that fails reads: EIO.
    let mut fs = mount(img);
    fs.c.dev.fail_reads = true;
    fs.c.drop_clean();
    assert_eq!(call(&mut fs, req(op::LOOKUP, b"lost+found")), Err(EIO));
}

fn list_ok(fs: &mut Ext2<Mem>, path: &[u8]) -> Result<u64, Errno> {
    let mut b = vec![0u8; 4096];
    fs.call(&req(op::LIST, path), VolumeBuf::Out(&mut b))
        .map(|x| x.0)
}

/// A VFS with the ext2 filesystem `e` mounted at `at` as volume 0x1000 (`ro`: read-only);
/// the volume is kept to take the filesystem back ([`image_of`]).
fn vfs_with(
    e: Ext2<Mem>,
    ro: bool,
    at: &[u8],
) -> (crate::fs::ramfs::Fs, std::sync::Arc<Ext2Volume<Mem>>) {
    let vol = std::sync::Arc::new(Ext2Volume {
        fs: spin::Mutex::new(e),
    });
    let mut fs = crate::fs::ramfs::Fs::new(|| 1_700_000_000_000_000_000);
    fs.mount_volume(vol.clone(), 0x1000, ro, at).unwrap();
    (fs, vol)
}

/// The image of `vol` once the VFS let it go: ext2 unmounted (everything written back).
fn image_of(vol: std::sync::Arc<Ext2Volume<Mem>>) -> Vec<u8> {
    let mut e = std::sync::Arc::try_unwrap(vol)
        .ok()
        .unwrap()
        .fs
        .into_inner();
    e.unmount().unwrap();
    e.into_dev().bytes
}

#[test]
fn the_vfs_mounts_an_ext2_disk_as_a_volume() {
    use crate::fs::ramfs::{oflag, ROOT_INO};
    let img = mkfs("vfs", 4096, &[]);
    let (mut fs, vol) = vfs_with(mount(img), false, b"/mnt/disk");
    let m = fs.lookup(ROOT_INO, b"/mnt/disk", true).unwrap();
    fs.mkdir(m, b"dir", 0o755).unwrap();
    let h = fs
        .open(m, b"dir/file", oflag::O_CREAT | oflag::O_WRONLY, 0o644)
        .unwrap();
    let data = pattern(200_000, 3);
    assert_eq!(fs.write(h, &data).unwrap(), data.len());
    assert!(matches!(fs.unmount_volume(0x1000), Err(EBUSY)));
    fs.close(h).unwrap();
    fs.rename(m, b"dir/file", b"dir/renamed").unwrap();
    let host = fs.unmount_volume(0x1000).unwrap();
    drop(host);
    let img = image_of(vol);
    assert_clean("vfs", &img);
    assert_eq!(debugfs("vfs", &img, "cat /dir/renamed"), data);
}

#[test]
fn owners_of_new_objects_and_chown_reach_the_image() {
    let img = mkfs("own", 2048, &["-b", "1024"]);
    let mut fs = mount(img);
    let owned = |r: VolumeReq<'static>| VolumeReq {
        owner: Some((1000, 100_000)),
        ..r
    };
    let f = call(
        &mut fs,
        owned(VolumeReq {
            mode: 0o640,
            flags: flag::EXCL,
            ..req(op::CREATE, b"/f")
        }),
    )
    .unwrap();
    assert_eq!((f.uid, f.gid), (1000, 100_000));
    let d = call(
        &mut fs,
        owned(VolumeReq {
            mode: 0o755,
            ..req(op::MKDIR, b"/d")
        }),
    )
    .unwrap();
    assert_eq!((d.uid, d.gid), (1000, 100_000));
    let l = call(
        &mut fs,
        owned(VolumeReq {
            path2: b"f",
            ..req(op::SYMLINK, b"/d/l")
        }),
    )
    .unwrap();
    assert_eq!((l.uid, l.gid), (1000, 100_000));
    // Without an owner (a caller with every capability): root's.
    let r = call(
        &mut fs,
        VolumeReq {
            mode: 0o600,
            flags: flag::EXCL,
            ..req(op::CREATE, b"/r")
        },
    )
    .unwrap();
    assert_eq!((r.uid, r.gid), (0, 0));
    let c = fs.set_owner(b"/r", 70_000, 5).unwrap();
    assert_eq!((c.uid, c.gid), (70_000, 5));
    fs.unmount().unwrap();
    let img = fs.into_dev().bytes;
    assert_clean("own", &img);
    let st = String::from_utf8_lossy(&debugfs("own", &img, "stat /f")).into_owned();
    assert!(
        st.contains("User:  1000") && st.contains("Group: 100000"),
        "{st}"
    );
    let st = String::from_utf8_lossy(&debugfs("own", &img, "stat /r")).into_owned();
    assert!(
        st.contains("User: 70000") && st.contains("Group:     5"),
        "{st}"
    );
}

/// `debugfs -w -R CMD` on `bytes`: the changed image.
fn debugfs_w(name: &str, bytes: &[u8], cmd: &str) -> Vec<u8> {
    let f = tmp(name);
    std::fs::write(&f, bytes).unwrap();
    let st = Command::new("debugfs")
        .args(["-w", "-R", cmd])
        .arg(&f)
        .env("PATH", "/usr/sbin:/sbin:/usr/bin:/bin")
        .output()
        .expect("debugfs runs");
    assert!(st.status.success());
    let b = std::fs::read(&f).unwrap();
    let _ = std::fs::remove_file(&f);
    b
}

/// The `Links:` count and inode number `debugfs` states for `path`.
fn debugfs_links(name: &str, bytes: &[u8], path: &str) -> (u32, u32) {
    let st = String::from_utf8_lossy(&debugfs(name, bytes, &format!("stat {path}"))).into_owned();
    let links = st
        .split("Links: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no Links: in {st}"));
    let ino = st
        .split("Inode: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no Inode: in {st}"));
    (links, ino)
}

#[test]
fn ext2_hard_links_count_and_survive_e2fsck() {
    let img = mkfs("hl", 2048, &["-b", "1024"]);
    let mut fs = mount(img);
    let f = call(
        &mut fs,
        VolumeReq {
            mode: 0o644,
            flags: flag::EXCL,
            ..req(op::CREATE, b"/f")
        },
    )
    .unwrap();
    assert_eq!(f.links, 1);
    write(&mut fs, b"/f", 0, b"shared bytes");
    call(
        &mut fs,
        VolumeReq {
            mode: 0o755,
            ..req(op::MKDIR, b"/d")
        },
    )
    .unwrap();
    let l = fs.link(b"/f", b"/d/g").unwrap();
    assert_eq!((l.links, l.ino), (2, f.ino));
    assert_eq!(fs.link(b"/f", b"/d/g"), Err(EEXIST));
    assert_eq!(fs.link(b"/d", b"/d2"), Err(EPERM));
    assert_eq!(fs.link(b"/missing", b"/x"), Err(ENOENT));
    assert_eq!(fs.link(b"/f", b"/missing/x"), Err(ENOENT));
    let s = call(&mut fs, req(op::LOOKUP, b"/d/g")).unwrap();
    assert_eq!((s.links, s.ino, s.size), (2, f.ino, 12));
    assert_eq!(read(&mut fs, b"/d/g", 0, 64), b"shared bytes");
    // A third name, then one name goes: the file stays with the others.
    fs.link(b"/d/g", b"/h").unwrap();
    call(&mut fs, req(op::UNLINK, b"/f")).unwrap();
    let s = call(&mut fs, req(op::LOOKUP, b"/h")).unwrap();
    assert_eq!((s.links, s.ino), (2, f.ino));
    let listed: Vec<_> = list(&mut fs, b"/").into_iter().map(|(n, _)| n).collect();
    assert!(!listed.contains(&b"f".to_vec()), "{listed:?}");
    fs.unmount().unwrap();
    let img = fs.into_dev().bytes;
    assert_clean("hl", &img);
    let (links, ino) = debugfs_links("hl", &img, "/h");
    assert_eq!((links, ino), (2, f.ino));
    assert_eq!(debugfs_links("hl", &img, "/d/g"), (2, f.ino));
    assert_eq!(debugfs("hl", &img, "cat /d/g"), b"shared bytes");
    // At ext2's most links: EMLINK, nothing changed.
    let img = debugfs_w("hl", &img, "sif /h links_count 32000");
    let mut fs = mount(img);
    assert_eq!(fs.link(b"/h", b"/i"), Err(EMLINK));
    assert_eq!(call(&mut fs, req(op::LOOKUP, b"/i")), Err(ENOENT));
    fs.unmount().unwrap();
    let img = debugfs_w("hl", &fs.into_dev().bytes, "sif /h links_count 2");
    assert_clean("hl", &img);
    // Read-only: EROFS, the image unchanged.
    let mut ro = Ext2::mount(
        Mem {
            bytes: img.clone(),
            fail_reads: false,
        },
        true,
        now,
    )
    .unwrap();
    assert_eq!(ro.link(b"/h", b"/i"), Err(EROFS));
    assert_eq!(ro.into_dev().bytes, img);
}

#[test]
fn the_vfs_links_names_of_one_file_on_a_disk() {
    use crate::fs::ramfs::{oflag, ROOT_INO};
    let img = mkfs("vhl", 4096, &[]);
    let (mut fs, vol) = vfs_with(mount(img), false, b"/mnt/disk");
    let m = fs.lookup(ROOT_INO, b"/mnt/disk", true).unwrap();
    fs.mkdir(m, b"d", 0o755).unwrap();
    fs.mkdir(ROOT_INO, b"/tmp", 0o755).unwrap();
    let h = fs
        .open(m, b"f", oflag::O_CREAT | oflag::O_WRONLY, 0o644)
        .unwrap();
    fs.write(h, b"one").unwrap();
    fs.close(h).unwrap();
    let f = fs.lookup(m, b"f", false).unwrap();
    let ctime = fs.stat_ino(f).unwrap().ctime_ns;
    fs.link_ino(m, b"d/g", f).unwrap();
    let (a, b) = (fs.stat(m, b"f").unwrap(), fs.stat(m, b"d/g").unwrap());
    assert_eq!((a.ino, a.nlink), (b.ino, 2));
    assert!(a.ctime_ns >= ctime);
    // Linux's errors.
    assert_eq!(fs.link_ino(m, b"d/g", f), Err(EEXIST));
    let d = fs.lookup(m, b"d", false).unwrap();
    assert_eq!(fs.link_ino(m, b"d2", d), Err(EPERM));
    assert_eq!(fs.link_ino(ROOT_INO, b"/tmp/x", f), Err(EXDEV));
    let t = fs
        .open(ROOT_INO, b"/tmp/t", oflag::O_CREAT | oflag::O_WRONLY, 0o644)
        .unwrap();
    fs.close(t).unwrap();
    let t = fs.lookup(ROOT_INO, b"/tmp/t", false).unwrap();
    assert_eq!(fs.link_ino(m, b"t", t), Err(EXDEV));
    // Writes through one name show through the other.
    let h = fs
        .open(m, b"d/g", oflag::O_WRONLY | oflag::O_APPEND, 0)
        .unwrap();
    fs.write(h, b"+two").unwrap();
    fs.close(h).unwrap();
    let mut buf = [0u8; 16];
    let h = fs.open(m, b"f", oflag::O_RDONLY, 0).unwrap();
    let n = fs.read(h, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"one+two");
    // Unlink of the name its I/O used, while open: the file stays, by its other name.
    fs.unlink(m, b"f").unwrap();
    assert_eq!(fs.stat(m, b"d/g").unwrap().nlink, 1);
    let h2 = fs
        .open(m, b"d/g", oflag::O_WRONLY | oflag::O_APPEND, 0)
        .unwrap();
    fs.write(h2, b"!").unwrap();
    fs.close(h2).unwrap();
    let n = fs.read(h, &mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        b"!",
        "the open file is the file its other name has"
    );
    fs.close(h).unwrap();
    // A rename of the directory moves the name; a rename onto another name of the same
    // file changes nothing.
    fs.link_ino(m, b"k", f).unwrap();
    fs.rename(m, b"d", b"e").unwrap();
    assert_eq!(fs.rename(m, b"k", b"e/g"), Ok(()));
    assert_eq!(fs.stat(m, b"e/g").unwrap().nlink, 2);
    // A rename that replaces one name of a linked file: the file keeps its other name.
    let h = fs
        .open(m, b"other", oflag::O_CREAT | oflag::O_WRONLY, 0o600)
        .unwrap();
    fs.write(h, b"other").unwrap();
    fs.close(h).unwrap();
    fs.rename(m, b"other", b"k").unwrap();
    let g = fs.stat(m, b"e/g").unwrap();
    assert_eq!((g.nlink, g.size), (1, 8));
    fs.link_ino(m, b"e/g2", f).unwrap();
    let host = fs.unmount_volume(0x1000).unwrap();
    drop(host);
    let img = image_of(vol);
    assert_clean("vhl", &img);
    let (links, ino) = debugfs_links("vhl", &img, "/e/g");
    assert_eq!((links, debugfs_links("vhl", &img, "/e/g2")), (2, (2, ino)));
    assert_eq!(debugfs("vhl", &img, "cat /e/g2"), b"one+two!");
    assert_eq!(debugfs("vhl", &img, "cat /k"), b"other");
    // Mounted again: a listing that meets both names makes one inode of them.
    let (mut fs, vol) = vfs_with(mount(img), false, b"/m");
    let a = fs.stat(ROOT_INO, b"/m/e/g").unwrap();
    let b = fs.stat(ROOT_INO, b"/m/e/g2").unwrap();
    assert_eq!((a.ino, a.nlink), (b.ino, 2));
    assert_eq!(
        (a.dev, a.shown_ino()),
        (0, a.ino),
        "no device: the VFS's numbers"
    );
    // With the disk's device number, programs see ext2's inode numbers.
    fs.set_volume_dev(0x1000, 0xfe00);
    let a = fs.stat(ROOT_INO, b"/m/e/g").unwrap();
    assert_eq!((a.dev, a.shown_ino()), (0xfe00, u64::from(ino)));
    assert_eq!(
        fs.stat(ROOT_INO, b"/m").unwrap().shown_ino(),
        2,
        "ext2's root"
    );
    assert_eq!(fs.stat(ROOT_INO, b"/").unwrap().dev, 0);
    fs.unlink(ROOT_INO, b"/m/e/g").unwrap();
    assert_eq!(fs.stat(ROOT_INO, b"/m/e/g2").unwrap().nlink, 1);
    drop(fs.unmount_volume(0x1000).unwrap());
    let img = image_of(vol);
    assert_clean("vhl", &img);
    assert_eq!(debugfs_links("vhl", &img, "/e/g2"), (1, ino));
    // A read-only mount: EROFS.
    let ro = Mem {
        bytes: img,
        fail_reads: false,
    };
    let (mut fs, _vol) = vfs_with(Ext2::mount(ro, true, now).unwrap(), true, b"/m");
    let g2 = fs.lookup(ROOT_INO, b"/m/e/g2", false).unwrap();
    assert_eq!(fs.link_ino(ROOT_INO, b"/m/x", g2), Err(EROFS));
}

#[test]
fn a_lazily_detached_disk_serves_its_open_files_until_released() {
    use crate::fs::ramfs::{oflag, ROOT_INO};
    let img = mkfs("lazy", 4096, &[]);
    let (mut fs, vol) = vfs_with(mount(img), false, b"/mnt/d");
    let m = fs.lookup(ROOT_INO, b"/mnt/d", true).unwrap();
    fs.mkdir(m, b"sub", 0o755).unwrap();
    let sub = fs.lookup(m, b"sub", true).unwrap();
    let h = fs
        .open(m, b"f", oflag::O_CREAT | oflag::O_RDWR, 0o644)
        .unwrap();
    fs.write(h, b"before ").unwrap();
    assert!(fs.volume_in_use(0x1000, &[]));
    assert!(matches!(fs.unmount_volume(0x1000), Err(EBUSY)));
    fs.detach_volume(0x1000).unwrap();
    assert!(fs.volume_detached(0x1000));
    assert_eq!(fs.detach_volume(0x1000), Err(EINVAL));
    // Out of the tree at once: the path is an empty directory of the root filesystem.
    let now = fs.lookup(ROOT_INO, b"/mnt/d", true).unwrap();
    assert_ne!(now, m);
    assert!(fs.list(now).unwrap().is_empty());
    assert!(fs.lookup(ROOT_INO, b"/mnt/d/f", true).is_err());
    // The open file and a working directory in it still work on the disk.
    fs.write(h, b"after").unwrap();
    let g = fs
        .open(sub, b"g", oflag::O_CREAT | oflag::O_WRONLY, 0o644)
        .unwrap();
    fs.write(g, b"made while detached").unwrap();
    fs.close(g).unwrap();
    fs.close(h).unwrap();
    assert!(
        fs.volume_in_use(0x1000, &[sub]),
        "a working directory in it"
    );
    assert!(!fs.volume_in_use(0x1000, &[ROOT_INO]));
    // Released once nothing uses it: its inodes go, the new directory stays.
    let before = fs.inode_count();
    drop(fs.unmount_volume(0x1000).unwrap());
    assert!(fs.inode_count() < before);
    assert!(!fs.volume_detached(0x1000));
    assert_eq!(fs.lookup(ROOT_INO, b"/mnt/d", true), Ok(now));
    let img = image_of(vol);
    assert_clean("lazy", &img);
    assert_eq!(debugfs("lazy", &img, "cat /f"), b"before after");
    assert_eq!(debugfs("lazy", &img, "cat /sub/g"), b"made while detached");
}
