/* inotify across a kernel hand-over (tests/tests/upgrade.rs). DIR must be an empty
 * directory. Creates DIR/keep, watches DIR (wd 1: create, delete, moves, modify,
 * close-write) and DIR/keep (wd 2: modify, attrib), opens DIR/keep for writing, then
 * creates DIR/a and renames it to DIR/b: four events queued, none read. Writes "ready" to
 * OUT and waits for the file GO; the caller upgrades the kernel in between. Then writes to
 * DIR/keep through the descriptor opened before, creates DIR/c and renames it to DIR/d,
 * watches DIR/d (wd 3), reads every queued event and writes one line to OUT:
 *   events WD:MASK:NAME:COOKIE ... wd W
 * MASK in hex, COOKIE "-" for none, else the rename's number in the order first seen (the
 * events of one rename share it; two renames never do). Run natively, it gives what Linux
 * gives; any failure is a line starting with "error". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

static const char *out_path;

static void say(const char *text) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.new", out_path);
    FILE *f = fopen(tmp, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, out_path) != 0) {
        perror(out_path);
        exit(1);
    }
}

static void fail(const char *what) {
    char line[512];
    snprintf(line, sizeof line, "error %s: %s\n", what, strerror(errno));
    say(line);
    exit(1);
}

static void at(char *buf, size_t len, const char *dir, const char *name) {
    snprintf(buf, len, "%s/%s", dir, name);
}

static void touch(const char *dir, const char *name) {
    char p[4096];
    at(p, sizeof p, dir, name);
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0 || close(fd) != 0)
        fail("create");
}

static void move(const char *dir, const char *from, const char *to) {
    char a[4096], b[4096];
    at(a, sizeof a, dir, from);
    at(b, sizeof b, dir, to);
    if (rename(a, b) != 0)
        fail("rename");
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: handover-inotify OUT DIR GO\n");
        return 2;
    }
    out_path = argv[1];
    const char *dir = argv[2];
    char keep[4096];
    at(keep, sizeof keep, dir, "keep");
    touch(dir, "keep");
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (in < 0)
        fail("inotify_init1");
    if (inotify_add_watch(in, dir,
                          IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY |
                              IN_CLOSE_WRITE) != 1)
        fail("watch DIR");
    if (inotify_add_watch(in, keep, IN_MODIFY | IN_ATTRIB) != 2)
        fail("watch keep");
    int kfd = open(keep, O_WRONLY);
    if (kfd < 0)
        fail("open keep");
    touch(dir, "a");
    move(dir, "a", "b");
    say("ready\n");
    while (access(argv[3], F_OK) != 0)
        usleep(10000);
    if (write(kfd, "x", 1) != 1)
        fail("write keep");
    touch(dir, "c");
    move(dir, "c", "d");
    char d[4096];
    at(d, sizeof d, dir, "d");
    int wd = inotify_add_watch(in, d, IN_ATTRIB);
    if (wd < 0)
        fail("watch d");
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    char line[4096] = "events";
    unsigned cookies[16];
    int ncookies = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0)
            fail("read");
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *e = (struct inotify_event *)p;
            char cookie[16] = "-";
            if (e->cookie) {
                int i = 0;
                while (i < ncookies && cookies[i] != e->cookie)
                    i++;
                if (i == ncookies && ncookies < 16)
                    cookies[ncookies++] = e->cookie;
                snprintf(cookie, sizeof cookie, "%d", i + 1);
            }
            snprintf(line + strlen(line), sizeof line - strlen(line), " %d:%x:%s:%s", e->wd,
                     e->mask, e->len ? e->name : "", cookie);
            p += sizeof *e + e->len;
        }
    }
    snprintf(line + strlen(line), sizeof line - strlen(line), " wd %d\n", wd);
    say(line);
    return 0;
}
