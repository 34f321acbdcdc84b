//! `--only PATTERN`: selecting benchmarks by substring or glob.

/// Whether `name` is selected by `pattern`: a glob if the pattern contains `*` or `?` (`*`
/// matches any run of characters, `?` one character; the whole name must match), otherwise a
/// substring.
pub fn matches(pattern: &str, name: &str) -> bool {
    if pattern.contains(['*', '?']) {
        glob(pattern.as_bytes(), name.as_bytes())
    } else {
        name.contains(pattern)
    }
}

/// Iterative glob match with single-star backtracking.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn substring_and_glob() {
        assert!(matches("native.*", "native.syscall.getppid"));
        assert!(!matches("native.*", "pvmux.hypercall.spin"));
        assert!(matches("hypercall", "pvmux.hypercall.block"));
        assert!(matches("*.spin", "pvmux.hypercall.spin"));
        assert!(!matches("*.spin", "pvmux.hypercall.spinx"));
        assert!(matches("pvmux.*.page", "pvmux.shadow_fill.page"));
        assert!(!matches(
            "pvmux.*.page",
            "pvmux.shadow_fill.page_nofaultaround"
        ));
        assert!(matches("*", "kvm.exit_to_user"));
        assert!(matches("kvm.exit_?o_user", "kvm.exit_to_user"));
        assert!(matches("*futex*cross*", "native.futex_pingpong.cross_core"));
        assert!(!matches("exit", "native.seccomp_trap"));
    }
}
