//! `AF_UNIX` sockets. Not yet implemented: creating one is `EAFNOSUPPORT`.

use alloc::sync::Arc;

use super::{SockType, Socket, SocketPair};
use crate::fs::Errno;

/// `socket(AF_UNIX, ty, protocol)`.
pub(crate) fn create(ty: SockType, protocol: u32) -> Result<Arc<dyn Socket>, Errno> {
    let _ = (ty, protocol);
    Err(Errno::EAFNOSUPPORT)
}

/// `socketpair(AF_UNIX, ty, protocol)`: two connected sockets.
pub(crate) fn pair(ty: SockType, protocol: u32) -> Result<SocketPair, Errno> {
    let _ = (ty, protocol);
    Err(Errno::EOPNOTSUPP)
}
