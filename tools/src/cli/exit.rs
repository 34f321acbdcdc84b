//! Process exit codes of `pvmux`.

/// The guest kernel crashed; the crash report is printed on stderr.
pub const EXIT_GUEST_CRASH: u8 = 124;
/// A host-side error: bad flag, bad kernel image, sandbox spawn failure.
pub const EXIT_HOST_ERROR: u8 = 125;

/// An OCI command failed (runc's status for every error).
pub const EXIT_OCI_ERROR: u8 = 1;

/// Text for `--help` describing the exit codes.
pub const EXIT_CODES_HELP: &str = "\
Exit status:
  124      the guest crashed; a crash report is printed on stderr
  125      host-side error (bad flag, unusable kernel image, sandbox spawn failure)
  1        an OCI command (create, start, state, kill, delete, run ID, ...) failed
  other    the guest's exit code (from its shutdown hypercall, modulo 256; guests
           should not use 124 or 125)";
