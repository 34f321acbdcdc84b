//! A tiny hand-assembled static-pie ELF for unit tests of the kernel image parser and the
//! domain builder.

use object::elf;

/// Knobs for [`TestElf::build`]; the default is a valid pvmux kernel.
#[derive(Clone, Debug)]
pub(crate) struct TestElf {
    pub(crate) abi_version: u32,
    pub(crate) abi_section: bool,
    pub(crate) e_type: u16,
    pub(crate) machine: u16,
    pub(crate) reloc_type: u32,
    pub(crate) reloc_offset: u64,
    pub(crate) data_vaddr: u64,
    pub(crate) entry: u64,
    pub(crate) bss: u64,
}

impl Default for TestElf {
    fn default() -> Self {
        Self {
            abi_version: pvmux_hypercalls::ABI_VERSION,
            abi_section: true,
            e_type: elf::ET_DYN,
            machine: elf::EM_X86_64,
            reloc_type: elf::R_X86_64_RELATIVE,
            reloc_offset: 0x20c0,
            data_vaddr: 0x2000,
            entry: 0x1000,
            bss: 0x3000,
        }
    }
}

fn put(buf: &mut Vec<u8>, off: usize, bytes: &[u8]) {
    if buf.len() < off + bytes.len() {
        buf.resize(off + bytes.len(), 0);
    }
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}

fn phdr(p_type: u32, flags: u32, off: u64, vaddr: u64, filesz: u64, memsz: u64) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(p_type.to_le_bytes());
    v.extend(flags.to_le_bytes());
    for x in [off, vaddr, vaddr, filesz, memsz, 0x1000] {
        v.extend(x.to_le_bytes());
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn shdr(name: u32, ty: u32, off: u64, size: u64, link: u32, info: u32, entsize: u64) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(name.to_le_bytes());
    v.extend(ty.to_le_bytes());
    for x in [0u64, 0, off, size] {
        v.extend(x.to_le_bytes());
    }
    v.extend(link.to_le_bytes());
    v.extend(info.to_le_bytes());
    v.extend(8u64.to_le_bytes());
    v.extend(entsize.to_le_bytes());
    v
}

impl TestElf {
    /// Text: 16 bytes of `int3` at 0x1000 (`_start`, size 8; `main`, size 8).
    /// Data: vaddr `data_vaddr`, file 0x2000, 0x100 bytes + `bss`: dynamic table at +0,
    /// one RELATIVE (target `reloc_offset`, addend 0x1008) and one NONE relocation at +0x80.
    pub(crate) fn build(&self) -> Vec<u8> {
        let mut b = vec![0u8; 0x3000];
        // ELF header.
        put(&mut b, 0, b"\x7fELF\x02\x01\x01");
        put(&mut b, 16, &self.e_type.to_le_bytes());
        put(&mut b, 18, &self.machine.to_le_bytes());
        put(&mut b, 20, &1u32.to_le_bytes());
        put(&mut b, 24, &self.entry.to_le_bytes());
        put(&mut b, 32, &64u64.to_le_bytes()); // e_phoff
        put(&mut b, 40, &0x3100u64.to_le_bytes()); // e_shoff
        put(&mut b, 52, &64u16.to_le_bytes());
        put(&mut b, 54, &56u16.to_le_bytes());
        put(&mut b, 56, &3u16.to_le_bytes());
        put(&mut b, 58, &64u16.to_le_bytes());
        put(&mut b, 60, &5u16.to_le_bytes());
        put(&mut b, 62, &4u16.to_le_bytes());
        let dv = self.data_vaddr;
        let mut ph = phdr(
            elf::PT_LOAD,
            elf::PF_R | elf::PF_X,
            0x1000,
            0x1000,
            0x10,
            0x10,
        );
        ph.extend(phdr(
            elf::PT_LOAD,
            elf::PF_R | elf::PF_W,
            0x2000,
            dv,
            0x100,
            0x100 + self.bss,
        ));
        ph.extend(phdr(
            elf::PT_DYNAMIC,
            elf::PF_R | elf::PF_W,
            0x2000,
            dv,
            64,
            64,
        ));
        put(&mut b, 64, &ph);
        put(&mut b, 0x1000, &[0xcc; 16]);
        // Dynamic table.
        let mut dynamic = Vec::new();
        for (tag, val) in [
            (elf::DT_RELA, dv + 0x80),
            (elf::DT_RELASZ, 48),
            (elf::DT_RELAENT, 24),
            (elf::DT_NULL, 0),
        ] {
            dynamic.extend(u64::from(tag).to_le_bytes());
            dynamic.extend(val.to_le_bytes());
        }
        put(&mut b, 0x2000, &dynamic);
        let mut rela = Vec::new();
        for x in [self.reloc_offset, u64::from(self.reloc_type), 0x1008] {
            rela.extend(x.to_le_bytes());
        }
        rela.extend([0u8; 24]);
        put(&mut b, 0x2080, &rela);
        // ABI header, symbols, strings.
        let mut abi = Vec::new();
        abi.extend(pvmux_hypercalls::ABI_MAGIC.to_le_bytes());
        abi.extend(self.abi_version.to_le_bytes());
        abi.extend(0u32.to_le_bytes());
        put(&mut b, 0x3000, &abi);
        let mut sym = vec![0u8; 24];
        for (name, addr) in [(1u32, 0x1000u64), (8, 0x1008)] {
            sym.extend(name.to_le_bytes());
            sym.extend([0x12u8, 0]);
            sym.extend(0xfff1u16.to_le_bytes());
            sym.extend(addr.to_le_bytes());
            sym.extend(8u64.to_le_bytes());
        }
        put(&mut b, 0x3010, &sym);
        let strtab = b"\0_start\0_ZN12pvmux_kernel4main17h0123456789abcdefE\0";
        put(&mut b, 0x3060, strtab);
        let abi_name: &[u8] = if self.abi_section {
            b".pvmux_abi"
        } else {
            b".pvmux_xyz"
        };
        let mut shstr = b"\0".to_vec();
        shstr.extend(abi_name);
        shstr.extend(b"\0.symtab\0.strtab\0.shstrtab\0");
        put(&mut b, 0x30a0, &shstr);
        let mut sh = vec![0u8; 64];
        sh.extend(shdr(1, elf::SHT_PROGBITS, 0x3000, 16, 0, 0, 0));
        sh.extend(shdr(12, elf::SHT_SYMTAB, 0x3010, 72, 3, 1, 24));
        sh.extend(shdr(
            20,
            elf::SHT_STRTAB,
            0x3060,
            strtab.len() as u64,
            0,
            0,
            0,
        ));
        sh.extend(shdr(
            28,
            elf::SHT_STRTAB,
            0x30a0,
            shstr.len() as u64,
            0,
            0,
            0,
        ));
        put(&mut b, 0x3100, &sh);
        b
    }
}
