//! Parsing memory sizes such as `256M`, `1G`, `512K` or `1048576`.

/// Parses a size: a decimal number with an optional binary suffix `K`, `M`, `G` or `T`
/// (case-insensitive, optionally followed by `iB` or `B`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "invalid size {s:?}: expected a number such as 256M, 1G or 1048576"
        ));
    }
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "invalid size {s:?}: unknown suffix {suffix:?} (use K, M, G or T)"
            ))
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: number too large"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

/// Parses a guest memory size and checks it: a multiple of 2 MiB, from 16 MiB up to the
/// largest guest memory the ABI allows.
pub fn parse_mem_size(s: &str) -> Result<u64, String> {
    let size = parse_size(s)?;
    pvmux_host::memory::validate_mem_size(size).map_err(|_| {
        format!(
            "guest memory {s} is unusable: it must be a multiple of 2M between 16M and {}G",
            pvmux_hypercalls::layout::MAX_GUEST_MEM >> 30
        )
    })?;
    Ok(size)
}

/// Formats a size with the largest exact binary unit (`256 MiB`).
pub fn format_size(size: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if size >= 1 << shift && size.is_multiple_of(1 << shift) {
            return format!("{} {unit}", size >> shift);
        }
    }
    format!("{size} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert!(parse_size("").is_err());
        assert!(parse_size("abc").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-1M").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(parse_mem_size("256M"), Ok(256 << 20));
        assert!(parse_mem_size("0").is_err());
        assert!(parse_mem_size("512K").is_err());
        assert!(parse_mem_size("17M").is_err());
        assert!(parse_mem_size("2T").is_err());
        assert_eq!(format_size(256 << 20), "256 MiB");
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(3 << 19), "1536 KiB");
    }
}
