//! Linux error numbers (x86-64 values) returned by the filesystem operations.
//!
//! Pure code (only `core`).

use core::fmt;

/// A Linux `errno` value. The discriminants are the Linux x86-64 numbers, so a system-call
/// layer returns `-(e as i64)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
#[allow(dead_code)] // the complete Linux set the system-call layer may return
#[allow(clippy::upper_case_acronyms)] // the Linux names, as everyone knows them
pub(crate) enum Errno {
    /// Operation not permitted (e.g. a hard link to a directory).
    EPERM = 1,
    /// No such file or directory.
    ENOENT = 2,
    /// Input/output error.
    EIO = 5,
    /// Bad file descriptor (unknown handle, or wrong access mode).
    EBADF = 9,
    /// Out of memory (kernel data structures).
    ENOMEM = 12,
    /// Device or resource busy (renaming or removing `/`, `.`, `..`).
    EBUSY = 16,
    /// File exists.
    EEXIST = 17,
    /// Not a directory.
    ENOTDIR = 20,
    /// Is a directory.
    EISDIR = 21,
    /// Invalid argument.
    EINVAL = 22,
    /// Too many open files.
    EMFILE = 24,
    /// File too large.
    EFBIG = 27,
    /// No space left on device (file data could not be allocated).
    ENOSPC = 28,
    /// Too many links.
    EMLINK = 31,
    /// Resource deadlock would occur (a lock wait closing a cycle).
    EDEADLK = 35,
    /// File name too long.
    ENAMETOOLONG = 36,
    /// No locks available (the kernel's lock table is full).
    ENOLCK = 37,
    /// Directory not empty.
    ENOTEMPTY = 39,
    /// Too many levels of symbolic links.
    ELOOP = 40,
    /// Value too large for defined data type.
    EOVERFLOW = 75,
    /// No such process.
    ESRCH = 3,
    /// Interrupted system call.
    EINTR = 4,
    /// No such device or address.
    ENXIO = 6,
    /// Block device required.
    ENOTBLK = 15,
    /// Argument list too long.
    E2BIG = 7,
    /// Exec format error.
    ENOEXEC = 8,
    /// Accessing a corrupted shared library (a program interpreter that cannot be loaded).
    ELIBBAD = 80,
    /// No child processes.
    ECHILD = 10,
    /// Resource temporarily unavailable.
    EAGAIN = 11,
    /// Permission denied.
    EACCES = 13,
    /// Bad address.
    EFAULT = 14,
    /// Invalid cross-device link.
    EXDEV = 18,
    /// No such device.
    ENODEV = 19,
    /// Too many open files in system.
    ENFILE = 23,
    /// Inappropriate ioctl for device.
    ENOTTY = 25,
    /// Text file busy.
    ETXTBSY = 26,
    /// Illegal seek.
    ESPIPE = 29,
    /// Read-only file system.
    EROFS = 30,
    /// Broken pipe.
    EPIPE = 32,
    /// Numerical argument out of domain.
    EDOM = 33,
    /// Numerical result out of range.
    ERANGE = 34,
    /// Function not implemented.
    ENOSYS = 38,
    /// Operation not supported.
    ENOTSUP = 95,
    /// Socket operation on non-socket.
    ENOTSOCK = 88,
    /// Address family not supported by protocol.
    EAFNOSUPPORT = 97,
    /// Connection timed out.
    ETIMEDOUT = 110,
    /// Socket type not supported.
    ESOCKTNOSUPPORT = 94,
    /// Destination address required.
    EDESTADDRREQ = 89,
    /// Message too long.
    EMSGSIZE = 90,
    /// Protocol wrong type for socket.
    EPROTOTYPE = 91,
    /// Protocol not available.
    ENOPROTOOPT = 92,
    /// Protocol not supported.
    EPROTONOSUPPORT = 93,
    /// Address already in use.
    EADDRINUSE = 98,
    /// Cannot assign requested address.
    EADDRNOTAVAIL = 99,
    /// Network is down.
    ENETDOWN = 100,
    /// Network is unreachable.
    ENETUNREACH = 101,
    /// Software caused connection abort.
    ECONNABORTED = 103,
    /// Connection reset by peer.
    ECONNRESET = 104,
    /// No buffer space available.
    ENOBUFS = 105,
    /// Transport endpoint is already connected.
    EISCONN = 106,
    /// Transport endpoint is not connected.
    ENOTCONN = 107,
    /// Connection refused.
    ECONNREFUSED = 111,
    /// No route to host.
    EHOSTUNREACH = 113,
    /// Operation already in progress.
    EALREADY = 114,
    /// Operation now in progress.
    EINPROGRESS = 115,
    /// Structure needs cleaning: a filesystem image is corrupted (Linux's `EFSCORRUPTED`).
    EUCLEAN = 117,
    /// No message of the desired type (System V message queues).
    ENOMSG = 42,
    /// Identifier removed (a System V object removed while a caller waited on it).
    EIDRM = 43,
}

impl Errno {
    /// `EOPNOTSUPP`: the same number as [`Errno::ENOTSUP`] on Linux.
    pub(crate) const EOPNOTSUPP: Self = Self::ENOTSUP;

    /// The Linux number.
    pub(crate) const fn code(self) -> i32 {
        self as i32
    }

    /// The symbolic name, e.g. `"ENOENT"`.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::EPERM => "EPERM",
            Self::ENOENT => "ENOENT",
            Self::EIO => "EIO",
            Self::EBADF => "EBADF",
            Self::ENOMEM => "ENOMEM",
            Self::EBUSY => "EBUSY",
            Self::EEXIST => "EEXIST",
            Self::ENOTDIR => "ENOTDIR",
            Self::EISDIR => "EISDIR",
            Self::EINVAL => "EINVAL",
            Self::EMFILE => "EMFILE",
            Self::EFBIG => "EFBIG",
            Self::ENOSPC => "ENOSPC",
            Self::EMLINK => "EMLINK",
            Self::EDEADLK => "EDEADLK",
            Self::ENAMETOOLONG => "ENAMETOOLONG",
            Self::ENOLCK => "ENOLCK",
            Self::ENOTEMPTY => "ENOTEMPTY",
            Self::ELOOP => "ELOOP",
            Self::EOVERFLOW => "EOVERFLOW",
            Self::ESRCH => "ESRCH",
            Self::EINTR => "EINTR",
            Self::ENXIO => "ENXIO",
            Self::ENOTBLK => "ENOTBLK",
            Self::E2BIG => "E2BIG",
            Self::ENOEXEC => "ENOEXEC",
            Self::ELIBBAD => "ELIBBAD",
            Self::ECHILD => "ECHILD",
            Self::EAGAIN => "EAGAIN",
            Self::EACCES => "EACCES",
            Self::EFAULT => "EFAULT",
            Self::EXDEV => "EXDEV",
            Self::ENODEV => "ENODEV",
            Self::ENFILE => "ENFILE",
            Self::ENOTTY => "ENOTTY",
            Self::ETXTBSY => "ETXTBSY",
            Self::ESPIPE => "ESPIPE",
            Self::EROFS => "EROFS",
            Self::EPIPE => "EPIPE",
            Self::EDOM => "EDOM",
            Self::ERANGE => "ERANGE",
            Self::ENOSYS => "ENOSYS",
            Self::ENOTSUP => "ENOTSUP",
            Self::ENOTSOCK => "ENOTSOCK",
            Self::EAFNOSUPPORT => "EAFNOSUPPORT",
            Self::ETIMEDOUT => "ETIMEDOUT",
            Self::ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
            Self::EDESTADDRREQ => "EDESTADDRREQ",
            Self::EMSGSIZE => "EMSGSIZE",
            Self::EPROTOTYPE => "EPROTOTYPE",
            Self::ENOPROTOOPT => "ENOPROTOOPT",
            Self::EPROTONOSUPPORT => "EPROTONOSUPPORT",
            Self::EADDRINUSE => "EADDRINUSE",
            Self::EADDRNOTAVAIL => "EADDRNOTAVAIL",
            Self::ENETDOWN => "ENETDOWN",
            Self::ENETUNREACH => "ENETUNREACH",
            Self::ECONNABORTED => "ECONNABORTED",
            Self::ECONNRESET => "ECONNRESET",
            Self::ENOBUFS => "ENOBUFS",
            Self::EISCONN => "EISCONN",
            Self::ENOTCONN => "ENOTCONN",
            Self::ENOMSG => "ENOMSG",
            Self::EIDRM => "EIDRM",
            Self::ECONNREFUSED => "ECONNREFUSED",
            Self::EHOSTUNREACH => "EHOSTUNREACH",
            Self::EALREADY => "EALREADY",
            Self::EINPROGRESS => "EINPROGRESS",
            Self::EUCLEAN => "EUCLEAN",
        }
    }

    /// The C library's message for it.
    pub(crate) const fn message(self) -> &'static str {
        match self {
            Self::EPERM => "Operation not permitted",
            Self::ENOENT => "No such file or directory",
            Self::EIO => "Input/output error",
            Self::EBADF => "Bad file descriptor",
            Self::ENOMEM => "Cannot allocate memory",
            Self::EBUSY => "Device or resource busy",
            Self::EEXIST => "File exists",
            Self::ENOTDIR => "Not a directory",
            Self::EISDIR => "Is a directory",
            Self::EINVAL => "Invalid argument",
            Self::EMFILE => "Too many open files",
            Self::EFBIG => "File too large",
            Self::ENOSPC => "No space left on device",
            Self::EMLINK => "Too many links",
            Self::EDEADLK => "Resource deadlock avoided",
            Self::ENAMETOOLONG => "File name too long",
            Self::ENOLCK => "No locks available",
            Self::ENOTEMPTY => "Directory not empty",
            Self::ELOOP => "Too many levels of symbolic links",
            Self::EOVERFLOW => "Value too large for defined data type",
            Self::ESRCH => "No such process",
            Self::EINTR => "Interrupted system call",
            Self::ENXIO => "No such device or address",
            Self::ENOTBLK => "Block device required",
            Self::E2BIG => "Argument list too long",
            Self::ENOEXEC => "Exec format error",
            Self::ELIBBAD => "Accessing a corrupted shared library",
            Self::ECHILD => "No child processes",
            Self::EAGAIN => "Resource temporarily unavailable",
            Self::EACCES => "Permission denied",
            Self::EFAULT => "Bad address",
            Self::EXDEV => "Invalid cross-device link",
            Self::ENODEV => "No such device",
            Self::ENFILE => "Too many open files in system",
            Self::ENOTTY => "Inappropriate ioctl for device",
            Self::ETXTBSY => "Text file busy",
            Self::ESPIPE => "Illegal seek",
            Self::EROFS => "Read-only file system",
            Self::EPIPE => "Broken pipe",
            Self::EDOM => "Numerical argument out of domain",
            Self::ERANGE => "Numerical result out of range",
            Self::ENOSYS => "Function not implemented",
            Self::ENOTSUP => "Operation not supported",
            Self::ENOTSOCK => "Socket operation on non-socket",
            Self::EAFNOSUPPORT => "Address family not supported by protocol",
            Self::ETIMEDOUT => "Connection timed out",
            Self::ESOCKTNOSUPPORT => "Socket type not supported",
            Self::EDESTADDRREQ => "Destination address required",
            Self::EMSGSIZE => "Message too long",
            Self::EPROTOTYPE => "Protocol wrong type for socket",
            Self::ENOPROTOOPT => "Protocol not available",
            Self::EPROTONOSUPPORT => "Protocol not supported",
            Self::EADDRINUSE => "Address already in use",
            Self::EADDRNOTAVAIL => "Cannot assign requested address",
            Self::ENETDOWN => "Network is down",
            Self::ENETUNREACH => "Network is unreachable",
            Self::ECONNABORTED => "Software caused connection abort",
            Self::ECONNRESET => "Connection reset by peer",
            Self::ENOBUFS => "No buffer space available",
            Self::EISCONN => "Transport endpoint is already connected",
            Self::ENOTCONN => "Transport endpoint is not connected",
            Self::ECONNREFUSED => "Connection refused",
            Self::EHOSTUNREACH => "No route to host",
            Self::EALREADY => "Operation already in progress",
            Self::EINPROGRESS => "Operation now in progress",
            Self::EUCLEAN => "Structure needs cleaning",
            Self::ENOMSG => "No message of desired type",
            Self::EIDRM => "Identifier removed",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.message())
    }
}

impl From<crate::mm::heap::OutOfMemory> for Errno {
    /// No kernel-heap headroom for an allocation on a program's behalf: `ENOMEM`.
    fn from(_: crate::mm::heap::OutOfMemory) -> Self {
        Self::ENOMEM
    }
}

#[cfg(test)]
mod tests {
    use super::Errno::{self, *};

    /// Every variant.
    const ALL: [Errno; 68] = [
        EUCLEAN,
        ENOMSG,
        EIDRM,
        EPERM,
        ENOENT,
        EIO,
        EBADF,
        ENOMEM,
        EBUSY,
        EEXIST,
        ENOTDIR,
        EISDIR,
        EINVAL,
        EMFILE,
        EFBIG,
        ENOSPC,
        EMLINK,
        EDEADLK,
        ENAMETOOLONG,
        ENOLCK,
        ENOTEMPTY,
        ELOOP,
        EOVERFLOW,
        ESRCH,
        EINTR,
        ENXIO,
        ENOTBLK,
        E2BIG,
        ENOEXEC,
        ELIBBAD,
        ECHILD,
        EAGAIN,
        EACCES,
        EFAULT,
        EXDEV,
        ENODEV,
        ENFILE,
        ENOTTY,
        ETXTBSY,
        ESPIPE,
        EROFS,
        EPIPE,
        EDOM,
        ERANGE,
        ENOSYS,
        ENOTSUP,
        ENOTSOCK,
        EAFNOSUPPORT,
        ETIMEDOUT,
        ESOCKTNOSUPPORT,
        EDESTADDRREQ,
        EMSGSIZE,
        EPROTOTYPE,
        ENOPROTOOPT,
        EPROTONOSUPPORT,
        EADDRINUSE,
        EADDRNOTAVAIL,
        ENETDOWN,
        ENETUNREACH,
        ECONNABORTED,
        ECONNRESET,
        ENOBUFS,
        EISCONN,
        ENOTCONN,
        ECONNREFUSED,
        EHOSTUNREACH,
        EALREADY,
        EINPROGRESS,
    ];

    #[test]
    fn numbers_match_the_host_linux() {
        let linux = [
            (EUCLEAN, libc::EUCLEAN),
            (ENOMSG, libc::ENOMSG),
            (EIDRM, libc::EIDRM),
            (EPERM, libc::EPERM),
            (ENOENT, libc::ENOENT),
            (EIO, libc::EIO),
            (EBADF, libc::EBADF),
            (ENOMEM, libc::ENOMEM),
            (EBUSY, libc::EBUSY),
            (EEXIST, libc::EEXIST),
            (ENOTDIR, libc::ENOTDIR),
            (EISDIR, libc::EISDIR),
            (EINVAL, libc::EINVAL),
            (EMFILE, libc::EMFILE),
            (EFBIG, libc::EFBIG),
            (ENOSPC, libc::ENOSPC),
            (EMLINK, libc::EMLINK),
            (EDEADLK, libc::EDEADLK),
            (ENAMETOOLONG, libc::ENAMETOOLONG),
            (ENOLCK, libc::ENOLCK),
            (ENOTEMPTY, libc::ENOTEMPTY),
            (ELOOP, libc::ELOOP),
            (EOVERFLOW, libc::EOVERFLOW),
            (ESRCH, libc::ESRCH),
            (EINTR, libc::EINTR),
            (ENXIO, libc::ENXIO),
            (ENOTBLK, libc::ENOTBLK),
            (E2BIG, libc::E2BIG),
            (ENOEXEC, libc::ENOEXEC),
            (ELIBBAD, libc::ELIBBAD),
            (ECHILD, libc::ECHILD),
            (EAGAIN, libc::EAGAIN),
            (EACCES, libc::EACCES),
            (EFAULT, libc::EFAULT),
            (EXDEV, libc::EXDEV),
            (ENODEV, libc::ENODEV),
            (ENFILE, libc::ENFILE),
            (ENOTTY, libc::ENOTTY),
            (ETXTBSY, libc::ETXTBSY),
            (ESPIPE, libc::ESPIPE),
            (EROFS, libc::EROFS),
            (EPIPE, libc::EPIPE),
            (EDOM, libc::EDOM),
            (ERANGE, libc::ERANGE),
            (ENOSYS, libc::ENOSYS),
            (ENOTSUP, libc::ENOTSUP),
            (ENOTSOCK, libc::ENOTSOCK),
            (EAFNOSUPPORT, libc::EAFNOSUPPORT),
            (ETIMEDOUT, libc::ETIMEDOUT),
            (ESOCKTNOSUPPORT, libc::ESOCKTNOSUPPORT),
            (EDESTADDRREQ, libc::EDESTADDRREQ),
            (EMSGSIZE, libc::EMSGSIZE),
            (EPROTOTYPE, libc::EPROTOTYPE),
            (ENOPROTOOPT, libc::ENOPROTOOPT),
            (EPROTONOSUPPORT, libc::EPROTONOSUPPORT),
            (EADDRINUSE, libc::EADDRINUSE),
            (EADDRNOTAVAIL, libc::EADDRNOTAVAIL),
            (ENETDOWN, libc::ENETDOWN),
            (ENETUNREACH, libc::ENETUNREACH),
            (ECONNABORTED, libc::ECONNABORTED),
            (ECONNRESET, libc::ECONNRESET),
            (ENOBUFS, libc::ENOBUFS),
            (EISCONN, libc::EISCONN),
            (ENOTCONN, libc::ENOTCONN),
            (ECONNREFUSED, libc::ECONNREFUSED),
            (EHOSTUNREACH, libc::EHOSTUNREACH),
            (EALREADY, libc::EALREADY),
            (EINPROGRESS, libc::EINPROGRESS),
        ];
        assert_eq!(linux.len(), ALL.len());
        for (ours, l) in linux {
            assert_eq!(ours.code(), l, "{}", ours.name());
        }
    }

    #[test]
    fn names_and_messages_are_the_c_librarys() {
        for e in ALL {
            // The host C library's strerror, through std.
            let host = std::io::Error::from_raw_os_error(e.code()).to_string();
            let want = host.split(" (os error").next().unwrap();
            assert_eq!(e.message(), want, "{}", e.name());
            assert!(e.name().starts_with('E') && e.name().len() > 2);
        }
        let mut names: Vec<&str> = ALL.iter().map(|e| e.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a name twice");
        assert_eq!(ENOENT.to_string(), "ENOENT (No such file or directory)");
    }
}
