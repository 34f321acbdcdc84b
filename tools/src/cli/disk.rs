//! Disks: `pvmux run --disk FILE[:ro|rw][,mount=PATH]` (a host image file given to the
//! guest as the block device `/dev/vdX` with an ext2 filesystem, mounted at PATH by the
//! guest kernel, or by a guest program without `mount=`) and `pvmux disk ls |
//! move` (a `disk JSON` request on the tenants' control sockets). The host side is
//! `pvmux_host::disk`, the guest's `fs::disk` and `fs::ext2` (docs/MULTIKERNEL.md, "Devices
//! and who owns them").

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use pvmux_host::disk::{mount_path_ok, Disk, DiskInfo};
use pvmux_host::TenantHandle;
use pvmux_hypercalls::disk::MAX_DISKS;

use super::oci::control::{self, Request};
use super::oci::{Format, GlobalArgs, StateDir, Status};

/// One `--disk` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    /// The image file.
    pub file: PathBuf,
    /// `:ro`.
    pub read_only: bool,
    /// `mount=PATH` (default: not mounted; `/dev/vdX` for the guest's programs to mount).
    pub mount: Option<String>,
}

/// Parses `FILE[:ro|rw][,mount=PATH]` (clap's value parser).
pub(crate) fn parse_disk(s: &str) -> Result<DiskSpec, String> {
    const SYNTAX: &str = "expected FILE[:ro|rw][,mount=/GUEST/PATH]";
    let mut parts = s.split(',');
    let head = parts.next().unwrap_or("");
    let mut mount = None;
    for opt in parts {
        match opt.split_once('=') {
            Some(("mount", p)) => {
                if !mount_path_ok(p) {
                    return Err(format!(
                        "mount path {p:?} must be absolute, not /, without . or .. ({SYNTAX})"
                    ));
                }
                mount = Some(p.trim_end_matches('/').to_owned());
            }
            _ => return Err(format!("unknown option {opt:?} ({SYNTAX})")),
        }
    }
    let (file, read_only) = match head.rsplit_once(':') {
        Some((f, "ro")) => (f, true),
        Some((f, "rw")) => (f, false),
        _ => (head, false),
    };
    if file.is_empty() {
        return Err(format!("no image file ({SYNTAX})"));
    }
    Ok(DiskSpec {
        file: PathBuf::from(file),
        read_only,
        mount,
    })
}

/// Opens and locks every `--disk` image (before anything boots): a missing, unusable or
/// locked image is an error naming it.
pub(crate) fn open_disks(specs: &[DiskSpec]) -> anyhow::Result<Vec<Disk>> {
    if specs.len() > MAX_DISKS as usize {
        bail!("--disk: at most {MAX_DISKS} disks, {} given", specs.len());
    }
    let mut mounts: Vec<String> = Vec::new();
    specs
        .iter()
        .map(|s| {
            let mount = s.mount.clone().unwrap_or_default();
            if !mount.is_empty() && mounts.contains(&mount) {
                bail!("--disk: two disks mounted at {mount}");
            }
            mounts.push(mount.clone());
            Disk::open(&s.file, s.read_only, &mount)
                .with_context(|| format!("--disk {} is not usable", s.file.display()))
        })
        .collect()
}

/// A `disk` request on the control socket.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub(crate) enum DiskRequest {
    /// The tenant's disks.
    List,
    /// Take disk `which` (`vdX` or image path; `None`: the only one) back from the guest.
    Detach { which: Option<String> },
    /// Give the guest image `path`, mounted at `mount`.
    Attach {
        path: PathBuf,
        read_only: bool,
        mount: String,
    },
}

/// A disk on the wire (`disk ls --format json`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct DiskEntry {
    name: String,
    path: PathBuf,
    read_only: bool,
    size: u64,
    /// The mount path pvmux gave the guest kernel (empty: none).
    mount: String,
    /// Where it is mounted in the guest now, as the guest says (empty: not mounted; `?`: a
    /// path the host does not show).
    #[serde(default)]
    mounted_at: String,
    /// `pvmux` (the guest kernel, at `mount`) or `guest` (a guest program); empty when not
    /// mounted.
    #[serde(default)]
    mounted_by: String,
    /// The mount is read-only.
    #[serde(default)]
    mount_read_only: bool,
    state: String,
}

impl From<DiskInfo> for DiskEntry {
    fn from(d: DiskInfo) -> Self {
        Self {
            name: d.name,
            path: d.path,
            read_only: d.read_only,
            size: d.size,
            mount: d.mount,
            mounted_at: d.mounted_at,
            mounted_by: d.mounted_by.to_owned(),
            mount_read_only: d.mount_read_only,
            state: d.state.to_owned(),
        }
    }
}

/// `disk ls`'s table.
fn table(v: &[DiskEntry]) -> String {
    let mut out = format!(
        "{:<5} {:<5} {:<11} {:<26} {:<6} {:<10} IMAGE\n",
        "NAME", "MODE", "SIZE", "MOUNT", "BY", "STATE"
    );
    for d in v {
        let mount = match (d.mounted_at.as_str(), d.mount_read_only && !d.read_only) {
            ("", _) => "-".to_owned(),
            (m, true) => format!("{m} (ro)"),
            (m, false) => m.to_owned(),
        };
        out.push_str(&format!(
            "{:<5} {:<5} {:<11} {:<26} {:<6} {:<10} {}\n",
            d.name,
            if d.read_only { "ro" } else { "rw" },
            super::format_size(d.size),
            mount,
            if d.mounted_by.is_empty() {
                "-"
            } else {
                &d.mounted_by
            },
            d.state,
            d.path.display()
        ));
    }
    out
}

/// The monitor's side of a `disk` request (JSON answer).
pub(crate) fn answer(h: &TenantHandle, req: &DiskRequest) -> anyhow::Result<String> {
    let out = match req {
        DiskRequest::List => {
            let v: Vec<DiskEntry> = h.disks().into_iter().map(DiskEntry::from).collect();
            serde_json::to_string(&v)?
        }
        DiskRequest::Detach { which } => {
            let d = h.disk_detach(which.as_deref())?;
            tracing::info!(disk = %d.path.display(), "disk given back");
            serde_json::to_string(&DiskEntry::from(d))?
        }
        DiskRequest::Attach {
            path,
            read_only,
            mount,
        } => {
            let disk = Disk::open(path, *read_only, mount)?;
            let d = h.disk_attach(disk)?;
            tracing::info!(disk = %d.path.display(), mount = %d.mount, "disk attached");
            serde_json::to_string(&DiskEntry::from(d))?
        }
    };
    Ok(out)
}

/// `pvmux disk`.
#[derive(Debug, Args)]
pub struct DiskArgs {
    #[command(subcommand)]
    pub cmd: DiskCmd,
}

/// `pvmux disk` subcommands.
#[derive(Debug, Subcommand)]
pub enum DiskCmd {
    /// List a running tenant's disks: name in the guest, mode, size, where it is mounted in
    /// the guest now and by whom (`pvmux`: the guest kernel, at the path --disk mount= or
    /// disk move --mount gave; `guest`: a guest program's mount(2)), state (attached,
    /// mounted, unmounting: unmounted lazily with files still open), image. The mounts are
    /// what the guest kernel reports, checked by the host.
    Ls {
        /// Output format.
        #[arg(short = 'f', long, value_enum, default_value = "table")]
        format: Format,
        /// The tenant (its name or container id in --root).
        name: String,
    },
    /// Hand a disk from one running tenant to another: FROM's guest writes its changes back
    /// and unmounts the disk (refused, nothing changed, while files are open on it), the
    /// host closes the image (its lock goes), then TO's host opens and locks it and TO's
    /// guest mounts it (at --mount, default the path it had in FROM). If TO cannot take it,
    /// it goes back to FROM.
    Move {
        /// The disk, if FROM has several: its guest name (vda, vdb, ...) or image path.
        #[arg(long)]
        disk: Option<String>,
        /// Where TO's guest mounts it (default: where FROM's kernel mounted it when it got
        /// it; a disk FROM got without a mount path comes to TO as /dev/vdX only).
        #[arg(long, value_name = "PATH")]
        mount: Option<String>,
        /// The tenant that has the disk.
        from: String,
        /// The tenant to give it to.
        to: String,
    },
}

/// The control socket of running tenant `id`.
fn running(g: &GlobalArgs, id: &str) -> anyhow::Result<PathBuf> {
    let sd = StateDir::open(&g.root, id)?;
    match sd.read()?.effective_status() {
        Status::Running => Ok(sd.control_socket()),
        Status::Paused => bail!("{id} is paused: resume it first"),
        _ => bail!("{id} is not running"),
    }
}

fn ask(sock: &std::path::Path, req: DiskRequest) -> anyhow::Result<String> {
    control::request(sock, &Request::Disk(req))
}

/// `pvmux disk`.
pub(crate) fn disk(g: &GlobalArgs, a: &DiskArgs) -> anyhow::Result<u8> {
    match &a.cmd {
        DiskCmd::Ls { format, name } => {
            let payload = ask(&running(g, name)?, DiskRequest::List)?;
            let v: Vec<DiskEntry> =
                serde_json::from_str(&payload).context("bad answer from the monitor")?;
            match format {
                Format::Json => println!("{payload}"),
                Format::Table => print!("{}", table(&v)),
            }
            Ok(0)
        }
        DiskCmd::Move {
            disk,
            mount,
            from,
            to,
        } => {
            if let Some(m) = mount {
                if !mount_path_ok(m) {
                    bail!("--mount {m:?} must be absolute, not /, without . or ..");
                }
            }
            if from == to {
                bail!("FROM and TO are the same tenant");
            }
            let from_sock = running(g, from)?;
            let to_sock = running(g, to)?;
            let payload = ask(
                &from_sock,
                DiskRequest::Detach {
                    which: disk.clone(),
                },
            )
            .with_context(|| format!("{from} cannot give the disk back"))?;
            let d: DiskEntry =
                serde_json::from_str(&payload).context("bad answer from the monitor")?;
            let attach = DiskRequest::Attach {
                path: d.path.clone(),
                read_only: d.read_only,
                mount: mount.clone().unwrap_or_else(|| d.mount.clone()),
            };
            match ask(&to_sock, attach) {
                Ok(p) => {
                    let n: DiskEntry =
                        serde_json::from_str(&p).context("bad answer from the monitor")?;
                    if n.mount.is_empty() {
                        println!(
                            "{}: moved from {from} to {to} (/dev/{} there, not mounted)",
                            d.path.display(),
                            n.name
                        );
                    } else {
                        println!(
                            "{}: moved from {from} to {to} ({} there, mounted at {})",
                            d.path.display(),
                            n.name,
                            n.mount
                        );
                    }
                    Ok(0)
                }
                Err(e) => {
                    // Give it back to FROM, where it was.
                    let back = ask(
                        &from_sock,
                        DiskRequest::Attach {
                            path: d.path.clone(),
                            read_only: d.read_only,
                            mount: d.mount.clone(),
                        },
                    );
                    match back {
                        Ok(_) => Err(e.context(format!(
                            "{to} cannot take disk {}; it is back in {from}",
                            d.path.display()
                        ))),
                        Err(b) => Err(e.context(format!(
                            "{to} cannot take disk {}, and {from} cannot take it back ({b:#}); \
                             the image is attached to no tenant",
                            d.path.display()
                        ))),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_flags_parse() {
        assert_eq!(
            parse_disk("img").unwrap(),
            DiskSpec {
                file: "img".into(),
                read_only: false,
                mount: None
            }
        );
        let s = parse_disk("/x/a.img:ro,mount=/data/").unwrap();
        assert_eq!((s.read_only, s.mount.as_deref()), (true, Some("/data")));
        assert!(parse_disk("a:rw,mount=/m").is_ok_and(|s| !s.read_only));
        for bad in [
            "",
            ":ro",
            "a,mount=rel",
            "a,mount=/",
            "a,size=3",
            "a,mount=/x/../y",
        ] {
            assert!(parse_disk(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_table_shows_who_mounted_what() {
        let e = |name: &str, at: &str, by: &str, ro: (bool, bool), state: &str| DiskEntry {
            name: name.into(),
            path: "/i.img".into(),
            read_only: ro.0,
            size: 64 << 20,
            mount: String::new(),
            mounted_at: at.into(),
            mounted_by: by.into(),
            mount_read_only: ro.1,
            state: state.into(),
        };
        let t = table(&[
            e("vda", "/data", "pvmux", (false, false), "mounted"),
            e("vdb", "/mnt/g", "guest", (false, true), "mounted"),
            e("vdc", "", "", (true, false), "attached"),
        ]);
        let rows: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            rows[0],
            ["NAME", "MODE", "SIZE", "MOUNT", "BY", "STATE", "IMAGE"]
        );
        // SIZE is two words ("64 MiB").
        assert_eq!(rows[1][4..7], ["/data", "pvmux", "mounted"]);
        assert_eq!(rows[2][4..8], ["/mnt/g", "(ro)", "guest", "mounted"]);
        assert_eq!(rows[3][..2], ["vdc", "ro"]);
        assert_eq!(rows[3][4..7], ["-", "-", "attached"]);
        // An older monitor's answer (without the mount fields) still reads.
        let old = r#"{"name":"vda","path":"/i","read_only":false,"size":1,"mount":"/m","state":"mounted"}"#;
        let d: DiskEntry = serde_json::from_str(old).unwrap();
        assert_eq!((d.mount.as_str(), d.mounted_at.as_str()), ("/m", ""));
    }

    #[test]
    fn requests_round_trip() {
        for r in [
            DiskRequest::List,
            DiskRequest::Detach { which: None },
            DiskRequest::Detach {
                which: Some("vdb".into()),
            },
            DiskRequest::Attach {
                path: "/a b".into(),
                read_only: true,
                mount: "/m".into(),
            },
        ] {
            let line = format!("disk {}\n", serde_json::to_string(&r).unwrap());
            assert_eq!(Request::parse(&line), Some(Request::Disk(r)));
        }
    }
}
