/* unix-sockets: AF_UNIX sockets as Linux has them. Stream, datagram and seqpacket
 * socketpairs; names in the filesystem and abstract ones, autobind; listen/accept/connect
 * and their errors; shutdown, EOF, ECONNRESET, EPIPE and SIGPIPE; message boundaries and
 * MSG_PEEK/MSG_DONTWAIT/MSG_WAITALL/MSG_TRUNC/MSG_CTRUNC; SCM_RIGHTS (new descriptors for
 * the same open files, alive while in flight, across fork) and SCM_CREDENTIALS; socket
 * options; FIONREAD/SIOCOUTQ; poll events; blocking calls interrupted by a signal (EINTR,
 * or restarted with SA_RESTART).
 *
 * Prints one line per observation (values, not pids, descriptor numbers or addresses that
 * differ between runs); the test runs it natively and in a guest and compares the output.
 * Exits 0 unless something it needs to go on failed ("fatal: ..."). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SIOCINQ
#define SIOCINQ FIONREAD
#endif
#ifndef SIOCOUTQ
#define SIOCOUTQ TIOCOUTQ
#endif

static char dir[64];

static void fatal(const char *what) {
    printf("fatal: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* "name: result" where result is the value or "-1 ERRNONAME". */
static const char *ename(int e) {
    switch (e) {
    case EAGAIN: return "EAGAIN";
    case EPIPE: return "EPIPE";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case EADDRINUSE: return "EADDRINUSE";
    case EISCONN: return "EISCONN";
    case ENOTCONN: return "ENOTCONN";
    case EPROTOTYPE: return "EPROTOTYPE";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EINTR: return "EINTR";
    case ENXIO: return "ENXIO";
    case ENOTDIR: return "ENOTDIR";
    case ESOCKTNOSUPPORT: return "ESOCKTNOSUPPORT";
    case EDOM: return "EDOM";
    case EPERM: return "EPERM";
    case EMSGSIZE: return "EMSGSIZE";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EBADF: return "EBADF";
    case ENOTSOCK: return "ENOTSOCK";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    default: return "other";
    }
}

static void show(const char *name, long r) {
    if (r < 0)
        printf("%s: -1 %s\n", name, ename(errno));
    else
        printf("%s: %ld\n", name, r);
    fflush(stdout);
}

static void say(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void say(const char *name, const char *fmt, ...) {
    va_list ap;
    printf("%s: ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static socklen_t path_addr(struct sockaddr_un *a, const char *name) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof a->sun_path, "%s/%s", dir, name);
    return offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1;
}

static socklen_t abstract_addr(struct sockaddr_un *a, const char *name) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "pvmux-unix-%d-%s", getpid(), name);
    return offsetof(struct sockaddr_un, sun_path) + 1 + n;
}

static int pair(int type, int sv[2]) {
    if (socketpair(AF_UNIX, type, 0, sv) < 0)
        fatal("socketpair");
    return 0;
}

static short revents(int fd, short events) {
    struct pollfd p = {fd, events, 0};
    if (poll(&p, 1, 0) < 0)
        fatal("poll");
    return p.revents;
}

static volatile sig_atomic_t sigpipes, sigusr1s;
static void on_sigpipe(int s) { (void)s; sigpipes++; }
static void on_sigusr1(int s) { (void)s; sigusr1s++; }

/* Sends `n` descriptors with one byte (and `data` as the byte). */
static ssize_t send_fds(int sock, const int *fds, int n, char data) {
    char cbuf[CMSG_SPACE(sizeof(int) * 8)];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {&data, 1};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    return sendmsg(sock, &m, 0);
}

/* Receives one message with room for `room` descriptors; stores them in fds (count in
 * *n), returns recvmsg's result, msg_flags in *flags. */
static ssize_t recv_fds(int sock, int *fds, int *n, int room, int flags, int *oflags, char *data) {
    char cbuf[CMSG_SPACE(sizeof(int) * 8)];
    struct iovec iov = {data, 1};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = room ? CMSG_SPACE(sizeof(int) * room) : 0;
    ssize_t r = recvmsg(sock, &m, flags);
    *n = 0;
    *oflags = m.msg_flags;
    if (r < 0)
        return r;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(fds + *n, CMSG_DATA(c), sizeof(int) * k);
            *n += k;
        }
    return r;
}

static void stream_pair(void) {
    int sv[2];
    char buf[64];
    pair(SOCK_STREAM, sv);
    say("stream: fresh poll", "%#x", revents(sv[0], POLLIN | POLLOUT | POLLRDHUP));
    show("stream: recv empty MSG_DONTWAIT", recv(sv[0], buf, sizeof buf, MSG_DONTWAIT));
    show("stream: write abc", write(sv[0], "abc", 3));
    show("stream: write defg", write(sv[0], "defg", 4));
    int n = -1;
    show("stream: FIONREAD", ioctl(sv[1], FIONREAD, &n));
    say("stream: FIONREAD value", "%d", n);
    n = -1;
    ioctl(sv[0], SIOCOUTQ, &n);
    say("stream: SIOCOUTQ > 0 while unread", "%d", n > 0);
    say("stream: peer poll", "%#x", revents(sv[1], POLLIN | POLLOUT | POLLRDHUP));
    memset(buf, 0, sizeof buf);
    show("stream: peek 5", recv(sv[1], buf, 5, MSG_PEEK));
    say("stream: peeked", "%s", buf);
    memset(buf, 0, sizeof buf);
    show("stream: read 2", read(sv[1], buf, 2));
    say("stream: got", "%s", buf);
    memset(buf, 0, sizeof buf);
    show("stream: read rest", read(sv[1], buf, sizeof buf));
    say("stream: got", "%s", buf);
    ioctl(sv[0], SIOCOUTQ, &n);
    say("stream: SIOCOUTQ after reading", "%d", n);
    /* MSG_WAITALL across writes from another process. */
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 3; i++) {
            usleep(20000);
            write(sv[0], "0123456789", 10);
        }
        _exit(0);
    }
    show("stream: MSG_WAITALL 30", recv(sv[1], buf, 30, MSG_WAITALL));
    waitpid(pid, NULL, 0);
    /* Filling a non-blocking socket ends in EAGAIN; POLLOUT goes away. */
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    static char big[65536];
    long total = 0;
    ssize_t r;
    while ((r = write(sv[0], big, sizeof big)) > 0)
        total += r;
    show("stream: full write", r);
    say("stream: filled some", "%d", total > 0);
    say("stream: full poll has POLLOUT", "%d", !!(revents(sv[0], POLLOUT) & POLLOUT));
    while ((r = recv(sv[1], big, sizeof big, MSG_DONTWAIT)) > 0)
        total -= r;
    say("stream: drained everything", "%d", total == 0);
    say("stream: drained poll", "%#x", revents(sv[0], POLLIN | POLLOUT));
    fcntl(sv[0], F_SETFL, 0);
    /* shutdown(SHUT_WR): the peer reads EOF; the writer gets EPIPE. */
    write(sv[0], "xy", 2);
    show("stream: shutdown SHUT_WR", shutdown(sv[0], SHUT_WR));
    say("stream: peer poll after SHUT_WR", "%#x", revents(sv[1], POLLIN | POLLOUT | POLLRDHUP));
    show("stream: read before EOF", read(sv[1], buf, sizeof buf));
    show("stream: read at EOF", read(sv[1], buf, sizeof buf));
    show("stream: send after SHUT_WR MSG_NOSIGNAL", send(sv[0], "z", 1, MSG_NOSIGNAL));
    say("stream: SIGPIPEs so far", "%d", (int)sigpipes);
    show("stream: write after SHUT_WR", write(sv[0], "z", 1));
    say("stream: SIGPIPEs", "%d", (int)sigpipes);
    show("stream: peer can still write", write(sv[1], "back", 4));
    show("stream: and we read it", read(sv[0], buf, sizeof buf));
    show("stream: shutdown bad how", shutdown(sv[0], 7));
    close(sv[0]);
    say("stream: poll after peer closed", "%#x", revents(sv[1], POLLIN | POLLOUT | POLLRDHUP));
    show("stream: read after peer closed", read(sv[1], buf, sizeof buf));
    show("stream: write after peer closed", send(sv[1], "q", 1, MSG_NOSIGNAL));
    close(sv[1]);

    /* Unread data at close: the peer sees ECONNRESET once, then EOF. */
    pair(SOCK_STREAM, sv);
    write(sv[1], "unread", 6);
    write(sv[0], "for-1", 5);
    close(sv[0]);
    say("stream: poll after reset", "%#x", revents(sv[1], POLLIN | POLLOUT));
    show("stream: read queued data after reset", read(sv[1], buf, sizeof buf));
    show("stream: read reset", read(sv[1], buf, sizeof buf));
    show("stream: read after reset", read(sv[1], buf, sizeof buf));
    close(sv[1]);

    /* A fresh unconnected stream socket. */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    say("stream: unconnected poll", "%#x", revents(s, POLLIN | POLLOUT));
    show("stream: send unconnected", send(s, "a", 1, MSG_NOSIGNAL));
    show("stream: recv unconnected", recv(s, buf, 1, MSG_DONTWAIT));
    show("stream: getpeername unconnected", getpeername(s, (struct sockaddr *)&(struct sockaddr_un){0}, &(socklen_t){sizeof(struct sockaddr_un)}));
    show("stream: listen unbound", listen(s, 5));
    show("stream: shutdown unconnected", shutdown(s, SHUT_RDWR));
    struct stat st;
    fstat(s, &st);
    say("stream: fstat", "sock=%d perm=%o", S_ISSOCK(st.st_mode), st.st_mode & 07777);
    close(s);
    show("socket: bad protocol", socket(AF_UNIX, SOCK_STREAM, 7));
    show("socket: protocol PF_UNIX", (s = socket(AF_UNIX, SOCK_STREAM, PF_UNIX)) >= 0);
    close(s);
}

static void dgram_pair(int type, const char *name) {
    int sv[2];
    char buf[64], line[80];
    pair(type, sv);
    snprintf(line, sizeof line, "%s: send hello", name);
    show(line, send(sv[0], "hello", 5, 0));
    snprintf(line, sizeof line, "%s: send empty", name);
    show(line, send(sv[0], "", 0, 0));
    snprintf(line, sizeof line, "%s: send world!", name);
    show(line, send(sv[0], "world!", 6, 0));
    int n = -1;
    ioctl(sv[1], FIONREAD, &n);
    snprintf(line, sizeof line, "%s: FIONREAD (first message)", name);
    say(line, "%d", n);
    struct iovec iov = {buf, 3};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    snprintf(line, sizeof line, "%s: recvmsg 3 of 5", name);
    show(line, recvmsg(sv[1], &m, 0));
    snprintf(line, sizeof line, "%s: MSG_TRUNC flag", name);
    say(line, "%d", !!(m.msg_flags & MSG_TRUNC));
    snprintf(line, sizeof line, "%s: recv empty message", name);
    show(line, recv(sv[1], buf, sizeof buf, 0));
    snprintf(line, sizeof line, "%s: recv MSG_TRUNC returns real length", name);
    show(line, recv(sv[1], buf, 2, MSG_TRUNC));
    snprintf(line, sizeof line, "%s: recv empty queue MSG_DONTWAIT", name);
    show(line, recv(sv[1], buf, sizeof buf, MSG_DONTWAIT));
    snprintf(line, sizeof line, "%s: poll", name);
    say(line, "%#x", revents(sv[1], POLLIN | POLLOUT | POLLRDHUP));
    send(sv[0], "peek", 4, 0);
    snprintf(line, sizeof line, "%s: peek", name);
    show(line, recv(sv[1], buf, sizeof buf, MSG_PEEK));
    snprintf(line, sizeof line, "%s: read after peek", name);
    show(line, read(sv[1], buf, sizeof buf));
    static char big[300000];
    snprintf(line, sizeof line, "%s: too big", name);
    show(line, send(sv[0], big, sizeof big, 0));
    int sz = 8192;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    snprintf(line, sizeof line, "%s: bigger than SO_SNDBUF", name);
    show(line, send(sv[0], big, 20000, 0));
    /* Filling: non-blocking send ends in EAGAIN. */
    int k = 0;
    ssize_t r;
    while ((r = send(sv[0], big, 1000, MSG_DONTWAIT)) == 1000 && k < 100000)
        k++;
    snprintf(line, sizeof line, "%s: full send", name);
    show(line, r);
    snprintf(line, sizeof line, "%s: full poll has POLLOUT", name);
    say(line, "%d", !!(revents(sv[0], POLLOUT) & POLLOUT));
    while (recv(sv[1], big, sizeof big, MSG_DONTWAIT) >= 0)
        k--;
    snprintf(line, sizeof line, "%s: every message received", name);
    say(line, "%d", k == 0);
    close(sv[0]);
    snprintf(line, sizeof line, "%s: poll after peer closed", name);
    say(line, "%#x", revents(sv[1], POLLIN | POLLOUT | POLLRDHUP));
    snprintf(line, sizeof line, "%s: recv after peer closed", name);
    show(line, recv(sv[1], buf, sizeof buf, MSG_DONTWAIT));
    snprintf(line, sizeof line, "%s: send after peer closed", name);
    show(line, send(sv[1], "x", 1, MSG_NOSIGNAL));
    snprintf(line, sizeof line, "%s: send again", name);
    show(line, send(sv[1], "x", 1, MSG_NOSIGNAL));
    close(sv[1]);
}

static void names(void) {
    struct sockaddr_un a, b;
    socklen_t len, blen;
    char buf[64];
    umask(022);

    /* Filesystem names. */
    int srv = socket(AF_UNIX, SOCK_STREAM, 0);
    len = path_addr(&a, "srv");
    show("path: bind", bind(srv, (struct sockaddr *)&a, len));
    show("path: bind again", bind(srv, (struct sockaddr *)&a, len));
    struct stat st;
    show("path: stat", stat(a.sun_path, &st));
    say("path: stat mode", "sock=%d perm=%o size=%ld", S_ISSOCK(st.st_mode), st.st_mode & 07777, (long)st.st_size);
    show("path: open socket file", open(a.sun_path, O_RDWR));
    int other = socket(AF_UNIX, SOCK_STREAM, 0);
    show("path: bind taken path", bind(other, (struct sockaddr *)&a, len));
    blen = sizeof b;
    memset(&b, 0, sizeof b);
    show("path: getsockname", getsockname(srv, (struct sockaddr *)&b, &blen));
    say("path: name", "len=%d same=%d", (int)blen, blen == len && strcmp(a.sun_path, b.sun_path) == 0);
    show("path: connect before listen", connect(other, (struct sockaddr *)&a, len));
    show("path: listen", listen(srv, 1));
    int v = -1;
    socklen_t vl = sizeof v;
    getsockopt(srv, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl);
    say("path: SO_ACCEPTCONN", "%d", v);
    say("path: listener poll", "%#x", revents(srv, POLLIN | POLLOUT));
    fcntl(srv, F_SETFL, O_NONBLOCK);
    show("path: accept nothing", accept(srv, NULL, NULL));
    fcntl(srv, F_SETFL, 0);
    show("path: read listener", read(srv, buf, 1));
    show("path: connect", connect(other, (struct sockaddr *)&a, len));
    show("path: connect again", connect(other, (struct sockaddr *)&a, len));
    say("path: listener poll with a connection", "%#x", revents(srv, POLLIN | POLLOUT));
    say("path: client poll", "%#x", revents(other, POLLIN | POLLOUT));
    struct sockaddr_un peer;
    socklen_t plen = sizeof peer;
    int conn = accept4(srv, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
    show("path: accept", conn >= 0);
    say("path: accepted peer address length (unbound client)", "%d", (int)plen);
    say("path: accepted cloexec", "%d", fcntl(conn, F_GETFD) & FD_CLOEXEC);
    blen = sizeof b;
    getsockname(conn, (struct sockaddr *)&b, &blen);
    say("path: accepted socket's name is the listener's", "%d", blen == len && strcmp(a.sun_path, b.sun_path) == 0);
    blen = sizeof b;
    show("path: client getpeername", getpeername(other, (struct sockaddr *)&b, &blen));
    say("path: client's peer", "%d", blen == len && strcmp(a.sun_path, b.sun_path) == 0);
    blen = sizeof b;
    getsockname(other, (struct sockaddr *)&b, &blen);
    say("path: unbound client's name length", "%d", (int)blen);
    struct ucred cr;
    socklen_t cl = sizeof cr;
    show("path: SO_PEERCRED", getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &cl));
    say("path: peer cred", "len=%d pid=%d uid=%d gid=%d", (int)cl, cr.pid == getpid(), cr.uid == getuid(), cr.gid == getgid());
    cl = sizeof cr;
    getsockopt(other, SOL_SOCKET, SO_PEERCRED, &cr, &cl);
    say("path: client's peer cred", "pid=%d uid=%d", cr.pid == getpid(), cr.uid == getuid());
    show("path: send to client", write(conn, "hi", 2));
    memset(buf, 0, sizeof buf);
    show("path: client reads", read(other, buf, sizeof buf));
    say("path: client got", "%s", buf);
    plen = sizeof peer;
    memset(&peer, 0xff, sizeof peer);
    write(other, "yo", 2);
    show("path: recvfrom", recvfrom(conn, buf, sizeof buf, 0, (struct sockaddr *)&peer, &plen));
    say("path: recvfrom address length (unbound sender)", "%d", (int)plen);
    write(conn, "yo", 2);
    plen = sizeof peer;
    recvfrom(other, buf, sizeof buf, 0, (struct sockaddr *)&peer, &plen);
    say("path: client recvfrom is the listener's name", "%d", plen == len && strcmp(peer.sun_path, a.sun_path) == 0);
    /* The backlog: listen(1) takes two connections, then EAGAIN. */
    int queued = 0, c[4];
    for (int i = 0; i < 4; i++) {
        c[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (connect(c[i], (struct sockaddr *)&a, len) == 0)
            queued++;
        else
            show("path: connect to a full backlog", -1);
    }
    say("path: connections queued with backlog 1", "%d", queued);
    /* A connection closed before accept is still accepted; reads EOF. */
    close(c[0]);
    int acc = accept(srv, NULL, NULL);
    show("path: accept closed connection", acc >= 0);
    show("path: read it", read(acc, buf, sizeof buf));
    close(acc);
    /* Closing the listener resets queued connections. */
    close(srv);
    show("path: queued connection after listener closed", read(c[1], buf, sizeof buf));
    show("path: and then", read(c[1], buf, sizeof buf));
    for (int i = 1; i < 4; i++)
        close(c[i]);
    show("path: connect after listener closed", connect(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&a, len));
    show("path: bind the name left behind", bind(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&a, len));
    show("path: unlink", unlink(a.sun_path));
    int again = socket(AF_UNIX, SOCK_STREAM, 0);
    show("path: bind after unlink", bind(again, (struct sockaddr *)&a, len));
    close(again);
    unlink(a.sun_path);
    close(conn);
    close(other);

    /* Errors of connect. */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    len = path_addr(&a, "missing");
    show("connect: missing path", connect(s, (struct sockaddr *)&a, len));
    len = path_addr(&a, "file");
    close(open(a.sun_path, O_CREAT | O_WRONLY, 0644));
    show("connect: regular file", connect(s, (struct sockaddr *)&a, len));
    len = path_addr(&a, "file/sub");
    show("connect: through a file", connect(s, (struct sockaddr *)&a, len));
    show("bind: through a file", bind(s, (struct sockaddr *)&a, len));
    len = path_addr(&a, "nodir/s");
    show("bind: missing directory", bind(s, (struct sockaddr *)&a, len));
    a.sun_family = AF_INET;
    show("bind: wrong family", bind(s, (struct sockaddr *)&a, len));
    show("bind: short address", bind(s, (struct sockaddr *)&a, 1));
    show("connect: family only", connect(s, (struct sockaddr *)&(struct sockaddr_un){AF_UNIX, ""}, 2));
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    len = path_addr(&a, "dg");
    bind(d, (struct sockaddr *)&a, len);
    show("connect: stream to a datagram socket", connect(s, (struct sockaddr *)&a, len));
    show("listen: datagram socket", listen(d, 1));
    close(d);
    unlink(a.sun_path);
    close(s);

    /* Abstract names. */
    srv = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    len = abstract_addr(&a, "seq");
    show("abstract: bind", bind(srv, (struct sockaddr *)&a, len));
    s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    show("abstract: bind taken", bind(s, (struct sockaddr *)&a, len));
    blen = sizeof b;
    getsockname(srv, (struct sockaddr *)&b, &blen);
    say("abstract: name", "same=%d", blen == len && memcmp(&a, &b, len) == 0);
    show("abstract: listen", listen(srv, 5));
    show("abstract: recv unconnected seqpacket", recv(s, buf, 1, MSG_DONTWAIT));
    show("abstract: send unconnected seqpacket", send(s, "a", 1, MSG_NOSIGNAL));
    show("abstract: connect", connect(s, (struct sockaddr *)&a, len));
    conn = accept(srv, NULL, NULL);
    show("abstract: records", send(s, "one", 3, 0) + send(s, "three", 5, 0));
    show("abstract: record 1", recv(conn, buf, sizeof buf, 0));
    show("abstract: record 2 cut", recv(conn, buf, 2, 0));
    show("abstract: nothing left", recv(conn, buf, sizeof buf, MSG_DONTWAIT));
    close(s);
    show("abstract: EOF", recv(conn, buf, sizeof buf, 0));
    show("abstract: send to closed", send(conn, "x", 1, MSG_NOSIGNAL));
    close(conn);
    close(srv);
    s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    show("abstract: connect after close", connect(s, (struct sockaddr *)&a, len));
    show("abstract: bind freed name", bind(s, (struct sockaddr *)&a, len));
    close(s);

    /* Autobind. */
    s = socket(AF_UNIX, SOCK_DGRAM, 0);
    show("autobind: bind family only", bind(s, (struct sockaddr *)&(struct sockaddr_un){AF_UNIX, ""}, 2));
    blen = sizeof b;
    getsockname(s, (struct sockaddr *)&b, &blen);
    say("autobind: name", "len=%d abstract=%d", (int)blen, b.sun_path[0] == 0);
    close(s);

    /* Datagrams between named sockets. */
    int ds = socket(AF_UNIX, SOCK_DGRAM, 0), dc = socket(AF_UNIX, SOCK_DGRAM, 0);
    len = path_addr(&a, "dsrv");
    bind(ds, (struct sockaddr *)&a, len);
    show("dgram: send unconnected no address", send(dc, "x", 1, 0));
    show("dgram: sendto unbound", sendto(dc, "anon", 4, 0, (struct sockaddr *)&a, len));
    plen = sizeof peer;
    show("dgram: recvfrom", recvfrom(ds, buf, sizeof buf, 0, (struct sockaddr *)&peer, &plen));
    say("dgram: unbound sender's address length", "%d", (int)plen);
    blen = path_addr(&b, "dcli");
    bind(dc, (struct sockaddr *)&b, blen);
    sendto(dc, "named", 5, 0, (struct sockaddr *)&a, len);
    plen = sizeof peer;
    recvfrom(ds, buf, sizeof buf, 0, (struct sockaddr *)&peer, &plen);
    say("dgram: sender's address", "%d", plen == blen && strcmp(peer.sun_path, b.sun_path) == 0);
    show("dgram: connect", connect(dc, (struct sockaddr *)&a, len));
    show("dgram: send connected", send(dc, "c", 1, 0));
    show("dgram: recv", recv(ds, buf, sizeof buf, 0));
    int third = socket(AF_UNIX, SOCK_DGRAM, 0);
    show("dgram: server connects to the client", connect(ds, (struct sockaddr *)&b, blen));
    show("dgram: a third may not send to it", sendto(third, "3", 1, 0, (struct sockaddr *)&a, len));
    show("dgram: disconnect", connect(ds, (struct sockaddr *)&(struct sockaddr_un){AF_UNSPEC, ""}, sizeof(sa_family_t)));
    show("dgram: now it may", sendto(third, "3", 1, 0, (struct sockaddr *)&a, len));
    /* The queue of a receiver not connected back: max_dgram_qlen + 1 messages. */
    int sent = 0;
    while (sendto(third, "q", 1, MSG_DONTWAIT, (struct sockaddr *)&a, len) == 1 && sent < 1000)
        sent++;
    show("dgram: full receiver", -1);
    say("dgram: more were queued", "%d", sent > 0);
    while (recv(ds, buf, sizeof buf, MSG_DONTWAIT) >= 0)
        ;
    close(ds);
    show("dgram: send to closed", send(dc, "x", 1, 0));
    show("dgram: send again", send(dc, "x", 1, 0));
    show("dgram: sendto closed", sendto(third, "x", 1, 0, (struct sockaddr *)&a, len));
    close(dc);
    close(third);
    unlink(a.sun_path);
    unlink(b.sun_path);
}

static void rights(void) {
    int sv[2], p[2], got[8], n, fl;
    char c, buf[64];
    pair(SOCK_STREAM, sv);
    if (pipe(p) < 0)
        fatal("pipe");
    int fds[2] = {p[1], p[0]};
    show("rights: send two", send_fds(sv[0], fds, 2, 'R'));
    close(p[1]);
    close(p[0]);
    write(sv[0], "after", 5);
    show("rights: peek", recv_fds(sv[1], got, &n, 2, MSG_PEEK, &fl, &c));
    say("rights: peeked fds", "%d", n);
    for (int i = 0; i < n; i++)
        close(got[i]);
    show("rights: recvmsg", recv_fds(sv[1], got, &n, 2, MSG_CMSG_CLOEXEC, &fl, &c));
    say("rights: received", "n=%d byte=%c ctrunc=%d cloexec=%d", n, c, !!(fl & MSG_CTRUNC),
        n ? fcntl(got[0], F_GETFD) & FD_CLOEXEC : -1);
    if (n == 2) {
        /* The originals are closed: the pipe lives on in the received descriptors. */
        show("rights: write through received end", write(got[0], "piped", 5));
        memset(buf, 0, sizeof buf);
        show("rights: read through received end", read(got[1], buf, sizeof buf));
        say("rights: piped", "%s", buf);
        close(got[0]);
        close(got[1]);
    }
    memset(buf, 0, sizeof buf);
    show("rights: data after the descriptors is read separately", read(sv[1], buf, sizeof buf));
    say("rights: data", "%s", buf);
    /* Too little control room: MSG_CTRUNC, the descriptors that do not fit are closed. */
    pipe(p);
    int three[3] = {p[0], p[1], p[0]};
    send_fds(sv[0], three, 3, 'T');
    show("rights: recv with room for one", recv_fds(sv[1], got, &n, 1, 0, &fl, &c));
    say("rights: truncated", "n=%d ctrunc=%d", n, !!(fl & MSG_CTRUNC));
    for (int i = 0; i < n; i++)
        close(got[i]);
    send_fds(sv[0], three, 1, 'Z');
    show("rights: recv with no control buffer", recv_fds(sv[1], got, &n, 0, 0, &fl, &c));
    say("rights: dropped", "n=%d ctrunc=%d", n, !!(fl & MSG_CTRUNC));
    close(p[0]);
    close(p[1]);
    /* A bad descriptor. */
    int bad = 999;
    show("rights: send a closed descriptor", send_fds(sv[0], &bad, 1, 'B'));
    /* Across fork: the child receives a file opened by the parent, and a socket. */
    char path[100];
    snprintf(path, sizeof path, "%s/passed", dir);
    int f = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    int inner[2];
    pair(SOCK_DGRAM, inner);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        int r[8], k, ff;
        char cc;
        recv_fds(sv[1], r, &k, 2, 0, &ff, &cc);
        if (k == 2) {
            write(r[0], "from child", 10);
            send(r[1], "dgram via passed socket", 23, 0);
        }
        _exit(k == 2 ? 0 : 3);
    }
    int two[2] = {f, inner[0]};
    send_fds(sv[0], two, 2, 'F');
    close(inner[0]);
    int status;
    waitpid(pid, &status, 0);
    say("rights: child status", "%d", WEXITSTATUS(status));
    memset(buf, 0, sizeof buf);
    show("rights: file offset is shared", lseek(f, 0, SEEK_CUR));
    pread(f, buf, sizeof buf, 0);
    say("rights: file", "%s", buf);
    memset(buf, 0, sizeof buf);
    show("rights: via the passed socket", recv(inner[1], buf, sizeof buf, MSG_DONTWAIT));
    close(f);
    close(inner[1]);
    close(sv[0]);
    close(sv[1]);
    unlink(path);
}

static void credentials(void) {
    int sv[2], on = 1;
    char buf[16], cbuf[CMSG_SPACE(sizeof(struct ucred))];
    pair(SOCK_DGRAM, sv);
    show("creds: SO_PASSCRED", setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on));
    int v = -1;
    socklen_t vl = sizeof v;
    getsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &v, &vl);
    say("creds: SO_PASSCRED value", "%d", v);
    pid_t pid = fork();
    if (pid == 0) {
        send(sv[0], "c", 1, 0);
        /* Explicit credentials: our own. */
        struct ucred uc = {getpid(), getuid(), getgid()};
        struct iovec iov = {"e", 1};
        struct msghdr m = {0};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = cbuf;
        m.msg_controllen = sizeof cbuf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_CREDENTIALS;
        c->cmsg_len = CMSG_LEN(sizeof uc);
        memcpy(CMSG_DATA(c), &uc, sizeof uc);
        _exit(sendmsg(sv[0], &m, 0) == 1 ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    say("creds: child status", "%d", WEXITSTATUS(status));
    for (int i = 0; i < 2; i++) {
        struct iovec iov = {buf, sizeof buf};
        struct msghdr m = {0};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = cbuf;
        m.msg_controllen = sizeof cbuf;
        ssize_t r = recvmsg(sv[1], &m, 0);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        struct ucred uc = {0};
        if (c && c->cmsg_type == SCM_CREDENTIALS)
            memcpy(&uc, CMSG_DATA(c), sizeof uc);
        say("creds: message", "r=%ld type=%d pid_is_child=%d uid=%d", (long)r,
            c ? c->cmsg_type : -1, uc.pid == pid, uc.uid == getuid());
    }
    /* Without SO_PASSCRED no credentials arrive. */
    send(sv[1], "n", 1, 0);
    struct iovec iov = {buf, sizeof buf};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    recvmsg(sv[0], &m, 0);
    say("creds: without SO_PASSCRED", "controllen=%d", (int)m.msg_controllen);
    close(sv[0]);
    close(sv[1]);
}

static void options(void) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0), v;
    socklen_t vl;
#define GET(name, opt)                                                                      \
    do {                                                                                    \
        v = -12345;                                                                         \
        vl = sizeof v;                                                                      \
        int r_ = getsockopt(s, SOL_SOCKET, opt, &v, &vl);                                   \
        if (r_ < 0)                                                                         \
            show(name, r_);                                                                 \
        else                                                                                \
            say(name, "%d (len %d)", v, (int)vl);                                           \
    } while (0)
    GET("opt: SO_TYPE", SO_TYPE);
    GET("opt: SO_DOMAIN", SO_DOMAIN);
    GET("opt: SO_PROTOCOL", SO_PROTOCOL);
    GET("opt: SO_ERROR", SO_ERROR);
    GET("opt: SO_SNDBUF default", SO_SNDBUF);
    GET("opt: SO_RCVBUF default", SO_RCVBUF);
    GET("opt: SO_ACCEPTCONN", SO_ACCEPTCONN);
    GET("opt: SO_PASSCRED", SO_PASSCRED);
    v = 65536;
    show("opt: set SO_SNDBUF", setsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, sizeof v));
    GET("opt: SO_SNDBUF", SO_SNDBUF);
    v = 50000;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
    GET("opt: SO_RCVBUF", SO_RCVBUF);
    v = 1;
    show("opt: set SO_REUSEADDR", setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &v, sizeof v));
    GET("opt: SO_REUSEADDR", SO_REUSEADDR);
    show("opt: set SO_KEEPALIVE", setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &v, sizeof v));
    show("opt: short value", setsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, 2));
    show("opt: unknown option", setsockopt(s, SOL_SOCKET, 9999, &v, sizeof v));
    show("opt: other level", setsockopt(s, 6, 1, &v, sizeof v));
    v = 0;
    vl = sizeof v;
    show("opt: get other level", getsockopt(s, 6, 1, &v, &vl));
    struct ucred cr;
    vl = sizeof cr;
    getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &vl);
    say("opt: SO_PEERCRED unconnected", "pid=%d uid=%d gid=%d", cr.pid, (int)cr.uid, (int)cr.gid);
    show("opt: getsockopt on a pipe", getsockopt(0 * 0 + 1000, SOL_SOCKET, SO_TYPE, &v, &vl));
    int p[2];
    pipe(p);
    show("opt: getsockopt not a socket", getsockopt(p[0], SOL_SOCKET, SO_TYPE, &v, &vl));
    close(p[0]);
    close(p[1]);
    close(s);
    show("socketpair: AF_INET", socketpair(AF_INET, SOCK_STREAM, 0, p));
}

static void signals(void) {
    /* A blocked recv, interrupted by a signal: EINTR without SA_RESTART; with it the call
     * goes on and gets the data sent after the signal. */
    for (int restart = 0; restart < 2; restart++) {
        int sv[2], ready[2];
        pair(SOCK_STREAM, sv);
        pipe(ready);
        pid_t pid = fork();
        if (pid == 0) {
            struct sigaction sa = {0};
            sa.sa_handler = on_sigusr1;
            sa.sa_flags = restart ? SA_RESTART : 0;
            sigaction(SIGUSR1, &sa, NULL);
            char b[16] = {0};
            write(ready[1], "r", 1);
            ssize_t r = recv(sv[1], b, sizeof b, 0);
            printf("signal: %s recv: %ld %s got=%s handled=%d\n", restart ? "SA_RESTART" : "plain",
                   (long)r, r < 0 ? ename(errno) : "-", r > 0 ? b : "", (int)sigusr1s);
            fflush(stdout);
            _exit(0);
        }
        char c;
        read(ready[0], &c, 1);
        usleep(300000); /* time for the child to block in recv */
        kill(pid, SIGUSR1);
        usleep(200000);
        write(sv[0], "late", 4);
        waitpid(pid, NULL, 0);
        close(sv[0]);
        close(sv[1]);
        close(ready[0]);
        close(ready[1]);
    }
    /* A blocked accept in a child, and a connect that wakes it; a large transfer between
     * processes. */
    int sv[2];
    pair(SOCK_STREAM, sv);
    pid_t pid = fork();
    if (pid == 0) {
        static char b[1 << 20];
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (char)(i * 7);
        size_t off = 0;
        while (off < sizeof b) {
            ssize_t w = write(sv[0], b + off, sizeof b - off);
            if (w <= 0)
                _exit(1);
            off += w;
        }
        _exit(0);
    }
    close(sv[0]);
    static char b[1 << 20];
    size_t got = 0;
    ssize_t r;
    while ((r = read(sv[1], b + got, sizeof b - got)) > 0)
        got += r;
    int good = got == sizeof b;
    for (size_t i = 0; good && i < sizeof b; i++)
        good = b[i] == (char)(i * 7);
    int status;
    waitpid(pid, &status, 0);
    say("transfer: 1 MiB between processes", "got=%zu intact=%d eof=%ld child=%d", got, good, (long)r, WEXITSTATUS(status));
    close(sv[1]);
}

static void big_blocking_write(void) {
    /* A blocking write larger than the send buffer is queued whole while a reader drains
     * it. */
    int sv[2], small = 4096, status;
    pair(SOCK_STREAM, sv);
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        char t[4096];
        long tot = 0;
        ssize_t k;
        while ((k = read(sv[1], t, sizeof t)) > 0)
            tot += k;
        _exit(tot == 200000 ? 0 : 1);
    }
    close(sv[1]);
    static char w[200000];
    show("stream: blocking write beyond SO_SNDBUF", write(sv[0], w, sizeof w));
    close(sv[0]);
    waitpid(pid, &status, 0);
    say("stream: reader got everything", "%d", WEXITSTATUS(status) == 0);
}

static void chain(void) {
    /* 450 socketpairs, each pair's two ends in flight in the next pair's queue; closing the
     * last one closes them all (a chain the kernel must not follow recursively). Fewer
     * than RLIMIT_NOFILE's 1024 descriptors are in flight at once, as Linux demands of a
     * process without CAP_SYS_RESOURCE. */
    int prev[2] = {-1, -1}, ok = 1;
    for (int i = 0; i < 450; i++) {
        int sv[2];
        pair(SOCK_STREAM, sv);
        if (prev[0] >= 0) {
            ok &= send_fds(sv[0], prev, 2, 'c') == 1;
            close(prev[0]);
            close(prev[1]);
        }
        prev[0] = sv[0];
        prev[1] = sv[1];
    }
    close(prev[0]);
    close(prev[1]);
    int sv[2];
    pair(SOCK_STREAM, sv);
    say("chain: 450 sockets in flight in each other, closed", "sent=%d next=%ld", ok,
        (long)write(sv[0], "x", 1));
    close(sv[0]);
    close(sv[1]);
}

static void timeouts(void) {
    /* SO_RCVTIMEO/SO_SNDTIMEO: a wait gives up with EAGAIN. */
    int sv[2];
    char buf[8];
    pair(SOCK_STREAM, sv);
    struct timeval tv = {0, 200000}, got;
    show("timeout: set SO_RCVTIMEO", setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
    socklen_t l = sizeof got;
    getsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &got, &l);
    say("timeout: SO_RCVTIMEO", "%ld.%06ld len=%d", (long)got.tv_sec, (long)got.tv_usec, (int)l);
    show("timeout: recv", recv(sv[0], buf, sizeof buf, 0));
    struct timeval bad = {0, 1000000};
    show("timeout: usec out of range", setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &bad, sizeof bad));
    show("timeout: set SO_SNDTIMEO", setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv));
    static char big[65536];
    ssize_t r;
    while ((r = send(sv[0], big, sizeof big, 0)) > 0)
        ;
    show("timeout: send to a full socket", r);
    int srv = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a;
    socklen_t len = abstract_addr(&a, "timeo");
    bind(srv, (struct sockaddr *)&a, len);
    listen(srv, 1);
    setsockopt(srv, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    show("timeout: accept", accept(srv, NULL, NULL));
    close(srv);
    close(sv[0]);
    close(sv[1]);
}

static void fork_sharing(void) {
    /* The socket is one open file in both processes: the peer sees EOF only when the
     * last descriptor (in the child) is closed. */
    int sv[2], go[2];
    char buf[8];
    pair(SOCK_STREAM, sv);
    pipe(go);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        char c;
        read(go[0], &c, 1);
        write(sv[1], "child", 5);
        _exit(0);
    }
    close(sv[1]);
    close(go[0]);
    say("fork: peer still open after parent closed its copy", "%#x", revents(sv[0], POLLIN | POLLOUT | POLLRDHUP));
    write(go[1], "g", 1);
    show("fork: read from child", read(sv[0], buf, sizeof buf));
    waitpid(pid, NULL, 0);
    show("fork: EOF after child exit", read(sv[0], buf, sizeof buf));
    close(sv[0]);
    close(go[1]);
}

int main(void) {
    signal(SIGPIPE, on_sigpipe);
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(dir, sizeof dir, "/tmp/unix-sockets-XXXXXX");
    if (!mkdtemp(dir))
        fatal("mkdtemp");
    stream_pair();
    dgram_pair(SOCK_DGRAM, "dgram");
    dgram_pair(SOCK_SEQPACKET, "seqpacket");
    names();
    rights();
    credentials();
    options();
    signals();
    big_blocking_write();
    chain();
    timeouts();
    fork_sharing();
    char path[100];
    snprintf(path, sizeof path, "%s/file", dir);
    unlink(path);
    show("cleanup", rmdir(dir));
    return 0;
}
