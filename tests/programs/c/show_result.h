/* "what: result" lines for the programs compared with their native run: a result, or -1 and
 * the errno's name (names, not numbers or strerror texts, which differ between libcs); what
 * /proc/self/maps shows; a child run in order with its parent's lines. */
#ifndef SHOW_RESULT_H
#define SHOW_RESULT_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *errno_name(void) {
    switch (errno) {
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    case ESRCH: return "ESRCH";
    case EFAULT: return "EFAULT";
    case ENOMEM: return "ENOMEM";
    case EEXIST: return "EEXIST";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EIDRM: return "EIDRM";
    case ENODEV: return "ENODEV";
    case ENOTTY: return "ENOTTY";
    case EAGAIN: return "EAGAIN";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EADDRINUSE: return "EADDRINUSE";
    case ENOBUFS: return "ENOBUFS";
    case ESOCKTNOSUPPORT: return "ESOCKTNOSUPPORT";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case ENOTDIR: return "ENOTDIR";
    case EBADF: return "EBADF";
    case ECHILD: return "ECHILD";
    case E2BIG: return "E2BIG";
    case ELOOP: return "ELOOP";
    case EXDEV: return "EXDEV";
    default: return "other";
    }
}

/* "what: r", or "what: -1 ERRNO" for a negative `r`. */
static void show(const char *what, long r) {
    if (r < 0)
        printf("%s: -1 %s\n", what, errno_name());
    else
        printf("%s: %ld\n", what, r);
}

/* The lines of /proc/self/maps that contain `a` and `b` (NULL: anything). */
static inline int maps_lines(const char *a, const char *b) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, a) && (!b || strstr(line, b)))
            n++;
    if (f)
        fclose(f);
    return n;
}

/* Room for `pages` pages of 4 KiB, reserved and then released, so that mappings can be
 * placed there with MAP_FIXED next to each other. */
static inline char *room(size_t pages) {
    char *r = mmap(NULL, pages * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    munmap(r, pages * 4096);
    return r;
}

/* Runs `f` in a child and waits for it (stdout flushed first, so lines stay in order). */
static inline void in_child(void (*f)(void)) {
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        f();
        fflush(stdout);
        _exit(0);
    }
    waitpid(c, NULL, 0);
}

#endif
