/* Issue 10 (the guest kernel survives any program): a program maps small regions without
 * end. Linux bounds the mappings of a process (vm.max_map_count, 65530): mmap, and the
 * mprotect/munmap that would split a region, fail with ENOMEM beyond it. Usage:
 * klimits-mmaps [MAX] (default 1000000). The regions alternate their rights so that no two
 * neighbours merge (Linux merges neighbours with equal rights). Prints the number of
 * successful mmaps, the error that stopped them, and what splitting calls do at the limit.
 * With "file PATH": maps the whole file privately (larger than the guest kernel's heap in
 * the test) and prints its size and a hash of its bytes. With "procs N": N processes map
 * at once (together more than a small guest kernel's heap can hold) and each reports how
 * far it got. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *name(int e) {
    switch (e) {
    case ENOMEM: return "ENOMEM";
    case EINVAL: return "EINVAL";
    case EAGAIN: return "EAGAIN";
    case EFAULT: return "EFAULT";
    default: return "other";
    }
}

static const char *err(int r) { return r == 0 ? "ok" : name(errno); }

static int map_file(const char *path) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror(path);
        return 1;
    }
    unsigned char *p = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        printf("mmap of %lld bytes: %s\n", (long long)st.st_size, name(errno));
        return 0;
    }
    unsigned long long h = 1469598103934665603ULL;
    for (off_t i = 0; i < st.st_size; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    printf("mapped %lld bytes, hash %016llx\n", (long long)st.st_size, h);
    printf("munmap: %s\n", err(munmap(p, st.st_size)));
    return 0;
}

#include <sched.h>
#include <sys/wait.h>

/* N children map small regions until refused, all at the same time (together more than a
 * small guest kernel's heap holds); each records its count and error in a shared page and
 * waits there until all are done, so all hold their regions at once. Nothing else is asked
 * of the kernel until they exit: with its heap short, the kernel refuses what needs it.
 * The children start mapping only once all of them exist (`go`): on a loaded host the
 * first ones could otherwise take the heap before the parent's last forks, which the
 * kernel then refuses, and the children would wait for brothers that never come. A fork
 * that fails anyway is reported, and the others wait only for the children that exist. */
static int procs(int n) {
    struct shared {
        volatile long done;
        volatile long go;
        volatile long started;
        volatile long count[64];
        volatile int err[64];
    } *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED || n > 64)
        return 1;
    int started = 0;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "fork %d: %s\n", i, name(errno));
            break;
        }
        if (pid > 0) {
            started++;
            continue;
        }
        {
            while (!__atomic_load_n(&sh->go, __ATOMIC_SEQ_CST))
                sched_yield();
            long k = 0;
            for (;; k++) {
                int prot = (k & 1) ? PROT_READ : PROT_READ | PROT_WRITE;
                if (mmap(NULL, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED)
                    break;
            }
            sh->count[i] = k;
            sh->err[i] = errno;
            __atomic_add_fetch(&sh->done, 1, __ATOMIC_SEQ_CST);
            while (__atomic_load_n(&sh->done, __ATOMIC_SEQ_CST) < __atomic_load_n(&sh->started, __ATOMIC_SEQ_CST))
                sched_yield();
            _exit(0);
        }
    }
    __atomic_store_n(&sh->started, started, __ATOMIC_SEQ_CST);
    __atomic_store_n(&sh->go, 1, __ATOMIC_SEQ_CST);
    int ok = 0, st;
    while (wait(&st) > 0)
        ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
    long total = 0;
    int enomem = 0;
    for (int i = 0; i < n; i++) {
        total += sh->count[i];
        enomem += sh->err[i] == ENOMEM;
        fprintf(stderr, "process %d: %ld mmaps, then %s\n", i, sh->count[i], name(sh->err[i]));
    }
    printf("%d processes, %d stopped by ENOMEM, %d exited 0\n", n, enomem, ok);
    fprintf(stderr, "total mmaps: %ld\n", total);
    void *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED)
        memset(p, 1, 1 << 20);
    printf("mmap after: %s\n", p == MAP_FAILED ? name(errno) : "ok");
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "file") == 0)
        return map_file(argv[2]);
    if (argc > 2 && strcmp(argv[1], "procs") == 0)
        return procs(atoi(argv[2]));
    long max = argc > 1 ? atol(argv[1]) : 1000000;
    /* A region to split later. */
    char *big = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (big == MAP_FAILED) {
        perror("mmap big");
        return 1;
    }
    big[0] = 1;
    long n = 0;
    int e = 0;
    void *last[4] = {0};
    for (; n < max; n++) {
        int prot = (n & 1) ? PROT_READ : PROT_READ | PROT_WRITE;
        void *p = mmap(NULL, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            e = errno;
            break;
        }
        last[n & 3] = p;
    }
    printf("mmaps %ld stopped by %s\n", n / 64, e ? name(e) : "none");
    fprintf(stderr, "exact mmaps: %ld\n", n);
    if (n == max)
        return 0;
    /* At the limit: splitting a region needs one more mapping. */
    printf("munmap middle: %s\n", err(munmap(big + 4096, 4096)));
    printf("mprotect middle: %s\n", err(mprotect(big + 4096, 4096, PROT_READ)));
    printf("munmap whole small: %s\n", err(munmap(last[0], 4096)));
    printf("munmap whole small: %s\n", err(munmap(last[1], 4096)));
    printf("munmap whole small: %s\n", err(munmap(last[2], 4096)));
    printf("mprotect middle after freeing 3: %s\n",
           err(mprotect(big + 4096, 4096, PROT_READ | PROT_WRITE)));
    printf("mmap after: %s\n",
           mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED
               ? name(errno)
               : "ok");
    return 0;
}
