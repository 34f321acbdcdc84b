//! The initial stack of a new program, as Linux builds it (x86-64 System V ABI):
//!
//! ```text
//!  top                      16 bytes left free
//!                           AT_RANDOM's 16 random bytes
//!                           "x86_64\0" (AT_PLATFORM), the file name (AT_EXECFN),
//!                           the environment strings, the argument strings
//!                           (padding to 16 bytes)
//!                           AT_NULL, auxv pairs
//!                           0, envp[envc-1] ... envp[0]
//!                           0, argv[argc-1] ... argv[0]
//!  sp (16-byte aligned) ->  argc
//! ```

#![deny(unsafe_code)]

use alloc::vec::Vec;

use pvmux_hypercalls::PAGE_SIZE;

use crate::fs::Errno;

/// Largest total size of the argument and environment strings and their pointers (Linux:
/// a quarter of the 8 MiB stack limit).
pub(crate) const MAX_ARGS: usize = 2 << 20;

/// Auxiliary vector keys (`<linux/auxvec.h>`).
#[allow(dead_code)]
pub(crate) mod at {
    pub(crate) const AT_NULL: u64 = 0;
    pub(crate) const AT_PHDR: u64 = 3;
    pub(crate) const AT_PHENT: u64 = 4;
    pub(crate) const AT_PHNUM: u64 = 5;
    pub(crate) const AT_PAGESZ: u64 = 6;
    pub(crate) const AT_BASE: u64 = 7;
    pub(crate) const AT_FLAGS: u64 = 8;
    pub(crate) const AT_ENTRY: u64 = 9;
    pub(crate) const AT_UID: u64 = 11;
    pub(crate) const AT_EUID: u64 = 12;
    pub(crate) const AT_GID: u64 = 13;
    pub(crate) const AT_EGID: u64 = 14;
    pub(crate) const AT_PLATFORM: u64 = 15;
    pub(crate) const AT_HWCAP: u64 = 16;
    pub(crate) const AT_CLKTCK: u64 = 17;
    pub(crate) const AT_SECURE: u64 = 23;
    pub(crate) const AT_RANDOM: u64 = 25;
    pub(crate) const AT_HWCAP2: u64 = 26;
    pub(crate) const AT_EXECFN: u64 = 31;
    pub(crate) const AT_SYSINFO_EHDR: u64 = 33;
    pub(crate) const AT_MINSIGSTKSZ: u64 = 51;
}
use at::*;

/// What the initial stack tells the program.
pub(crate) struct Params<'a> {
    /// Arguments.
    pub(crate) argv: &'a [Vec<u8>],
    /// Environment.
    pub(crate) envp: &'a [Vec<u8>],
    /// The file name `execve` was given (`AT_EXECFN`).
    pub(crate) execfn: &'a [u8],
    /// `AT_RANDOM`'s bytes (the C library's stack canary and pointer guard).
    pub(crate) random: [u8; 16],
    /// `AT_BASE`: where the program interpreter was loaded (0 without one).
    pub(crate) base: u64,
    /// `AT_ENTRY`.
    pub(crate) entry: u64,
    /// `AT_PHDR`.
    pub(crate) phdr: u64,
    /// `AT_PHNUM`.
    pub(crate) phnum: u64,
    /// `AT_HWCAP`.
    pub(crate) hwcap: u64,
    /// `AT_MINSIGSTKSZ`: the largest signal frame (the C library's `sysconf(_SC_MINSIGSTKSZ)`
    /// and `SIGSTKSZ`).
    pub(crate) minsigstksz: u64,
    /// `AT_SYSINFO_EHDR`: the vDSO's address (0: no vDSO, the entry is left out).
    pub(crate) sysinfo_ehdr: u64,
    /// `AT_UID`, `AT_EUID`, `AT_GID`, `AT_EGID`.
    pub(crate) ids: [u32; 4],
}

/// The initial stack: its bytes from `sp` up to the top.
pub(crate) struct Stack {
    /// The initial stack pointer (pointing at `argc`).
    pub(crate) sp: u64,
    /// The memory `[sp, top)`.
    pub(crate) bytes: Vec<u8>,
}

/// Builds the initial stack below `top`: `E2BIG` if the strings and their pointers exceed
/// [`MAX_ARGS`] or the stack would go below `bottom`, `ENOMEM` if there is no kernel memory
/// for it.
pub(crate) fn build(top: u64, bottom: u64, p: &Params<'_>) -> Result<Stack, Errno> {
    let strings: usize = p.argv.iter().chain(p.envp).map(|s| s.len() + 1).sum();
    // Linux counts a pointer per string (and one argv[0] even without arguments).
    let pointers = (p.argv.len().max(1) + p.envp.len()) * 8;
    if strings.saturating_add(pointers) > MAX_ARGS {
        return Err(Errno::E2BIG);
    }
    // Strings and the random bytes, downwards from the top; NUL terminators come from the
    // zero-filled image.
    let mut cur = top - 16;
    let mut pieces: Vec<(u64, &[u8])> = Vec::new();
    cur -= 16;
    let random = cur;
    pieces.push((random, &p.random));
    let string = |cur: &mut u64, s: &[u8]| -> u64 {
        *cur -= s.len() as u64 + 1;
        *cur
    };
    let platform = string(&mut cur, b"x86_64");
    pieces.push((platform, b"x86_64"));
    let execfn = string(&mut cur, p.execfn);
    pieces.push((execfn, p.execfn));
    let mut envp_va: Vec<u64> = Vec::with_capacity(p.envp.len());
    for e in p.envp.iter().rev() {
        let va = string(&mut cur, e);
        envp_va.push(va);
        pieces.push((va, e));
    }
    envp_va.reverse();
    let mut argv_va: Vec<u64> = Vec::with_capacity(p.argv.len());
    for a in p.argv.iter().rev() {
        let va = string(&mut cur, a);
        argv_va.push(va);
        pieces.push((va, a));
    }
    argv_va.reverse();
    cur &= !15;
    let auxv: [(u64, u64); 19] = [
        (AT_PHDR, p.phdr),
        (AT_PHENT, super::elf::PHENT_SIZE),
        (AT_PHNUM, p.phnum),
        (AT_PAGESZ, PAGE_SIZE),
        (AT_BASE, p.base),
        (AT_FLAGS, 0),
        (AT_ENTRY, p.entry),
        (AT_UID, u64::from(p.ids[0])),
        (AT_EUID, u64::from(p.ids[1])),
        (AT_GID, u64::from(p.ids[2])),
        (AT_EGID, u64::from(p.ids[3])),
        (AT_HWCAP, p.hwcap),
        (AT_CLKTCK, crate::linux::cputime::CLK_TCK),
        (AT_SECURE, 0),
        (AT_RANDOM, random),
        (AT_HWCAP2, 0),
        (AT_MINSIGSTKSZ, p.minsigstksz),
        (AT_EXECFN, execfn),
        (AT_PLATFORM, platform),
    ];
    let mut words: Vec<u64> = Vec::new();
    words.push(p.argv.len() as u64);
    words.extend_from_slice(&argv_va);
    words.push(0);
    words.extend_from_slice(&envp_va);
    words.push(0);
    for (k, v) in auxv {
        words.push(k);
        words.push(v);
    }
    if p.sysinfo_ehdr != 0 {
        words.extend_from_slice(&[AT_SYSINFO_EHDR, p.sysinfo_ehdr]);
    }
    words.extend_from_slice(&[AT_NULL, 0]);
    let sp = cur
        .checked_sub(words.len() as u64 * 8)
        .ok_or(Errno::E2BIG)?
        & !15;
    if sp < bottom {
        return Err(Errno::E2BIG);
    }
    let len = (top - sp) as usize;
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len).map_err(|_| Errno::ENOMEM)?;
    bytes.resize(len, 0);
    for (i, w) in words.iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    for (va, s) in pieces {
        let o = (va - sp) as usize;
        bytes[o..o + s.len()].copy_from_slice(s);
    }
    Ok(Stack { sp, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: u64 = 0x3ff0_0000_0000;
    const BOTTOM: u64 = TOP - (8 << 20) + PAGE_SIZE;

    fn strs(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn params<'a>(argv: &'a [Vec<u8>], envp: &'a [Vec<u8>]) -> Params<'a> {
        Params {
            argv,
            envp,
            execfn: b"/bin/prog",
            random: *b"0123456789abcdef",
            base: 0,
            entry: 0x40_1000,
            phdr: 0x40_0040,
            phnum: 7,
            hwcap: 0x178b_fbff,
            sysinfo_ehdr: 0x3ff0_0010_1000,
            ids: [0; 4],
            minsigstksz: 3648,
        }
    }

    /// What a program finds: argv, envp, auxv.
    type Found = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<(u64, u64)>);

    /// Reads a built stack back as a program's start-up code does.
    struct Reader<'a> {
        st: &'a Stack,
    }

    impl Reader<'_> {
        fn word(&self, va: u64) -> u64 {
            let o = (va - self.st.sp) as usize;
            u64::from_le_bytes(self.st.bytes[o..o + 8].try_into().unwrap())
        }

        fn cstr(&self, va: u64) -> Vec<u8> {
            assert!(va >= self.st.sp && va < TOP, "{va:#x} outside the stack");
            let o = (va - self.st.sp) as usize;
            let n = self.st.bytes[o..].iter().position(|&b| b == 0).unwrap();
            self.st.bytes[o..o + n].to_vec()
        }

        /// (argv, envp, auxv) as a program finds them from `sp`.
        fn read(&self) -> Found {
            let mut at = self.st.sp;
            let argc = self.word(at);
            at += 8;
            let argv = (0..argc)
                .map(|i| self.cstr(self.word(at + 8 * i)))
                .collect();
            at += 8 * argc;
            assert_eq!(self.word(at), 0, "argv ends with a null pointer");
            at += 8;
            let mut envp = Vec::new();
            while self.word(at) != 0 {
                envp.push(self.cstr(self.word(at)));
                at += 8;
            }
            at += 8;
            let mut auxv = Vec::new();
            loop {
                let (k, v) = (self.word(at), self.word(at + 8));
                at += 16;
                if k == AT_NULL {
                    break;
                }
                auxv.push((k, v));
            }
            (argv, envp, auxv)
        }
    }

    #[test]
    fn auxv_keys_match_the_host_linux() {
        let keys = [
            (AT_NULL, libc::AT_NULL),
            (AT_PHDR, libc::AT_PHDR),
            (AT_PHENT, libc::AT_PHENT),
            (AT_PHNUM, libc::AT_PHNUM),
            (AT_PAGESZ, libc::AT_PAGESZ),
            (AT_BASE, libc::AT_BASE),
            (AT_FLAGS, libc::AT_FLAGS),
            (AT_ENTRY, libc::AT_ENTRY),
            (AT_UID, libc::AT_UID),
            (AT_EUID, libc::AT_EUID),
            (AT_GID, libc::AT_GID),
            (AT_EGID, libc::AT_EGID),
            (AT_PLATFORM, libc::AT_PLATFORM),
            (AT_HWCAP, libc::AT_HWCAP),
            (AT_CLKTCK, libc::AT_CLKTCK),
            (AT_SECURE, libc::AT_SECURE),
            (AT_RANDOM, libc::AT_RANDOM),
            (AT_HWCAP2, libc::AT_HWCAP2),
            (AT_EXECFN, libc::AT_EXECFN),
            (AT_MINSIGSTKSZ, 51),
            (AT_SYSINFO_EHDR, libc::AT_SYSINFO_EHDR),
        ];
        for (ours, linux) in keys {
            assert_eq!(ours, linux);
        }
    }

    #[test]
    fn the_program_finds_argv_envp_and_auxv() {
        let argv = strs(&["prog", "-x", "", "last arg"]);
        let envp = strs(&["HOME=/", "PATH=/bin"]);
        let p = params(&argv, &envp);
        let st = build(TOP, BOTTOM, &p).unwrap();
        assert_eq!(st.sp % 16, 0, "the ABI's alignment at the entry point");
        assert_eq!(st.sp + st.bytes.len() as u64, TOP);
        assert_eq!(
            &st.bytes[st.bytes.len() - 16..],
            &[0; 16],
            "16 bytes left at the top"
        );
        let r = Reader { st: &st };
        let (a, e, aux) = r.read();
        assert_eq!(a, argv);
        assert_eq!(e, envp);
        let get = |k: u64| aux.iter().find(|&&(key, _)| key == k).map(|&(_, v)| v);
        assert_eq!(
            aux.iter().filter(|&&(k, _)| k == AT_RANDOM).count(),
            1,
            "keys once"
        );
        assert_eq!(get(AT_PHDR), Some(0x40_0040));
        assert_eq!(get(AT_PHENT), Some(56));
        assert_eq!(get(AT_PHNUM), Some(7));
        assert_eq!(get(AT_PAGESZ), Some(4096));
        assert_eq!(get(AT_ENTRY), Some(0x40_1000));
        assert_eq!(get(AT_HWCAP), Some(0x178b_fbff));
        assert_eq!(get(AT_SYSINFO_EHDR), Some(0x3ff0_0010_1000));
        assert_eq!(get(AT_CLKTCK), Some(100));
        assert_eq!(get(AT_SECURE), Some(0));
        assert_eq!((get(AT_UID), get(AT_EUID)), (Some(0), Some(0)));
        // AT_RANDOM: the 16 bytes given.
        let rnd = get(AT_RANDOM).unwrap();
        let o = (rnd - st.sp) as usize;
        assert_eq!(&st.bytes[o..o + 16], b"0123456789abcdef");
        assert_eq!(r.cstr(get(AT_EXECFN).unwrap()), b"/bin/prog");
        assert_eq!(r.cstr(get(AT_PLATFORM).unwrap()), b"x86_64");
        // The strings lie above the pointer block and below the random bytes.
        let words_end = st.sp + 8 * (1 + 5 + 3 + 2 * (aux.len() as u64 + 1));
        for s in e.iter().chain(&a) {
            assert!(!s.contains(&0));
        }
        assert!(get(AT_PLATFORM).unwrap() >= words_end);
        assert!(get(AT_EXECFN).unwrap() + 10 <= rnd);
    }

    #[test]
    fn empty_argv_and_envp() {
        let st = build(TOP, BOTTOM, &params(&[], &[])).unwrap();
        let (a, e, aux) = Reader { st: &st }.read();
        assert!(a.is_empty() && e.is_empty());
        assert_eq!(aux.len(), 20);
        assert!(aux.contains(&(AT_MINSIGSTKSZ, 3648)));
    }

    #[test]
    fn alignment_holds_for_every_string_length() {
        for n in 0..40 {
            let argv = vec![vec![b'a'; n]];
            let envp = vec![vec![b'b'; 40 - n]; n % 3];
            let st = build(TOP, BOTTOM, &params(&argv, &envp)).unwrap();
            assert_eq!(st.sp % 16, 0);
            let (a, e, _) = Reader { st: &st }.read();
            assert_eq!((a, e), (argv, envp));
        }
    }

    #[test]
    fn too_much_is_e2big() {
        // The strings alone fit the limit; with their pointers (as Linux counts) they do not.
        let n = MAX_ARGS / 9;
        let argv = vec![b"1234567".to_vec(); n];
        assert!(n * 8 <= MAX_ARGS);
        assert_eq!(
            build(TOP, BOTTOM, &params(&argv, &[])).err(),
            Some(Errno::E2BIG)
        );
        let big = vec![vec![b'x'; MAX_ARGS]];
        assert_eq!(
            build(TOP, BOTTOM, &params(&big, &[])).err(),
            Some(Errno::E2BIG)
        );
        // Within the limit but below the stack's bottom.
        let argv = strs(&["prog"]);
        assert_eq!(
            build(TOP, TOP - 64, &params(&argv, &[])).err(),
            Some(Errno::E2BIG)
        );
        // Just under the limit works.
        let fits = vec![vec![b'y'; MAX_ARGS - 64]];
        assert!(build(TOP, BOTTOM, &params(&fits, &[])).is_ok());
    }
}
