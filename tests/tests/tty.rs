//! `pvmux run` on a terminal: the host terminal goes raw while the program runs (and is
//! restored), and the guest kernel is the line discipline (echo, line editing, `^C`).
//!
//! The CLI runs under a pseudo-terminal made by util-linux `script` (ignored without it), with
//! the workspace's `toolbox cat` as the guest program, and with a busybox-static shell
//! (ignored without busybox).

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long any one expected output may take.
const STEP: Duration = Duration::from_secs(8);

/// The busybox prompt of the guest's root shell.
const PROMPT: &[u8] = b"/ # ";

/// The host's busybox (a static build, Debian's busybox-static).
const BUSYBOX: &str = "/bin/busybox";

/// `toolbox cat PROMPT`: the workspace test program that copies its input to its output.
fn toolbox_cat() -> String {
    format!(
        "{}/toolbox cat {}",
        env!("PVMUX_PROG_DIR"),
        String::from_utf8_lossy(CAT_PROMPT)
    )
}

/// What `toolbox_cat` prints before it reads.
const CAT_PROMPT: &[u8] = b"cat-ready:";

/// Output collected so far, and a signal for each chunk (or the end).
type Output = Arc<(Mutex<(Vec<u8>, bool)>, Condvar)>;

/// `pvmux run --rootfs / -- PROGRAM ARGS...` on a new pseudo-terminal, between two `stty -g`.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Output,
}

impl Session {
    /// Starts `program` (words separated by spaces, none quoted) on the terminal.
    fn start(program: &str) -> Self {
        let pvmux = env!("CARGO_BIN_EXE_pvmux-cli");
        let cmd = format!(
            "echo \"BEFORE=$(stty -g)\"; '{pvmux}' run --rootfs / -- {program}; \
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
#[cfg_attr(not(have_script), ignore = "needs script(1): apt-get install bsdutils")]
fn canonical_line_editing_and_end_of_file() {
    let mut s = Session::start(&toolbox_cat());
    let at = s.wait_for(0, CAT_PROMPT);
    // The kernel echoes the line (once), with line editing, and delivers it on Enter.
    s.send(b"typed linx\x7fe\r");
    let end = s.wait_for(at, b"typed line\r\n");
    let out = s.output();
    let part = &out[at..end];
    assert_eq!(
        count(part, b"typed lin"),
        2,
        "echo once, output once:\n{}",
        String::from_utf8_lossy(part)
    );
    assert_eq!(count(part, b"x\x08 \x08e"), 1, "erase echoed as \\b \\b");
    // ^W erases a word, ^U the line; ^D on an empty line is end of file.
    s.send(b"one two\x17three\r");
    let end = s.wait_for(end, b"one three\r\n");
    s.send(b"gone\x15kept\r");
    s.wait_for(end, b"kept\r\nkept\r\n");
    s.send(b"\x04");
    let (status, out) = s.finish();
    assert_eq!(status, 0, "{}", String::from_utf8_lossy(&out));
}

#[test]
#[cfg_attr(not(have_script), ignore = "needs script(1): apt-get install bsdutils")]
fn interrupt_ends_the_program_with_130() {
    let mut s = Session::start(&toolbox_cat());
    let at = s.wait_for(0, CAT_PROMPT);
    s.send(b"first\r");
    s.wait_for(at, b"first\r\nfirst\r\n");
    // ^C: SIGINT for the foreground process group, which ends the program (128 + 2).
    s.send(b"\x03");
    let (status, out) = s.finish();
    assert_eq!(status, 130, "{}", String::from_utf8_lossy(&out));
}

#[test]
#[cfg_attr(
    not(all(have_busybox, have_script)),
    ignore = "needs /bin/busybox and script(1): apt-get install busybox-static bsdutils"
)]
fn shell_line_is_echoed_once() {
    let mut s = Session::start(&format!("{BUSYBOX} sh"));
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
#[cfg_attr(
    not(all(have_busybox, have_script)),
    ignore = "needs /bin/busybox and script(1): apt-get install busybox-static bsdutils"
)]
fn shell_canonical_read_and_interrupt() {
    let mut s = Session::start(&format!("{BUSYBOX} sh"));
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
    // ^C interrupts a program the shell runs; the shell stays usable. The job prints S5
    // itself (the shell puts it in the foreground before it runs), then becomes the sleep:
    // once S5 is there, ^C reaches the job, with no pause to guess how long it needs.
    let t0 = Instant::now();
    s.send(b"/bin/busybox sh -c 'echo S$((2+3)); exec /bin/busybox sleep 10'\r");
    let at = s.wait_for(at, b"S5\r\n");
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
