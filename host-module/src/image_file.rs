//! Where a kernel image built into the executable lies in the executable's file.
//!
//! An image built into pvmux (`include_bytes!`, page aligned) is part of a read-only,
//! file-backed mapping of the executable: its bytes are the file's bytes at a page-aligned
//! offset, already in the host's page cache. A kernel sandbox given that file (read-only,
//! [`pvmux_hypercalls::sandbox::KERNEL_IMAGE_FD`]) maps the image's read-only pages from it,
//! so no launch writes them into guest memory and every tenant of every pvmux process shares
//! one copy (`KernelImage::shared_image_at`, docs/ARCHITECTURE.md "The kernel image's shared
//! pages").

use std::fs::File;
use std::os::unix::fs::MetadataExt;

use pvmux_hypercalls::PAGE_SIZE;

/// The file that holds a built-in image, and where in it the image starts.
#[derive(Debug)]
pub(crate) struct ImageFile {
    /// The file, opened read-only.
    pub(crate) file: File,
    /// Offset of the image's first byte in the file (page aligned).
    pub(crate) offset: u64,
}

/// One line of `/proc/self/maps`: a file-backed mapping.
#[derive(Debug, PartialEq, Eq)]
struct Mapping<'a> {
    start: u64,
    end: u64,
    offset: u64,
    dev: (u32, u32),
    inode: u64,
    path: &'a str,
}

/// Parses a `/proc/PID/maps` line (`start-end perms offset major:minor inode path`); `None`
/// for anonymous mappings and anything malformed.
fn parse_line(line: &str) -> Option<Mapping<'_>> {
    let mut f = line.splitn(6, ' ');
    let (range, _perms, offset, dev, inode) =
        (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let path = f.next()?.trim_start();
    let (start, end) = range.split_once('-')?;
    let (major, minor) = dev.split_once(':')?;
    let hex = |s: &str| u64::from_str_radix(s, 16).ok();
    let m = Mapping {
        start: hex(start)?,
        end: hex(end)?,
        offset: hex(offset)?,
        dev: (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        ),
        inode: inode.parse().ok()?,
        path,
    };
    (m.inode != 0 && m.path.starts_with('/') && m.start < m.end).then_some(m)
}

/// The mapping of `maps` (the text of `/proc/self/maps`) that holds all of
/// `[addr, addr + len)`, and the file offset of `addr` in it.
fn find(maps: &str, addr: u64, len: u64) -> Option<(Mapping<'_>, u64)> {
    let end = addr.checked_add(len)?;
    maps.lines()
        .filter_map(parse_line)
        .find(|m| m.start <= addr && end <= m.end)
        .map(|m| {
            let off = m.offset + (addr - m.start);
            (m, off)
        })
}

/// The file that holds `bytes`, a page-aligned slice of a read-only file mapping of this
/// process (an image built into the executable), opened read-only, if it can be found and
/// is the very file mapped (same device and inode: not a file since put at its path).
/// `None` otherwise; the image is then written into guest memory as any other.
pub(crate) fn locate(bytes: &'static [u8]) -> Option<ImageFile> {
    let addr = bytes.as_ptr() as u64;
    if bytes.is_empty() || !addr.is_multiple_of(PAGE_SIZE) {
        return None;
    }
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let (m, offset) = find(&maps, addr, bytes.len() as u64)?;
    let file = File::open(m.path).ok()?;
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    let same = meta.ino() == m.inode
        && (rustix::fs::major(dev), rustix::fs::minor(dev)) == m.dev
        && offset.checked_add(bytes.len() as u64)? <= meta.len();
    if !same {
        tracing::debug!(
            path = m.path,
            "the built-in kernel's file is not the one mapped"
        );
        return None;
    }
    Some(ImageFile { file, offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0b00000 r--p 00000000 fd:01 1234 /usr/bin/pvmux
55d0c0b00000-55d0c0f00000 r--p 00100000 fd:01 1234 /usr/bin/pvmux
55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000002000 r--s 00000000 00:01 77 /memfd:pvmux-guest (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
";

    #[test]
    fn a_slice_of_a_file_mapping_is_found_with_its_offset() {
        let (m, off) = find(MAPS, 0x55d0_c0b4_3000, 0x20_0000).expect("found");
        assert_eq!(m.path, "/usr/bin/pvmux");
        assert_eq!((m.dev, m.inode), ((0xfd, 1), 1234));
        assert_eq!(off, 0x10_0000 + 0x4_3000);
    }

    #[test]
    fn slices_across_mappings_and_anonymous_ones_are_not() {
        // Beyond the end of the second mapping.
        assert!(find(MAPS, 0x55d0_c0ef_f000, 0x2000).is_none());
        // Anonymous (heap, stack).
        assert!(find(MAPS, 0x55d0_c100_0000, 0x1000).is_none());
        assert!(find(MAPS, 0x7ffd_0000_0000, 0x1000).is_none());
        // Outside every mapping.
        assert!(find(MAPS, 0x1000, 0x1000).is_none());
        // Malformed lines are skipped.
        assert!(parse_line("zz-1 r--p 0 fd:01 5 /x").is_none());
        assert!(parse_line("1000-2000 r--p 0 fd:01").is_none());
    }

    #[test]
    fn a_page_of_this_executable_is_its_file_s_bytes() {
        // A page-aligned page of this test binary's read-only data: the bytes the file
        // holds at the offset found.
        #[repr(C, align(4096))]
        struct Page([u8; 4096]);
        static PAGE: Page = Page([0x5a; 4096]);
        let bytes: &'static [u8] = &PAGE.0;
        let f = locate(bytes).expect("this executable's page is found");
        let mut buf = vec![0u8; bytes.len()];
        rustix::io::pread(&f.file, &mut buf, f.offset).expect("pread");
        assert_eq!(buf, bytes);
        // Not page aligned: not looked for.
        assert!(locate(&bytes[1..]).is_none());
    }
}
