//! `AF_UNIX` sockets (issue 11, item 3). `tests/programs/c/unix_sockets.c` exercises stream,
//! datagram and seqpacket sockets — socketpair, path and abstract names, autobind,
//! listen/accept/connect and their errors, shutdown/EOF/ECONNRESET/EPIPE+SIGPIPE, message
//! boundaries and the MSG_* flags, SCM_RIGHTS across fork, SCM_CREDENTIALS, options,
//! FIONREAD/SIOCOUTQ, poll events, EINTR and SA_RESTART — and prints what it observes; it
//! runs natively and under `pvmux run` (glibc, and musl where built; 1 and 4 vCPUs) and both
//! runs must print the same lines. A python3 script from the host's root (`--rootfs /`):
//! `socket.socketpair`, a threaded unix server and client, abstract names, `send_fds`,
//! `multiprocessing` `Pipe` with the fork, forkserver and spawn start methods (forkserver and
//! spawn pass descriptors over `AF_UNIX` sockets) and `multiprocessing.reduction.send_handle`
//! must print what it prints natively. (`multiprocessing.Queue` needs `sem_open`, a writable
//! shared file mapping in `/dev/shm`: not part of this test.)

use std::process::Command;
use std::time::Duration;

use pvmux_tests::{prog, run_clean, run_with_timeout, variants, Run, TempDir};

/// The `pvmux` command line.
const PVMUX: &str = env!("CARGO_BIN_EXE_pvmux-cli");
/// Longest any single run may take (generous: the machine is loaded).
const TIMEOUT: Duration = Duration::from_secs(300);

#[test]
#[cfg_attr(
    not(have_static_glibc),
    ignore = "needs a static glibc: apt-get install libc6-dev"
)]
fn unix_sockets_behave_as_on_linux() {
    let names = variants("unix-sockets");
    let root = TempDir::unique("pvmux-unix-sockets", "rootfs");
    std::fs::create_dir(root.0.join("tmp")).expect("mkdir tmp");
    for name in &names {
        std::fs::copy(prog(name), root.0.join(name)).expect("copy program");
    }
    for name in &names {
        let n = run_clean(Command::new(prog(name)), TIMEOUT);
        assert_eq!(n.code(), Some(0), "native {name}:\n{}", n.context());
        assert!(n.has_line("cleanup: 0"), "native {name}:\n{}", n.stdout);
        for vcpus in [1, 4] {
            let mut cmd = Command::new(PVMUX);
            cmd.arg("run")
                .arg(format!("--vcpus={vcpus}"))
                .arg("--rootfs")
                .arg(&root.0)
                .arg("--")
                .arg(format!("/{name}"));
            let g = run_clean(cmd, TIMEOUT);
            assert_eq!(
                g.stdout, n.stdout,
                "{name} on {vcpus} vCPUs: guest stdout differs from the native run (guest \
                 stderr:\n{})",
                g.stderr
            );
            assert_eq!(g.code(), Some(0), "{name} on {vcpus} vCPUs:\n{}", g.stderr);
        }
    }
}

/// The python3 script: socketpair, a unix server and client, abstract names, `send_fds`,
/// `multiprocessing` pipes with every start method, `send_handle`.
const PYTHON_SCRIPT: &str = r#"
import multiprocessing as mp, multiprocessing.reduction, os, socket, tempfile, threading


def worker(conn):
    conn.send(sum(conn.recv()))
    conn.close()


def handle_worker(conn):
    fd = mp.reduction.recv_handle(conn)
    os.write(fd, b"handle passed")
    os.close(fd)


def main():
    a, b = socket.socketpair()
    a.sendall(b"ping")
    print("socketpair:", b.recv(10))
    b.close()
    print("after peer close:", a.recv(10))
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.send(b"one")
    a.send(b"two")
    print("datagrams:", b.recv(10), b.recv(10))
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.send(b"record")
    print("seqpacket:", b.recv(3))

    d = tempfile.mkdtemp()
    path = os.path.join(d, "sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen()

    def serve():
        c, _ = srv.accept()
        with c:
            data = b""
            while True:
                x = c.recv(4096)
                if not x:
                    break
                data += x
            c.sendall(data.upper())

    t = threading.Thread(target=serve)
    t.start()
    cl = socket.socket(socket.AF_UNIX)
    cl.connect(path)
    cl.sendall(b"hello " * 20000)
    cl.shutdown(socket.SHUT_WR)
    resp = b""
    while chunk := cl.recv(65536):
        resp += chunk
    t.join()
    print("server echoed:", len(resp), resp[:12])
    print("names:", cl.getpeername() == path, srv.getsockname() == path)
    cl.close()
    srv.close()
    os.unlink(path)
    os.rmdir(d)

    ab = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ab.bind("\0pvmux-py-%d" % os.getpid())
    cl = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    cl.sendto(b"abstract", "\0pvmux-py-%d" % os.getpid())
    print("abstract:", ab.recvfrom(100)[0])

    x, y = socket.socketpair()
    r, w = os.pipe()
    socket.send_fds(x, [b"fd"], [w])
    os.close(w)
    msg, fds, flags, addr = socket.recv_fds(y, 10, 2)
    os.write(fds[0], b"via passed fd")
    os.close(fds[0])
    print("send_fds:", msg, len(fds), os.read(r, 100), os.read(r, 100))

    for method in ("fork", "forkserver", "spawn"):
        ctx = mp.get_context(method)
        p1, p2 = ctx.Pipe()
        pr = ctx.Process(target=worker, args=(p2,))
        pr.start()
        p1.send(list(range(100)))
        print(method, "Pipe:", p1.recv())
        pr.join()
        print(method, "exit code:", pr.exitcode)

    ctx = mp.get_context("fork")
    p1, p2 = ctx.Pipe()
    r, w = os.pipe()
    pr = ctx.Process(target=handle_worker, args=(p2,))
    pr.start()
    mp.reduction.send_handle(p1, w, pr.pid)
    os.close(w)
    pr.join()
    print("send_handle:", os.read(r, 100), pr.exitcode)


if __name__ == "__main__":
    main()
"#;

/// Runs `cmd` (environment already set) with null stdin, killing it after [`TIMEOUT`].
fn run(cmd: Command) -> Run {
    let what = format!("{cmd:?}");
    run_with_timeout(cmd, &what, TIMEOUT, Duration::from_millis(20), |_| {})
}

#[test]
#[cfg_attr(
    not(have_python3),
    ignore = "needs /usr/bin/python3: apt-get install python3"
)]
fn python3_unix_sockets_and_multiprocessing_as_native() {
    // The guest reads the script from the host's root, where the test writes it (the
    // boot arguments are too small to carry it).
    let dir = TempDir::unique("pvmux-unix-python", "script");
    let file = dir.0.join("unix_check.py");
    std::fs::write(&file, PYTHON_SCRIPT).expect("write the script");
    let file = file.to_str().expect("utf-8 temp path");
    let path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
    let mut native = Command::new("/usr/bin/python3");
    native
        .env_clear()
        .arg(file)
        .env("PATH", path)
        .env("LC_ALL", "C");
    let native = run(native);
    assert_eq!(native.code(), Some(0), "native run:\n{}", native.context());

    let mut guest = Command::new(PVMUX);
    guest
        .env_clear()
        .args(["run", "--rootfs", "/", "--vcpus", "2", "--mem", "1G"])
        .args(["--env", &format!("PATH={path}"), "--env", "LC_ALL=C"])
        .args(["--", "/usr/bin/python3", file]);
    let guest = run(guest);
    assert_eq!(
        guest.stdout,
        native.stdout,
        "guest and native differ\nguest:\n{}\nnative stderr:\n{}",
        guest.context(),
        native.stderr
    );
    assert_eq!(guest.code(), Some(0), "guest run:\n{}", guest.context());
}
