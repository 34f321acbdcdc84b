//! `fsdemo [DIR]`: exercises `std::fs` under DIR (default `/tmp`): creates `DIR/fsdemo`,
//! writes, reads, appends, seeks, renames, inspects metadata, lists directories (sorted),
//! checks error kinds and removes everything again. The transcript on stdout names paths
//! relative to DIR only, so it is identical wherever it runs. Exits 0 when every step
//! succeeded, 1 at the first failure (after printing it).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let base = std::env::args().nth(1).unwrap_or_else(|| "/tmp".to_owned());
    let root = Path::new(&base).join("fsdemo");
    match run(&root) {
        Ok(()) => {
            println!("fsdemo: done");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("fsdemo: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Lists `dir` sorted by name, one `name kind len` entry per line (len only for files).
fn list(root: &Path, rel: &str) -> io::Result<()> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let desc = if meta.is_dir() {
            "dir".to_owned()
        } else if meta.is_file() {
            format!("file {}", meta.len())
        } else {
            "other".to_owned()
        };
        entries.push(format!("{name} {desc}"));
    }
    entries.sort();
    println!("ls {rel}: {} entries", entries.len());
    for e in entries {
        println!("  {e}");
    }
    Ok(())
}

/// What an operation that must fail returned: its error kind.
fn expect_err<T>(what: &str, r: io::Result<T>) -> io::Result<()> {
    match r {
        Ok(_) => Err(io::Error::other(format!("{what} unexpectedly succeeded"))),
        Err(e) => {
            println!("{what}: error {:?}", e.kind());
            Ok(())
        }
    }
}

fn run(root: &Path) -> io::Result<()> {
    if root.exists() {
        fs::remove_dir_all(root)?;
    }
    fs::create_dir(root)?;
    fs::create_dir_all(root.join("a/b/c"))?;
    println!("mkdir fsdemo, fsdemo/a/b/c");

    fs::write(root.join("a/greeting.txt"), "hello, fs\n")?;
    let text = fs::read_to_string(root.join("a/greeting.txt"))?;
    println!("write+read greeting.txt: {text:?}");

    let mut f = OpenOptions::new()
        .append(true)
        .open(root.join("a/greeting.txt"))?;
    f.write_all(b"second line\n")?;
    drop(f);
    let text = fs::read_to_string(root.join("a/greeting.txt"))?;
    println!("append greeting.txt: {text:?}");

    // A larger file written in pieces, then read back with seeks.
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut f = File::create(root.join("a/b/big.bin"))?;
    for chunk in big.chunks(4096) {
        f.write_all(chunk)?;
    }
    f.sync_all()?;
    drop(f);
    let mut f = File::open(root.join("a/b/big.bin"))?;
    let mut back = Vec::new();
    f.read_to_end(&mut back)?;
    let mut middle = [0u8; 8];
    f.seek(SeekFrom::Start(50_000))?;
    f.read_exact(&mut middle)?;
    let end = f.seek(SeekFrom::End(0))?;
    println!(
        "big.bin: len {} identical {} bytes@50000 {:?} end {end}",
        back.len(),
        back == big,
        middle
    );
    if back != big || middle[..] != big[50_000..50_008] {
        return Err(io::Error::other("big.bin read back differs"));
    }

    // Overwrite in place and truncate.
    let mut f = OpenOptions::new()
        .write(true)
        .open(root.join("a/greeting.txt"))?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(b"HELLO")?;
    f.set_len(9)?;
    drop(f);
    println!(
        "overwrite+truncate greeting.txt: {:?}",
        fs::read_to_string(root.join("a/greeting.txt"))?
    );

    fs::rename(root.join("a/greeting.txt"), root.join("a/b/c/moved.txt"))?;
    println!(
        "rename to a/b/c/moved.txt: old exists {}, new exists {}",
        root.join("a/greeting.txt").exists(),
        root.join("a/b/c/moved.txt").exists()
    );
    fs::rename(root.join("a/b/c"), root.join("a/c2"))?;
    println!("rename dir a/b/c to a/c2");

    let meta = fs::metadata(root.join("a/c2/moved.txt"))?;
    println!(
        "metadata moved.txt: file {} dir {} len {} readonly {}",
        meta.is_file(),
        meta.is_dir(),
        meta.len(),
        meta.permissions().readonly()
    );
    let meta = fs::metadata(root.join("a"))?;
    println!("metadata a: file {} dir {}", meta.is_file(), meta.is_dir());

    for name in ["zeta", "alpha", "mid", "Beta"] {
        fs::write(root.join(name), name.repeat(3))?;
    }
    list(root, ".")?;
    list(root, "a")?;
    list(root, "a/b")?;

    expect_err("read missing", fs::read(root.join("missing.txt")))?;
    expect_err("mkdir existing", fs::create_dir(root.join("a")))?;
    expect_err("rmdir non-empty", fs::remove_dir(root.join("a")))?;
    expect_err(
        "create_new existing",
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(root.join("zeta")),
    )?;

    fs::remove_file(root.join("zeta"))?;
    println!("remove zeta: exists {}", root.join("zeta").exists());
    fs::remove_dir_all(root.join("a"))?;
    list(root, ".")?;
    fs::remove_dir_all(root)?;
    println!("remove fsdemo: exists {}", root.exists());
    Ok(())
}
