//! Launching and waiting many tenants must not grow the host's fds, threads or children.
//! (Its own test binary, so no other test's fds disturb the count.)

use std::sync::Arc;

use pvmux_host::{Host, KernelImage, TenantConfig, TenantOutcome};
use pvmux_hypercalls::Hypercall;

#[path = "../src/test_elf.rs"]
#[allow(dead_code, unreachable_pub)]
mod test_elf;
#[path = "../src/test_stub.rs"]
#[allow(dead_code, unreachable_pub)]
mod test_stub;
use test_stub::Behaviour;

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

fn config(i: usize) -> TenantConfig {
    TenantConfig::new(
        format!("m{i}"),
        Arc::new(KernelImage::parse(test_elf::TestElf::default().build()).unwrap()),
        16 << 20,
        2,
        pvmux_hypercalls::BootArgsBuf::default(),
        Box::new(std::io::sink()),
    )
}

#[test]
fn many_tenants_leak_nothing() {
    // Each guest writes to the console and shuts down with code 0.
    let host = Host::new(&test_stub::stub(Behaviour::Hypercalls {
        then: Hypercall::Shutdown,
        arg: 0x100,
    }))
    .unwrap();
    let batch = || {
        let ts: Vec<_> = (0..8).map(|i| host.launch(config(i)).unwrap()).collect();
        for t in ts {
            assert_eq!(t.wait(), TenantOutcome::Exited(0));
        }
    };
    batch();
    let (fds, threads) = (count("/proc/self/fd"), count("/proc/self/task"));
    for _ in 0..5 {
        batch();
    }
    assert_eq!(count("/proc/self/fd"), fds);
    assert_eq!(count("/proc/self/task"), threads);
    // Tenants with user sandboxes: the test stub's second call is SpaceCreate (8 MiB is the
    // pool of a 16 MiB guest); the space (the same stub) dies of SIGBUS and is reaped by the
    // tenant's reaper thread, then the spinning kernel sandbox is killed.
    let spaces = Host::new(&test_stub::stub(Behaviour::Hypercalls {
        then: Hypercall::SpaceCreate,
        arg: 8 << 20,
    }))
    .unwrap();
    let batch = || {
        let ts: Vec<_> = (0..8).map(|i| spaces.launch(config(i)).unwrap()).collect();
        // Time for every space to be spawned, die and be reaped (or to be killed below).
        std::thread::sleep(std::time::Duration::from_millis(50));
        for t in &ts {
            t.kill();
        }
        for t in ts {
            assert!(matches!(t.wait(), TenantOutcome::Crashed(_)));
        }
    };
    batch();
    let (fds, threads) = (count("/proc/self/fd"), count("/proc/self/task"));
    for _ in 0..3 {
        batch();
    }
    assert_eq!(count("/proc/self/fd"), fds, "fds leaked by spaces");
    assert_eq!(
        count("/proc/self/task"),
        threads,
        "threads leaked by spaces"
    );
    // No child is left, reaped or not.
    assert_eq!(
        rustix::process::waitpid(None, rustix::process::WaitOptions::NOHANG).unwrap_err(),
        rustix::io::Errno::CHILD
    );
}
