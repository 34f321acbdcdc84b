//! Limits and memory: tmpfs-like size and inode limits (`ENOSPC`), the kernel frames file
//! contents live in (`ENOSPC` when the kernel can spare no more, short writes as Linux's),
//! the heap's headroom gate (`ENOMEM`, nothing half done), and trees deep and wide enough to
//! exhaust a recursive implementation's stack, removed with all their memory coming back.

use super::*;
use crate::fs::errno::Errno::*;
use crate::fs::pagecache::set_test_frame_budget as set_test_page_budget;
use crate::fs::ramfs::Limits;
use crate::mm::heap::set_test_headroom;

const PAGE: usize = 4096;

fn limited(max_pages: u64, max_inodes: u64) -> Fs {
    let mut fs = new_fs();
    fs.set_limits(Limits {
        max_pages,
        max_inodes,
    });
    fs
}

#[test]
fn tmpfs_defaults_are_half_of_memory_and_as_many_inodes_as_its_pages() {
    let l = Limits::tmpfs_defaults(256 << 20);
    assert_eq!(l.max_pages, 32768, "128 MiB of contents");
    assert_eq!(l.max_inodes, 32768, "Linux's nr_inodes default for 256 MiB");
}

#[test]
fn the_inode_limit_is_enospc_for_every_kind_and_freed_inodes_count_again() {
    // The root counts, as on Linux (a fresh tmpfs shows one inode used).
    let mut fs = limited(u64::MAX, 11);
    assert_eq!(fs.usage().inodes, 1);
    for i in 0..10 {
        put(&mut fs, ROOT_INO, format!("f{i}").as_bytes(), b"");
    }
    assert_eq!(
        fs.open(ROOT_INO, b"one-more", O_CREAT | O_WRONLY, 0o644),
        Err(ENOSPC)
    );
    assert_eq!(fs.mkdir(ROOT_INO, b"d", 0o755), Err(ENOSPC));
    assert_eq!(fs.symlink(ROOT_INO, b"f0", b"l"), Err(ENOSPC));
    // Nothing was half made: no names, no inodes.
    assert_eq!(names(&mut fs, ROOT_INO).len(), 10);
    assert_eq!(fs.inode_count(), 11);
    // Hard links need no inode.
    fs.link(ROOT_INO, b"f0", b"hard").unwrap();
    fs.unlink(ROOT_INO, b"f1").unwrap();
    fs.mkdir(ROOT_INO, b"d", 0o755).unwrap();
    assert_eq!(fs.usage().inodes, 11);
    // An open unlinked file still holds its inode until closed.
    let h = fs.open(ROOT_INO, b"f2", O_RDONLY, 0).unwrap();
    fs.unlink(ROOT_INO, b"f2").unwrap();
    assert_eq!(fs.mkdir(ROOT_INO, b"e", 0o755), Err(ENOSPC));
    fs.close(h).unwrap();
    fs.mkdir(ROOT_INO, b"e", 0o755).unwrap();
}

#[test]
fn the_size_limit_gives_a_short_write_then_enospc_and_space_comes_back() {
    let mut fs = limited(4, u64::MAX);
    let h = fs.open(ROOT_INO, b"f", O_CREAT | O_RDWR, 0o644).unwrap();
    let big = vec![7u8; 5 * PAGE + 10];
    assert_eq!(fs.write(h, &big), Ok(4 * PAGE), "a short write, as Linux's");
    assert_eq!(fs.write(h, b"x"), Err(ENOSPC));
    assert_eq!(fs.fstat(h).unwrap().size, 4 * PAGE as u64);
    assert_eq!(fs.usage().pages, 4);
    // Rewriting stored pages needs no space; a hole needs none until written.
    assert_eq!(fs.pwrite(h, b"y", 3), Ok(1));
    fs.ftruncate(h, 1 << 30).unwrap();
    assert_eq!(fs.usage().pages, 4);
    // Truncating gives pages back.
    fs.ftruncate(h, PAGE as i64 + 1).unwrap();
    assert_eq!(fs.usage().pages, 2);
    put(&mut fs, ROOT_INO, b"g", &[1u8; 2 * PAGE]);
    assert_eq!(fs.usage().pages, 4);
    fs.close(h).unwrap();
    fs.unlink(ROOT_INO, b"f").unwrap();
    fs.unlink(ROOT_INO, b"g").unwrap();
    assert_eq!(fs.usage().pages, 0);
    put(&mut fs, ROOT_INO, b"again", &[2u8; 4 * PAGE]);
}

#[test]
fn without_frames_to_spare_writes_fail_with_enospc_and_frames_come_back_on_unlink() {
    let mut fs = new_fs();
    set_test_page_budget(Some(3));
    let h = fs.open(ROOT_INO, b"f", O_CREAT | O_RDWR, 0o644).unwrap();
    assert_eq!(fs.write(h, &[1u8; 4 * PAGE]), Ok(3 * PAGE));
    assert_eq!(fs.write(h, &[1u8; 10]), Err(ENOSPC));
    fs.close(h).unwrap();
    fs.unlink(ROOT_INO, b"f").unwrap();
    put(&mut fs, ROOT_INO, b"g", &[3u8; 3 * PAGE]);
    assert_eq!(get(&mut fs, ROOT_INO, b"g").unwrap(), vec![3u8; 3 * PAGE]);
    set_test_page_budget(None);
}

#[test]
fn a_borrowed_file_that_cannot_be_copied_up_stays_borrowed_and_intact() {
    static ARCHIVE_BYTES: [u8; 3 * PAGE] = [9; 3 * PAGE];
    let mut fs = limited(2, u64::MAX);
    put(&mut fs, ROOT_INO, b"f", b"");
    let ino = fs.lookup(ROOT_INO, b"f", true).unwrap();
    fs.set_static_data(ino, &ARCHIVE_BYTES).unwrap();
    let h = fs.open(ROOT_INO, b"f", O_WRONLY, 0).unwrap();
    assert_eq!(fs.pwrite(h, b"x", 0), Err(ENOSPC));
    fs.close(h).unwrap();
    assert_eq!(fs.usage().pages, 0, "the partial copy was given back");
    assert_eq!(get(&mut fs, ROOT_INO, b"f").unwrap(), ARCHIVE_BYTES);
}

#[test]
fn without_heap_headroom_creation_fails_with_enomem_and_changes_nothing() {
    let (mut fs, d) = fs_with_dir();
    put(&mut fs, d, b"f", b"abc");
    let before = (fs.inode_count(), names(&mut fs, d));
    let h = fs.open(d, b"f", O_RDWR, 0).unwrap();
    set_test_headroom(Some(0));
    assert_eq!(
        fs.open(d, b"f", O_RDONLY, 0),
        Err(ENOMEM),
        "a handle's entry"
    );
    assert_eq!(fs.list(d), Err(ENOMEM), "a copy of the names");
    assert_eq!(fs.open(d, b"g", O_CREAT | O_WRONLY, 0o644), Err(ENOMEM));
    assert_eq!(fs.mkdir(d, b"sub", 0o755), Err(ENOMEM));
    assert_eq!(fs.symlink(d, b"f", b"l"), Err(ENOMEM));
    assert_eq!(fs.link(d, b"f", b"hard"), Err(ENOMEM));
    assert_eq!(
        fs.pwrite(h, b"x", 1 << 20),
        Err(ENOMEM),
        "a new page's map entry"
    );
    set_test_headroom(None);
    assert_eq!((fs.inode_count(), names(&mut fs, d)), before);
    assert_eq!(fs.stat(d, b"f").unwrap().nlink, 1);
    assert_eq!(fs.pwrite(h, b"x", 1 << 20), Ok(1));
    fs.close(h).unwrap();
}

#[test]
fn sparse_files_store_only_written_pages_and_truncation_zeroes_the_tail() {
    let mut fs = new_fs();
    let h = fs.open(ROOT_INO, b"f", O_CREAT | O_RDWR, 0o644).unwrap();
    assert_eq!(fs.pwrite(h, b"end", 1 << 30), Ok(3));
    let st = fs.fstat(h).unwrap();
    assert_eq!(
        (st.size, st.blocks, fs.usage().pages),
        ((1 << 30) + 3, 8, 1)
    );
    let mut buf = [1u8; 8];
    assert_eq!(fs.pread(h, &mut buf, 12345), Ok(8));
    assert_eq!(buf, [0; 8]);
    // A write across a page boundary reads back whole.
    let data: Vec<u8> = (0..3 * PAGE).map(|i| (i % 251) as u8).collect();
    assert_eq!(fs.pwrite(h, &data, 100), Ok(data.len()));
    let mut back = vec![0u8; data.len()];
    assert_eq!(fs.pread(h, &mut back, 100), Ok(data.len()));
    assert_eq!(back, data);
    // Shrinking into a page and growing again reads zeros past the cut.
    fs.ftruncate(h, 200).unwrap();
    fs.ftruncate(h, PAGE as i64).unwrap();
    let mut page = vec![0u8; PAGE];
    assert_eq!(fs.pread(h, &mut page, 0), Ok(PAGE));
    assert_eq!(&page[100..200], &data[..100]);
    assert!(page[200..].iter().all(|&b| b == 0));
    assert_eq!(fs.usage().pages, 1);
    fs.close(h).unwrap();
}

/// Runs `f` on a thread with a kernel-sized stack (64 KiB): recursion proportional to a
/// tree's depth or width would overflow it.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(64 << 10)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn a_100k_deep_tree_is_made_walked_and_removed_without_recursion() {
    on_small_stack(|| {
        const DEPTH: usize = 100_000;
        let mut fs = new_fs();
        for round in 0..2 {
            let mut dirs = vec![ROOT_INO];
            for _ in 0..DEPTH {
                let d = *dirs.last().unwrap();
                dirs.push(fs.mkdir(d, b"d", 0o755).unwrap());
            }
            assert_eq!(fs.inode_count(), DEPTH + 1, "round {round}");
            // `..` chains all the way up, relative walks work at any depth.
            let deepest = *dirs.last().unwrap();
            let up = b"../".repeat(1000);
            assert_eq!(fs.lookup_dir(deepest, &up).unwrap(), dirs[DEPTH - 1000]);
            // rmdir from the bottom up, as `rm -rf` does; the top one is not empty before.
            assert_eq!(fs.rmdir(ROOT_INO, b"d"), Err(ENOTEMPTY));
            for i in (0..DEPTH).rev() {
                fs.rmdir(dirs[i], b"d").unwrap();
            }
            assert_eq!(fs.inode_count(), 1, "round {round}: all memory back");
            assert_eq!(fs.usage().inodes, 1);
        }
    });
}

#[test]
fn a_wide_directory_lists_in_bounded_calls_and_empties() {
    on_small_stack(|| {
        const N: usize = 50_000;
        let mut fs = new_fs();
        let d = fs.mkdir(ROOT_INO, b"w", 0o755).unwrap();
        for i in 0..N {
            put(&mut fs, d, format!("file-{i:06}").as_bytes(), b"");
        }
        let h = fs.open(ROOT_INO, b"w", O_RDONLY | O_DIRECTORY, 0).unwrap();
        let (mut seen, mut buf) = (0, vec![0u8; 4096]);
        loop {
            let n = fs.getdents64(h, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            let mut pos = 0;
            while pos < n {
                seen += 1;
                pos += usize::from(u16::from_le_bytes([buf[pos + 16], buf[pos + 17]]));
            }
        }
        fs.close(h).unwrap();
        assert_eq!(seen, N + 2, "every entry plus . and ..");
        for i in 0..N {
            fs.unlink(d, format!("file-{i:06}").as_bytes()).unwrap();
        }
        fs.rmdir(ROOT_INO, b"w").unwrap();
        assert_eq!((fs.inode_count(), fs.handle_count()), (1, 0));
    });
}
