//! Linux error numbers (x86-64 values) returned by the filesystem operations.
//!
//! Pure code (only `core`), so the host tests can compile it too.

use core::fmt;

/// A Linux `errno` value. The discriminants are the Linux x86-64 numbers, so a system-call
/// layer returns `-(e as i64)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
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
    /// File name too long.
    ENAMETOOLONG = 36,
    /// Directory not empty.
    ENOTEMPTY = 39,
    /// Too many levels of symbolic links.
    ELOOP = 40,
    /// Value too large for defined data type.
    EOVERFLOW = 75,
}

impl Errno {
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
            Self::ENAMETOOLONG => "ENAMETOOLONG",
            Self::ENOTEMPTY => "ENOTEMPTY",
            Self::ELOOP => "ELOOP",
            Self::EOVERFLOW => "EOVERFLOW",
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
            Self::ENAMETOOLONG => "File name too long",
            Self::ENOTEMPTY => "Directory not empty",
            Self::ELOOP => "Too many levels of symbolic links",
            Self::EOVERFLOW => "Value too large for defined data type",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.message())
    }
}
