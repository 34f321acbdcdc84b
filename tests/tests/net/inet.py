# Internet sockets on the loopback: one case per argv[1], printing only what does not
# depend on where it runs (no port numbers, no timing), so a guest run and a native run
# print the same.
import errno, fcntl, os, select, socket, struct, sys, termios, threading

def name(e):
    return errno.errorcode.get(e, str(e))

def err(f, *a):
    try:
        r = f(*a)
        return "ok" if r is None else r
    except OSError as e:
        return name(e.errno)

def listener(fam=socket.AF_INET, host="127.0.0.1", backlog=8, reuse=True):
    s = socket.socket(fam, socket.SOCK_STREAM)
    if reuse:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 0))
    s.listen(backlog)
    return s

def echo_server(srv, conns=1):
    def serve():
        for _ in range(conns):
            c, _ = srv.accept()
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
            c.close()
    t = threading.Thread(target=serve)
    t.start()
    return t

def tcp():
    srv = listener()
    port = srv.getsockname()[1]
    print("listen", srv.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN),
          srv.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM)
    t = echo_server(srv, 2)
    for size in (1, 1000, 100000, 3000000):
        c = socket.create_connection(("127.0.0.1", port))
        print("peer-is-listener", c.getpeername() == ("127.0.0.1", port),
              c.getsockname()[0], c.getsockname()[1] != port)
        data = bytes(i % 251 for i in range(size))
        got = bytearray()
        def rd():
            while True:
                d = c.recv(65536)
                if not d:
                    break
                got.extend(d)
        r = threading.Thread(target=rd)
        r.start()
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        r.join()
        print("echo", size, bytes(got) == data, err(c.send, b"x"))
        c.close()
        if size == 1000:
            break
    t.join()
    # Options.
    c = socket.socket()
    for lvl, opt in ((socket.IPPROTO_TCP, socket.TCP_NODELAY), (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                     (socket.SOL_SOCKET, socket.SO_REUSEADDR)):
        before = c.getsockopt(lvl, opt)
        c.setsockopt(lvl, opt, 5)
        print("opt", opt, before, c.getsockopt(lvl, opt))
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    print("bufs", c.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), c.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 3))
    print("linger", struct.unpack("ii", c.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)))
    print("so_error", c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    print("unknown", err(c.setsockopt, socket.SOL_SOCKET, 9999, 1))
    print("unconnected", err(c.getpeername), err(c.recv, 1), err(c.send, b"x"), err(c.shutdown, socket.SHUT_RDWR))
    c.close()
    srv.close()

def bind_rules():
    a = listener(reuse=False)
    port = a.getsockname()[1]
    b = socket.socket()
    print("same port", err(b.bind, ("127.0.0.1", port)))
    print("any same port", err(b.bind, ("0.0.0.0", port)))
    print("not ours", err(b.bind, ("192.0.2.1", 0)))
    b.bind(("127.0.0.1", 0))
    print("bind twice", err(b.bind, ("127.0.0.1", 0)))
    b.close()
    a.close()
    # SO_REUSEPORT: two listeners on one port.
    x = socket.socket(); x.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    x.bind(("127.0.0.1", 0)); x.listen(1)
    y = socket.socket(); y.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    print("reuseport", err(y.bind, ("127.0.0.1", x.getsockname()[1])), err(y.listen, 1))
    # SO_REUSEADDR lets a port with an established connection be bound again.
    s = listener()
    port = s.getsockname()[1]
    c = socket.create_connection(("127.0.0.1", port))
    conn, _ = s.accept()
    s.close()
    n = socket.socket()
    print("in use by a connection", err(n.bind, ("127.0.0.1", port)))
    n.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    print("with reuseaddr", err(n.bind, ("127.0.0.1", port)))
    for s in (x, y, c, conn, n):
        s.close()

def refused():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    c = socket.socket()
    print("connect", err(c.connect, ("127.0.0.1", port)))
    print("again", err(c.connect, ("127.0.0.1", port)))
    print("connect_ex", name(socket.socket().connect_ex(("127.0.0.1", port))))

def nonblocking():
    srv = listener()
    port = srv.getsockname()[1]
    c = socket.socket()
    c.setblocking(False)
    r = c.connect_ex(("127.0.0.1", port))
    print("connect", "pending" if r in (0, errno.EINPROGRESS) else name(r))
    _, w, _ = select.select([], [c], [], 10)
    print("writable", w == [c], "so_error", c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    srv.setblocking(False)
    conn, _ = srv.accept()
    print("accept again", err(srv.accept))
    print("recv empty", err(c.recv, 10))
    conn.sendall(b"abc")
    select.select([c], [], [], 10)
    buf = bytearray(4)
    fcntl.ioctl(c, termios.FIONREAD, buf)
    print("fionread", struct.unpack("i", buf)[0], c.recv(10, socket.MSG_PEEK), c.recv(10))
    # Filling the peer's buffer: send stops with EAGAIN, then poll says not writable.
    total = 0
    while True:
        try:
            total += c.send(b"x" * 65536)
        except BlockingIOError:
            break
    p = select.poll(); p.register(c, select.POLLOUT)
    print("full", total > 0, p.poll(0))
    # Refused, non-blocking.
    d = socket.socket(); d.bind(("127.0.0.1", 0)); dead = d.getsockname()[1]; d.close()
    e = socket.socket(); e.setblocking(False)
    r = e.connect_ex(("127.0.0.1", dead))
    if r == errno.EINPROGRESS:
        select.select([], [e], [], 10)
        r = e.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    print("refused", name(r), e.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    for s in (c, conn, srv, e):
        s.close()

def reset():
    srv = listener()
    c = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    c.sendall(b"never read")
    conn.close()
    select.select([c], [], [], 10)
    print("after reset", err(c.recv, 10), err(c.recv, 10))
    # A plain close is an end of file, then writes break.
    c2 = socket.create_connection(srv.getsockname())
    conn2, _ = srv.accept()
    conn2.sendall(b"bye")
    conn2.close()
    print("after fin", c2.recv(10), c2.recv(10))
    c2.send(b"x")
    select.select([c2], [], [], 10)
    print("write after fin", err(c2.send, b"y"))
    for s in (c, c2, srv):
        s.close()

def udp():
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind(("127.0.0.1", 0))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for msg in (b"one", b"", b"three" * 1000):
        s.sendto(msg, r.getsockname())
    for _ in range(3):
        d, a = r.recvfrom(65536)
        print("dgram", len(d), d[:5], a == ("127.0.0.1", s.getsockname()[1]))
    s.sendto(b"truncated", r.getsockname())
    print("short buffer", r.recv(4))
    s.sendto(b"peek", r.getsockname())
    print("peek", r.recv(10, socket.MSG_PEEK), r.recv(10))
    r.setblocking(False)
    print("empty", err(r.recv, 10))
    # Connected: only the peer's datagrams; an unreachable port is ECONNREFUSED.
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.connect(r.getsockname())
    c.send(b"connected")
    print("connected", r.recv(100), c.getpeername() == r.getsockname())
    d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); d.bind(("127.0.0.1", 0)); dead = d.getsockname(); d.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect(dead)
    u.send(b"x")
    print("unreachable", err(u.recv, 10))
    print("unconnected send", err(socket.socket(socket.AF_INET, socket.SOCK_DGRAM).send, b"x"))
    print("no stream calls", err(r.listen, 1))

def ipv6():
    srv = listener(socket.AF_INET6, "::1")
    t = echo_server(srv)
    c = socket.create_connection(("::1", srv.getsockname()[1]))
    c.sendall(b"six")
    names = c.getsockname()[0], c.getpeername()[0]
    c.shutdown(socket.SHUT_WR)
    print("v6 echo", c.recv(10), *names, c.recv(10))
    print("after both fins", err(c.getpeername))
    c.close(); t.join(); srv.close()
    # A dual-stack listener takes IPv4 clients, seen as v4-mapped.
    dual = listener(socket.AF_INET6, "::")
    c = socket.create_connection(("127.0.0.1", dual.getsockname()[1]))
    conn, peer = dual.accept()
    print("mapped peer", peer[0], conn.getsockname()[0])
    c.close(); conn.close(); dual.close()
    # IPV6_V6ONLY: no IPv4 clients, and the IPv4 port is free.
    only = socket.socket(socket.AF_INET6)
    print("v6only default", only.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
    only.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    only.bind(("::", 0)); only.listen(1)
    port = only.getsockname()[1]
    print("v4 to v6only", err(socket.socket().connect, ("127.0.0.1", port)))
    print("after bind", err(only.setsockopt, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0))
    u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u6.bind(("::1", 0))
    socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(b"u6", u6.getsockname())
    d, a = u6.recvfrom(10)
    print("udp6", d, a[0])

def http():
    import http.server, urllib.request, urllib.error
    os.chdir(sys.argv[2])
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    srv.RequestHandlerClass.log_message = lambda *a: None
    t = threading.Thread(target=srv.serve_forever)
    t.start()
    base = "http://127.0.0.1:%d/" % srv.server_address[1]
    body = urllib.request.urlopen(base + "file.txt").read()
    print("http", len(body), body[:12])
    try:
        urllib.request.urlopen(base + "missing")
    except urllib.error.HTTPError as e:
        print("http missing", e.code)
    srv.shutdown(); t.join(); srv.server_close()

def serve():
    # python3 -m http.server on the guest port argv[3], serving argv[2], for argv[4] requests.
    import http.server
    os.chdir(sys.argv[2])
    srv = http.server.HTTPServer(("0.0.0.0", int(sys.argv[3])), http.server.SimpleHTTPRequestHandler)
    srv.RequestHandlerClass.log_message = lambda *a: None
    print("serving", flush=True)
    for _ in range(int(sys.argv[4])):
        srv.handle_request()
    print("served", sys.argv[4])

def udpserve():
    # A UDP echo server on argv[2]:argv[3] until a b"quit" datagram; then prints the lengths
    # of the datagrams it echoed (probes aside) and from how many senders they came.
    s = socket.socket(socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[2], int(sys.argv[3])))
    print("serving", flush=True)
    lens, senders = [], set()
    while True:
        d, a = s.recvfrom(65536)
        if d == b"quit":
            break
        s.sendto(d, a)
        if d != b"probe":
            lens.append(len(d))
            senders.add(a)
    print("echoed", lens, "from", len(senders), "senders")

def selector():
    # Waits (epoll, no timeout) for a reply that comes later on a writable socket to
    # argv[2]:argv[3].
    import selectors
    c = socket.create_connection((sys.argv[2], int(sys.argv[3])))
    c.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(c, selectors.EVENT_READ)
    c.send(b"ping")
    print("ready", [k.fileobj is c for k, _ in sel.select()], c.recv(10))

def fetch():
    import urllib.request
    try:
        print("fetched", urllib.request.urlopen(sys.argv[2], timeout=20).read())
    except OSError as e:
        reason = getattr(e, "reason", e)
        print("fetch failed", name(getattr(reason, "errno", 0) or 0))

globals()[sys.argv[1]]()
