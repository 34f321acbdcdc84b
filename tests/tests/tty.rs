//! `pvmux run` on a terminal: the host terminal goes raw while the program runs (and is
//! restored), and the guest kernel is the line discipline (echo, line editing, `^C`).
//!
//! The CLI runs under a pseudo-terminal made by util-linux `script`, with busybox-static as the
//! guest program; the test is skipped when either is missing.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long any one expected output may take.
const STEP: Duration = Duration::from_secs(8);

/// The busybox prompt of the guest's root shell.
const PROMPT: &[u8] = b"/ # ";

/// A busybox-static binary on the host and `script`, if installed.
fn tools() -> Option<&'static str> {
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .any(|p| Path::new(p).exists());
    let bb = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    match (script, bb) {
        (true, Some(bb)) => Some(bb),
        _ => {
            eprintln!("busybox or script not installed; skipping");
            None
        }
    }
}

/// Output collected so far, and a signal for each chunk (or the end).
type Output = Arc<(Mutex<(Vec<u8>, bool)>, Condvar)>;

/// `pvmux run --rootfs / -- BUSYBOX sh` on a new pseudo-terminal, between two `stty -g`.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Output,
}

impl Session {
    fn start(bb: &str) -> Self {
        let pvmux = env!("CARGO_BIN_EXE_pvmux-cli");
        let cmd = format!(
            "echo \"BEFORE=$(stty -g)\"; '{pvmux}' run --rootfs / -- {bb} sh; \
             echo \"STATUS=$?\"; echo \"AFTER=$(stty -g)\""
        );
        let mut child = Command::new("script")
            .args(["-qfec", &cmd, "/dev/null"])
            .env("SHELL", "/bin/sh")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("script runs");
        let out: Output = Arc::default();
        let mut stdout = child.stdout.take().expect("stdout");
        let sink = Arc::clone(&out);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = stdout.read(&mut buf).unwrap_or(0);
                let (lock, cv) = &*sink;
                let mut st = lock.lock().unwrap();
                if n == 0 {
                    st.1 = true;
                } else {
                    st.0.extend_from_slice(&buf[..n]);
                }
                cv.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Self { child, stdin, out }
    }

    fn output(&self) -> Vec<u8> {
        self.out.0.lock().unwrap().0.clone()
    }

    /// Waits until `pat` appears in the output at or after `from`; returns the offset just
    /// after it.
    fn wait_for(&self, from: usize, pat: &[u8]) -> usize {
        let deadline = Instant::now() + STEP;
        let (lock, cv) = &*self.out;
        let mut st = lock.lock().unwrap();
        loop {
            if let Some(i) = find(&st.0[from.min(st.0.len())..], pat) {
                return from + i + pat.len();
            }
            let now = Instant::now();
            assert!(
                now < deadline && !st.1,
                "no {:?} after offset {from} in output:\n{}",
                String::from_utf8_lossy(pat),
                String::from_utf8_lossy(&st.0)
            );
            st = cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    /// Types `keys` on the terminal.
    fn send(&mut self, keys: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(keys).expect("type");
        stdin.flush().expect("flush");
    }

    /// Waits for the end; returns pvmux's exit status and checks the terminal settings were
    /// restored.
    fn finish(mut self) -> (i32, Vec<u8>) {
        let end = self.wait_for(0, b"AFTER=");
        let end = self.wait_for(end, b"\n");
        drop(self.stdin.take());
        let deadline = Instant::now() + STEP;
        while self.child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "script does not end");
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = self.output();
        let field = |name: &str| -> String {
            let at = find(&out, name.as_bytes()).expect(name) + name.len();
            let line = &out[at..];
            let stop = line.iter().position(|&b| b == b'\r' || b == b'\n');
            String::from_utf8_lossy(&line[..stop.unwrap_or(line.len())]).into_owned()
        };
        let before = field("BEFORE=");
        assert!(!before.is_empty(), "stty -g printed nothing");
        assert_eq!(
            before,
            field("AFTER="),
            "terminal settings restored after pvmux"
        );
        let status = field("STATUS=").parse().expect("status");
        assert!(end <= out.len());
        (status, out)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A failed test: closing the pseudo-terminal hangs up pvmux too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(hay: &[u8], pat: &[u8]) -> Option<usize> {
    hay.windows(pat.len()).position(|w| w == pat)
}

fn count(hay: &[u8], pat: &[u8]) -> usize {
    hay.windows(pat.len()).filter(|w| *w == pat).count()
}

#[test]
fn shell_line_is_echoed_once() {
    let Some(bb) = tools() else { return };
    let mut s = Session::start(bb);
    let at = s.wait_for(0, PROMPT);
    s.send(b"echo hi; exit 3\r");
    let after = s.wait_for(at, b"hi\r\n");
    let (status, out) = s.finish();
    let typed = &out[at..];
    assert_eq!(
        count(typed, b"echo hi; exit 3"),
        1,
        "the command is echoed exactly once:\n{}",
        String::from_utf8_lossy(&out)
    );
    assert!(after > at);
    assert_eq!(status, 3, "{}", String::from_utf8_lossy(&out));
}

#[test]
fn canonical_read_and_interrupt() {
    let Some(bb) = tools() else { return };
    let mut s = Session::start(bb);
    let at = s.wait_for(0, PROMPT);
    // A program reading the terminal in canonical mode: the kernel echoes the line (once),
    // with line editing, and delivers it on Enter. R2Y shows the shell is done with its own
    // line editing (and has put the terminal back in canonical mode).
    s.send(b"echo R$((1+1))Y; /bin/busybox head -n1\r");
    let start = s.wait_for(at, b"R2Y\r\n");
    s.send(b"typed linx\x7fe\r");
    let at = s.wait_for(start, PROMPT);
    let out = s.output();
    let part = &out[start..at];
    assert_eq!(
        count(part, b"typed lin"),
        2,
        "echo once, output once:\n{}",
        String::from_utf8_lossy(part)
    );
    assert_eq!(count(part, b"typed line\r\n"), 1, "head's output");
    assert_eq!(count(part, b"x\x08 \x08e"), 1, "erase echoed as \\b \\b");
    // ^C interrupts a program the shell runs; the shell stays usable.
    let t0 = Instant::now();
    s.send(b"echo S$((2+3)); /bin/busybox sleep 10\r");
    let at = s.wait_for(at, b"S5\r\n");
    std::thread::sleep(Duration::from_millis(300));
    s.send(b"\x03");
    let at = s.wait_for(at, PROMPT);
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "sleep 10 was interrupted"
    );
    s.send(b"echo after$((1+1))\r");
    let at = s.wait_for(at, b"after2\r\n");
    s.wait_for(at, PROMPT);
    s.send(b"exit\r");
    let (status, out) = s.finish();
    assert_eq!(status, 0, "{}", String::from_utf8_lossy(&out));
}
