/* inotify-dir: the events inotify reports for a directory while files in it are created,
 * written, closed, changed, renamed and removed, and for a watched file; IN_ONESHOT,
 * IN_MASK_ADD, IN_MASK_CREATE, IN_ONLYDIR, inotify_rm_watch, FIONREAD, poll, a read buffer
 * too small, and the watched directory's own removal. Every line prints what the calls
 * returned, so the run in a guest is compared line by line with the native one. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *en(int e) {
    switch (e) {
    case 0: return "0";
    case EINVAL: return "EINVAL";
    case EEXIST: return "EEXIST";
    case ENOENT: return "ENOENT";
    case ENOTDIR: return "ENOTDIR";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    default: return "other";
    }
}

static void mask_names(unsigned m, char *out, size_t n) {
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {
        {IN_ACCESS, "ACCESS"},         {IN_MODIFY, "MODIFY"},
        {IN_ATTRIB, "ATTRIB"},         {IN_CLOSE_WRITE, "CLOSE_WRITE"},
        {IN_CLOSE_NOWRITE, "CLOSE_NOWRITE"}, {IN_OPEN, "OPEN"},
        {IN_MOVED_FROM, "MOVED_FROM"}, {IN_MOVED_TO, "MOVED_TO"},
        {IN_CREATE, "CREATE"},         {IN_DELETE, "DELETE"},
        {IN_DELETE_SELF, "DELETE_SELF"}, {IN_MOVE_SELF, "MOVE_SELF"},
        {IN_Q_OVERFLOW, "Q_OVERFLOW"}, {IN_IGNORED, "IGNORED"},
        {IN_ISDIR, "ISDIR"},
    };
    out[0] = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (m & names[i].bit) {
            if (out[0])
                strncat(out, "|", n - strlen(out) - 1);
            strncat(out, names[i].name, n - strlen(out) - 1);
        }
}

/* Reads and prints every queued event; wd printed relative to `wd0`; the first nonzero
 * cookie seen is called "c1" and equal ones are named the same. */
static void dump(const char *title, int fd, int wd0) {
    char buf[4096] __attribute__((aligned(8)));
    unsigned first_cookie = 0;
    printf("%s:\n", title);
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) {
            printf("  end: n=%zd errno=%s\n", n, n < 0 ? en(errno) : "0");
            break;
        }
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *e = (struct inotify_event *)p;
            char m[256];
            mask_names(e->mask, m, sizeof m);
            const char *ck = "-";
            if (e->cookie) {
                if (!first_cookie)
                    first_cookie = e->cookie;
                ck = e->cookie == first_cookie ? "c1" : "other";
            }
            printf("  wd=%d %s name=%s cookie=%s len%%16=%u\n", e->wd - wd0, m,
                   e->len ? e->name : "-", ck, e->len % 16);
            p += sizeof *e + e->len;
        }
    }
    fflush(stdout);
}

int main(void) {
    char dir[] = "/tmp/inotify-dir-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char a[256], b[256], sub[256], c[256];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(c, sizeof c, "%s/c", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);

    errno = 0;
    int r = inotify_init1(0x1234);
    printf("inotify_init1(bad flags): r=%d errno=%s\n", r, en(errno));
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    printf("inotify_init1: ok=%d cloexec=%d\n", in >= 0, (fcntl(in, F_GETFD) & FD_CLOEXEC) != 0);
    unsigned mask = IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM |
                    IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF;
    int wd = inotify_add_watch(in, dir, mask);
    printf("add_watch dir: ok=%d\n", wd > 0);
    errno = 0;
    r = inotify_add_watch(in, dir, 0);
    printf("add_watch no events: r=%d errno=%s\n", r, en(errno));
    errno = 0;
    r = inotify_add_watch(in, "/nonexistent-inotify", IN_CREATE);
    printf("add_watch missing: r=%d errno=%s\n", r, en(errno));
    errno = 0;
    r = inotify_add_watch(0 + 999, dir, IN_CREATE);
    printf("add_watch bad fd: r=%d errno=%s\n", r, en(errno));
    errno = 0;
    r = inotify_add_watch(1, dir, IN_CREATE);
    printf("add_watch not inotify: r=%d errno=%s\n", r, en(errno));
    errno = 0;
    r = read(in, a + 200, 1);
    printf("read nothing queued: r=%d errno=%s\n", r, en(errno));

    /* The sequence. */
    int fd = open(a, O_CREAT | O_WRONLY, 0644);
    write(fd, "one", 3);
    write(fd, "two", 3);
    close(fd);
    chmod(a, 0600);
    rename(a, b);
    mkdir(sub, 0755);
    rmdir(sub);
    fd = open(b, O_RDONLY);
    close(fd);
    int avail = -1;
    ioctl(in, FIONREAD, &avail);
    printf("FIONREAD: %d\n", avail);
    struct pollfd pf = {in, POLLIN, 0};
    r = poll(&pf, 1, 0);
    printf("poll: r=%d revents=%#x\n", r, pf.revents);
    {
        char small[8];
        errno = 0;
        r = read(in, small, sizeof small);
        printf("read too small: r=%d errno=%s\n", r, en(errno));
    }
    unlink(b);
    dump("directory events", in, wd);

    /* A watched file: its own events (no name) alongside the directory's. */
    int in2 = inotify_init1(IN_NONBLOCK);
    fd = open(c, O_CREAT | O_WRONLY, 0644);
    close(fd);
    int wf = inotify_add_watch(in2, c, IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_DELETE_SELF);
    errno = 0;
    r = inotify_add_watch(in2, c, IN_MODIFY | IN_ONLYDIR);
    printf("add_watch IN_ONLYDIR on a file: r=%d errno=%s\n", r, en(errno));
    errno = 0;
    r = inotify_add_watch(in2, c, IN_MODIFY | IN_MASK_CREATE);
    printf("add_watch IN_MASK_CREATE existing: r=%d errno=%s\n", r, en(errno));
    errno = 0;
    r = inotify_add_watch(in2, c, IN_MODIFY | IN_MASK_CREATE | IN_MASK_ADD);
    printf("add_watch MASK_CREATE|MASK_ADD: r=%d errno=%s\n", r, en(errno));
    r = inotify_add_watch(in2, c, IN_MOVE_SELF | IN_MASK_ADD);
    printf("add_watch IN_MASK_ADD: same wd=%d\n", r == wf);
    fd = open(c, O_WRONLY | O_APPEND);
    write(fd, "x", 1);
    close(fd);
    unlink(c);
    dump("file events", in2, wf);
    dump("directory events for the file", in, wd);

    /* One-shot and rm_watch. */
    int in3 = inotify_init1(IN_NONBLOCK);
    int w1 = inotify_add_watch(in3, dir, IN_CREATE | IN_ONESHOT);
    fd = open(a, O_CREAT | O_WRONLY, 0644);
    close(fd);
    fd = open(b, O_CREAT | O_WRONLY, 0644);
    close(fd);
    dump("oneshot", in3, w1);
    int w2 = inotify_add_watch(in3, dir, IN_DELETE);
    printf("new watch after oneshot: ok=%d\n", w2 > 0);
    r = inotify_rm_watch(in3, w2);
    printf("rm_watch: r=%d\n", r);
    errno = 0;
    r = inotify_rm_watch(in3, w2);
    printf("rm_watch again: r=%d errno=%s\n", r, en(errno));
    dump("after rm_watch", in3, w2);
    close(in3);

    /* Every event: opens, reads and closes too. */
    {
        char d[256], rb[16];
        snprintf(d, sizeof d, "%s/d", dir);
        int in4 = inotify_init1(IN_NONBLOCK);
        int w4 = inotify_add_watch(in4, dir, IN_ALL_EVENTS);
        fd = open(d, O_CREAT | O_WRONLY, 0644);
        write(fd, "data", 4);
        close(fd);
        fd = open(d, O_RDONLY);
        read(fd, rb, sizeof rb);
        read(fd, rb, sizeof rb);
        close(fd);
        fd = open(d, O_WRONLY | O_TRUNC);
        close(fd);
        unlink(d);
        dump("all events", in4, w4);
        close(in4);
    }

    /* The watched directory goes away. */
    unlink(a);
    unlink(b);
    dump("directory emptied", in, wd);
    rmdir(dir);
    dump("directory removed", in, wd);
    printf("done\n");
    return 0;
}
