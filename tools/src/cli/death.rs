//! The line `pvmux run` prints on stderr when the program it started was killed: the guest
//! kernel's own log (which says the same, Linux-style) is hidden unless `--log debug`.

use pvmux_host::{DeathCause, ProgramDeath};

use super::size::format_size;

/// `pvmux: /bin/prog (pid 1) killed by SIGSEGV: segfault at 0x0 ip ... sp ... error 6`, or
/// for memory `pvmux: /bin/prog (pid 1) killed: out of memory (it had 250 MiB resident;
/// guest memory 256 MiB, try a larger --mem)`. `None` for the deaths a shell does not
/// report either (^C's SIGINT, SIGPIPE): a script interrupted by the user should not spew.
pub(crate) fn killed_line(death: &ProgramDeath, guest_mem: u64) -> Option<String> {
    if death.is_quiet() {
        return None;
    }
    let who = format!("pvmux: {} (pid {})", death.program, death.pid);
    Some(match death.cause {
        DeathCause::OutOfMemory { anon_rss_kib, .. } => format!(
            "{who} killed: out of memory (it had {} resident; guest memory {}, try a larger \
             --mem)",
            format_size(anon_rss_kib.next_multiple_of(1024) << 10),
            format_size(guest_mem)
        ),
        _ => format!("{who} {death}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvmux_host::{Sender, Signal};

    fn death(signal: u32, cause: DeathCause) -> ProgramDeath {
        ProgramDeath {
            code: 128 + signal as i32,
            pid: 1,
            program: "/bin/prog".into(),
            signal: Signal(signal),
            cause,
        }
    }

    #[test]
    fn lines() {
        let oom = death(
            9,
            DeathCause::OutOfMemory {
                total_vm_kib: 300 << 10,
                anon_rss_kib: (250 << 10) - 3,
                shmem_rss_kib: 0,
            },
        );
        assert_eq!(
            killed_line(&oom, 256 << 20).as_deref(),
            Some(
                "pvmux: /bin/prog (pid 1) killed: out of memory (it had 250 MiB resident; \
                 guest memory 256 MiB, try a larger --mem)"
            )
        );
        let term = death(
            15,
            DeathCause::Sent {
                sender: Sender::Process(4),
            },
        );
        assert_eq!(
            killed_line(&term, 256 << 20).as_deref(),
            Some("pvmux: /bin/prog (pid 1) killed by SIGTERM (sent by pid 4)")
        );
        for quiet in [2, 13] {
            assert_eq!(
                killed_line(
                    &death(
                        quiet,
                        DeathCause::Sent {
                            sender: Sender::Kernel
                        }
                    ),
                    1 << 30
                ),
                None
            );
        }
    }
}
