//! Runs every peer with the quick plan and prints its median (`pvmux bench` does this and
//! more; this is for working on the peers themselves).

use pvmux_bench_peers::{Placement, Plan, Samples};

fn show(name: &str, r: &Result<Samples, pvmux_bench_peers::PeerError>) {
    match r {
        Ok(s) => {
            let mut v = s.clone();
            v.sort_by(f64::total_cmp);
            println!(
                "{name:32} median {:>10.1} ns  ({} samples)",
                v[v.len() / 2],
                v.len()
            );
        }
        Err(e) => println!("{name:32} unavailable: {e}"),
    }
}

fn main() {
    let plan = Plan::QUICK;
    show("native.syscall.getppid", &pvmux_bench_peers::getppid(&plan));
    show(
        "native.seccomp_trap",
        &pvmux_bench_peers::seccomp_trap(&plan),
    );
    show(
        "native.ptrace_sysemu",
        &pvmux_bench_peers::ptrace_sysemu(&plan),
    );
    for (name, p) in [
        ("native.futex_pingpong.same_core", Placement::SameCore),
        ("native.futex_pingpong.cross_core", Placement::CrossCore),
    ] {
        show(name, &pvmux_bench_peers::futex_pingpong(&plan, p));
    }
    let k = pvmux_bench_peers::kvm(&plan);
    println!("kvm: {}", k.detail);
    show("kvm.exit_to_user", &k.exit_to_user);
    show("kvm.exit_in_kernel", &k.exit_in_kernel);
}
