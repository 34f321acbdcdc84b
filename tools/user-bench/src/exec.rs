//! `user.fork_exec_wait`: `fork`; the child `execve`s this program again (its absolute
//! `argv[0]`, else `/proc/self/exe`)
//! with [`EXIT_AT_ONCE`], which makes it exit 0 before anything else; the parent `waitpid`s
//! it. What starting a static program costs: a new address space, loading the image (here
//! ≈5 MiB of static Rust), the C library's and Rust's start-up and the exit.

use std::ffi::CString;

use crate::{errno, now_ns, reap};

/// The first argument that makes the program exit 0 at once (a child of this figure).
pub(crate) const EXIT_AT_ONCE: &str = "--exit-at-once";

/// The program, as the child execs it when it was not started by an absolute path.
const SELF: &str = "/proc/self/exe";

/// The path the child execs: `argv[0]` when it is absolute (a peer's init — User-Mode
/// Linux's, for one — runs before anything mounts `/proc`), else [`SELF`].
fn self_path() -> String {
    std::env::args()
        .next()
        .filter(|a| a.starts_with('/'))
        .unwrap_or_else(|| SELF.to_owned())
}

/// One fork + exec + exit + wait, in ns. A child whose exec fails exits 127, which the
/// parent reports as an error naming the path.
pub(crate) fn fork_exec_sample() -> Result<f64, String> {
    let exe = self_path();
    let path = CString::new(exe.as_str()).map_err(|_| "bad path".to_owned())?;
    let arg0 = CString::new("pvmux-user-bench").map_err(|_| "bad argument".to_owned())?;
    let arg1 = CString::new(EXIT_AT_ONCE).map_err(|_| "bad argument".to_owned())?;
    let argv = [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    let t0 = now_ns();
    // SAFETY: this program is single-threaded; the child only calls `execve` and `_exit`
    // with pointers prepared before the fork.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(errno("fork")),
        0 => {
            // SAFETY: NUL-terminated strings and NULL-terminated arrays that live until the
            // exec; `_exit` if it fails (the parent then sees status 127).
            unsafe {
                libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
                libc::_exit(127)
            }
        }
        pid => {
            reap(pid).map_err(|e| format!("{e} (the child's exec of {exe})"))?;
            Ok((now_ns() - t0) as f64)
        }
    }
}
