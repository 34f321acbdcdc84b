//! `pvmux-trusted.user.*`: the `*.user.*` workload ([`super::user`]) as init of a pvmux
//! guest in the trusted in-process mode (`pvmux run --user-isolation none`, boot command
//! `USER_ISOLATION_NONE`), in the same run as the isolated `pvmux.user.*` figures and the
//! peers, so the two modes are compared on the same code under the same load.

use pvmux_hypercalls::bootargs::Command;

use super::user::Peer;

/// The prefix of the trusted mode's figures.
pub const PREFIX: &str = "pvmux-trusted";

/// The boot commands a pvmux `peer` adds to the workload's: the trusted mode's for
/// [`Peer::PvmuxTrusted`], none otherwise.
pub fn commands(peer: Peer) -> Vec<Command<'static>> {
    match peer {
        Peer::PvmuxTrusted => vec![Command::UserIsolationNone],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_trusted_peer_runs_in_process() {
        let args = |p| {
            pvmux_hypercalls::bootargs::BootArgsBuf::new(&Default::default(), commands(p), ["/w"])
                .unwrap()
        };
        assert!(args(Peer::PvmuxTrusted).args().user_isolation_none());
        assert!(!args(Peer::Pvmux).args().user_isolation_none());
        assert_eq!(
            super::super::user::split("pvmux-trusted.user.page_fault"),
            Some((Peer::PvmuxTrusted, "page_fault"))
        );
    }
}
