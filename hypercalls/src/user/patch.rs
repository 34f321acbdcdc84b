//! Syscall-site patching (ABI v6): the byte forms a guest kernel rewrites, the per-space *patch
//! table* a rewritten site jumps through, and the user stub's fixed entry.
//!
//! After a `mov $nr, %eax; syscall` (`b8 imm32 0f 05`, [`SITE_LEN`] bytes) trapped once, the
//! kernel rewrites that process's copy of it to `jmp *[cell]` (`ff 24 25 disp32`, the same 7
//! bytes, [`site_patch`]), where `cell` is a [`CELL_SIZE`]-byte cell of the space's patch table
//! at [`PATCH_TABLE_BASE`] (below 2 GiB, so an absolute 32-bit address reaches it from
//! anywhere). A cell holds the address of its own code, then the code ([`cell_bytes`]):
//!
//! ```text
//!  cell + 0:  .quad cell + 8
//!  cell + 8:  mov $nr, %eax              b8 imm32
//!  cell + 13: movabs $site + 7, %rcx     48 b9 imm64   (the return address)
//!  cell + 23: jmp *[PATCH_TABLE_BASE]    ff 24 25 disp32
//! ```
//!
//! Word 0 of the table (cell 0) holds the *entry* every cell jumps to, which the kernel chooses
//! per address space: in a user sandbox [`USER_PATCH_ENTRY`], a fixed address where the stub
//! maps a jump to its trampoline ([`entry_jump`]); in the trusted in-process mode the kernel
//! sandbox's `inproc_syscall` entry (`crate::stub::StubTable::inproc_syscall`). The entry is called with the user's registers, `rax` = the
//! system-call number and `rcx` = the address to return to (the two registers `syscall`
//! clobbers, with `r11`), on the user's stack, which it must not touch (the red zone).
//!
//! Every intermediate state of the rewrite is valid code (see [`patch_steps`]): byte 5 of the
//! patch is `0x06` — the third byte of a table address in `0x6_0000..0x7_0000`, an invalid
//! opcode in 64-bit mode — so a thread that executed the old `mov` and then meets the new
//! bytes faults with `#UD` at `site + 5`, which the kernel recognises ([`is_race_restart`])
//! and restarts at `site`.

/// Bytes of a patchable site and of its patch.
pub const SITE_LEN: usize = 7;
/// Where a space's patch table lives (below 2 GiB, third address byte `0x06`).
pub const PATCH_TABLE_BASE: u64 = 0x6_0000;
/// Size of the patch table (16 pages; its third address byte stays `0x06`).
pub const PATCH_TABLE_LEN: u64 = 0x1_0000;
/// Bytes of one cell; cell 0 is the table header (the entry address).
pub const CELL_SIZE: u64 = 32;
/// Cells in a table (cell 0 included).
pub const CELLS: u32 = (PATCH_TABLE_LEN / CELL_SIZE) as u32;
/// The user stub's patch entry: a page it maps (read and execute, above the user window,
/// where the user filter lets nothing map, unmap or re-protect) holding a jump to its
/// trampoline. What a space's table header holds in isolated mode.
pub const USER_PATCH_ENTRY: u64 = super::USER_CTX_BASE + 0x3000_0000;
/// `exit_addr` of a [`super::UserExit::Syscall`] that came through the patch entry (0: it
/// trapped). The kernel patches only trapped sites.
pub const SYSCALL_FROM_ENTRY: u64 = 1;

// The entry lies between the grant page and the stub's per-slot areas; the table in the user
// window.
const _: () = assert!(USER_PATCH_ENTRY > super::grant::USER_GRANT_BASE);
const _: () = assert!(USER_PATCH_ENTRY < super::USER_CTX_BASE + 0x4000_0000);
const _: () = assert!(PATCH_TABLE_BASE >= super::USER_BASE);

/// Bytes of [`entry_jump`].
pub const ENTRY_JUMP_LEN: usize = 16;

/// The code at [`USER_PATCH_ENTRY`]: `jmp *[rip + 2]`, two `int3`, then `target` as an
/// 8-byte-aligned quad (at offset 8 of the page-aligned entry).
///
/// The quad must be aligned: the entry runs with the program's flags, and a program may
/// have `EFLAGS.AC` set (a `SIGBUS` handler for an alignment fault starts with the AC of
/// the code that faulted, as on Linux), so an unaligned load of the target would raise
/// `#AC` at the entry on every patched call — a `SIGBUS` the program never caused.
pub fn entry_jump(target: u64) -> [u8; ENTRY_JUMP_LEN] {
    let mut b = [0xccu8; ENTRY_JUMP_LEN];
    b[..6].copy_from_slice(&[0xff, 0x25, 2, 0, 0, 0]);
    b[8..].copy_from_slice(&target.to_le_bytes());
    b
}

/// The system-call number of a patchable site: `b8 imm32 0f 05` (`mov $nr, %eax; syscall`).
pub fn patchable_nr(site: &[u8; SITE_LEN]) -> Option<u32> {
    (site[0] == 0xb8 && site[5] == 0x0f && site[6] == 0x05)
        .then(|| u32::from_le_bytes([site[1], site[2], site[3], site[4]]))
}

/// Address of cell `index` (1..[`CELLS`]).
pub const fn cell_addr(index: u32) -> u64 {
    PATCH_TABLE_BASE + index as u64 * CELL_SIZE
}

/// The 7 bytes a site is rewritten to: `jmp *[cell]`.
pub fn site_patch(cell: u64) -> [u8; SITE_LEN] {
    let d = (cell as u32).to_le_bytes();
    [0xff, 0x24, 0x25, d[0], d[1], d[2], d[3]]
}

/// The order of the writes of a patch over a live site, as `(offset, bytes)`: byte 5 first
/// (`0x06`: a thread past the old `mov` faults and is restarted), then bytes 1..7 (the old
/// `mov`'s opcode still decodes the rest as its immediate, followed by the faulting byte),
/// then byte 0, which makes the jump whole.
pub fn patch_steps(patch: &[u8; SITE_LEN]) -> [(usize, &[u8]); 3] {
    [(5, &patch[5..6]), (1, &patch[1..]), (0, &patch[..1])]
}

/// The contents of cell `cell` for a site at `site` making call `nr`.
pub fn cell_bytes(cell: u64, site: u64, nr: u32) -> [u8; CELL_SIZE as usize] {
    let mut b = [0xccu8; CELL_SIZE as usize]; // int3 padding
    b[..8].copy_from_slice(&(cell + 8).to_le_bytes());
    b[8] = 0xb8;
    b[9..13].copy_from_slice(&nr.to_le_bytes());
    b[13] = 0x48;
    b[14] = 0xb9;
    b[15..23].copy_from_slice(&(site + SITE_LEN as u64).to_le_bytes());
    b[23..26].copy_from_slice(&[0xff, 0x24, 0x25]);
    b[26..30].copy_from_slice(&(PATCH_TABLE_BASE as u32).to_le_bytes());
    b
}

/// Whether the 7 bytes at `ip - 5` (`ip` where a `#UD` hit) are a complete patch through a
/// cell below `next_cell`: a thread that ran the old `mov` met byte 5 of a patch written
/// meanwhile. It is restarted at `ip - 5` (the `mov` it ran is redone by the cell).
pub fn is_race_restart(bytes: &[u8; SITE_LEN], next_cell: u32) -> bool {
    if bytes[..3] != [0xff, 0x24, 0x25] {
        return false;
    }
    let cell = u64::from(u32::from_le_bytes([bytes[3], bytes[4], bytes[5], bytes[6]]));
    cell >= cell_addr(1)
        && cell < cell_addr(next_cell.min(CELLS))
        && (cell - PATCH_TABLE_BASE).is_multiple_of(CELL_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_jump_reads_an_aligned_target() {
        let b = entry_jump(0x1122_3344_5566_7788);
        assert_eq!(&b[..2], &[0xff, 0x25], "jmp qword ptr [rip + disp32]");
        let disp = i32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        // The operand: the address after the 6-byte instruction plus disp32.
        let at = USER_PATCH_ENTRY.wrapping_add_signed(6 + i64::from(disp));
        assert_eq!(at % 8, 0, "the target quad is 8-byte aligned (EFLAGS.AC)");
        let off = (at - USER_PATCH_ENTRY) as usize;
        assert_eq!(
            u64::from_le_bytes(b[off..off + 8].try_into().unwrap()),
            0x1122_3344_5566_7788
        );
        assert_eq!(USER_PATCH_ENTRY % 8, 0);
    }

    #[test]
    fn table_words_a_patch_loads_are_aligned() {
        // `jmp *[cell]` at a site and `jmp *[PATCH_TABLE_BASE]` in a cell: aligned loads.
        assert_eq!(PATCH_TABLE_BASE % 8, 0);
        assert_eq!(CELL_SIZE % 8, 0);
    }

    #[test]
    fn only_the_mov_syscall_form_is_patchable() {
        assert_eq!(patchable_nr(&[0xb8, 0x6e, 0, 0, 0, 0x0f, 0x05]), Some(110));
        assert_eq!(patchable_nr(&[0xb9, 0x6e, 0, 0, 0, 0x0f, 0x05]), None);
        assert_eq!(patchable_nr(&[0xb8, 0x6e, 0, 0, 0, 0x0f, 0x34]), None);
        assert_eq!(patchable_nr(&[0xb8, 0x6e, 0, 0, 0, 0xcd, 0x80]), None);
    }

    #[test]
    fn the_patch_is_a_jump_through_the_cell_and_byte_5_is_invalid() {
        for i in 1..CELLS {
            let p = site_patch(cell_addr(i));
            assert_eq!(&p[..3], &[0xff, 0x24, 0x25]);
            assert_eq!(p[5], 0x06, "byte 5 of the patch through cell {i}");
            assert_eq!(p[6], 0);
            assert!(is_race_restart(&p, i + 1));
            assert!(!is_race_restart(&p, i));
        }
    }

    #[test]
    fn every_intermediate_state_keeps_the_mov_or_faults_at_byte_5() {
        let old = [0xb8, 0x27, 0, 0, 0, 0x0f, 0x05];
        let new = site_patch(cell_addr(7));
        let mut cur = old;
        for (i, (off, bytes)) in patch_steps(&new).into_iter().enumerate() {
            cur[off..off + bytes.len()].copy_from_slice(bytes);
            if i < 2 {
                // Still `mov imm32, %eax` followed by the invalid 0x06.
                assert_eq!(cur[0], 0xb8);
                assert_eq!(cur[5], 0x06);
            }
        }
        assert_eq!(cur, new);
    }

    #[test]
    fn a_cell_loads_nr_and_the_return_address_then_jumps_through_the_header() {
        let c = cell_bytes(cell_addr(3), 0x40_1000, 39);
        assert_eq!(
            u64::from_le_bytes(c[..8].try_into().unwrap()),
            cell_addr(3) + 8
        );
        assert_eq!(&c[8..13], &[0xb8, 39, 0, 0, 0]);
        assert_eq!(&c[13..15], &[0x48, 0xb9]);
        assert_eq!(u64::from_le_bytes(c[15..23].try_into().unwrap()), 0x40_1007);
        assert_eq!(&c[23..30], &[0xff, 0x24, 0x25, 0, 0, 6, 0]);
    }
}
