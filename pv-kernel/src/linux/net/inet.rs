//! `AF_INET` and `AF_INET6` sockets. Not yet implemented: creating one is `EAFNOSUPPORT`.

use alloc::sync::Arc;

use super::{SockType, Socket};
use crate::fs::Errno;

/// `socket(family, ty, protocol)` for `AF_INET`/`AF_INET6`.
pub(crate) fn create(family: u16, ty: SockType, protocol: u32) -> Result<Arc<dyn Socket>, Errno> {
    let _ = (family, ty, protocol);
    Err(Errno::EAFNOSUPPORT)
}
