/* shared-anon: MAP_SHARED|MAP_ANONYMOUS memory must stay shared between processes across
 * fork, in both directions, for pages touched before the fork and pages never touched, and
 * through mremap, munmap, mprotect, MADV_DONTNEED, threads and the exec of another sharer.
 * One line per case, "NAME: ok" or "NAME: FAIL ..."; the exit status is the number of
 * failures. The output is deterministic, so it can be compared with the native run.
 *
 * With the argument "exec-child" it is the program a sharer execs (it exits at once). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL

static int failures;
static const char *self_path;

static void report(const char *name, int ok, const char *detail) {
    if (ok)
        printf("%s: ok\n", name);
    else {
        printf("%s: FAIL %s\n", name, detail);
        failures++;
    }
    fflush(stdout);
}

static unsigned char *map_shared(size_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(100);
    }
    return p;
}

/* Runs fn(arg) in a forked child and returns its exit status (0 = fine). */
static int in_child(int (*fn)(unsigned char *), unsigned char *arg) {
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(101);
    }
    if (pid == 0)
        _exit(fn(arg));
    int st = 0;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 200 + WTERMSIG(st);
}

/* A pipe pair used as a one-byte semaphore between parent and child. */
struct chan {
    int to_child[2], to_parent[2];
};

static void chan_open(struct chan *c) {
    if (pipe(c->to_child) || pipe(c->to_parent)) {
        perror("pipe");
        exit(102);
    }
}

static void post(int fd) {
    char b = 1;
    if (write(fd, &b, 1) != 1)
        _exit(103);
}

/* Waits for the other side; 0 if it went away instead (its end of the pipe closed). */
static int await(int fd) {
    char b;
    return read(fd, &b, 1) == 1;
}

/* After fork: each side keeps only its own ends, so a side that dies unblocks the other. */
static void chan_keep(struct chan *c, int child) {
    close(child ? c->to_child[1] : c->to_child[0]);
    close(child ? c->to_parent[0] : c->to_parent[1]);
}

static void chan_close(struct chan *c, int child) {
    close(child ? c->to_child[0] : c->to_child[1]);
    close(child ? c->to_parent[1] : c->to_parent[0]);
}

/* --- the cases --- */

static int child_writes_untouched(unsigned char *p) {
    p[0] = 0xa1;
    p[PAGE * 3 + 7] = 0xa2;
    return 0;
}

static void untouched_child_to_parent(void) {
    unsigned char *p = map_shared(PAGE * 4);
    int st = in_child(child_writes_untouched, p);
    char d[96];
    snprintf(d, sizeof d, "child %d, parent sees %#x %#x", st, p[0], p[PAGE * 3 + 7]);
    report("untouched page, child writes, parent reads", st == 0 && p[0] == 0xa1 &&
           p[PAGE * 3 + 7] == 0xa2, d);
    munmap(p, PAGE * 4);
}

static int child_writes_touched(unsigned char *p) {
    if (p[0] != 0x11)
        return 1;
    p[0] = 0x22;
    return 0;
}

static void touched_child_to_parent(void) {
    unsigned char *p = map_shared(PAGE);
    p[0] = 0x11;
    int st = in_child(child_writes_touched, p);
    char d[64];
    snprintf(d, sizeof d, "child %d, parent sees %#x", st, p[0]);
    report("touched page, child writes, parent reads", st == 0 && p[0] == 0x22, d);
    munmap(p, PAGE);
}

/* The parent writes after the fork; the child, which has not touched the page either,
 * must see it. `touch_first` makes the parent touch the page before the fork. */
static void parent_to_child(const char *name, int touch_first) {
    unsigned char *p = map_shared(PAGE * 2);
    if (touch_first)
        p[PAGE] = 1;
    struct chan c;
    chan_open(&c);
    pid_t pid = fork();
    if (pid == 0) {
        chan_keep(&c, 1);
        int ok = await(c.to_child[0]) && p[PAGE] == 0x5a && p[PAGE + 100] == 0x5b;
        /* And back: the child's write in the page the parent wrote. */
        p[PAGE + 200] = 0x5c;
        _exit(ok ? 0 : 1);
    }
    chan_keep(&c, 0);
    p[PAGE] = 0x5a;
    p[PAGE + 100] = 0x5b;
    post(c.to_child[1]);
    int st;
    waitpid(pid, &st, 0);
    char d[64];
    snprintf(d, sizeof d, "child status %#x, parent sees %#x", st, p[PAGE + 200]);
    report(name, WIFEXITED(st) && WEXITSTATUS(st) == 0 && p[PAGE + 200] == 0x5c, d);
    chan_close(&c, 0);
    munmap(p, PAGE * 2);
}

/* Ping-pong: both keep writing alternately into fresh pages of a large mapping. */
static void ping_pong(void) {
    const int rounds = 64;
    unsigned char *p = map_shared(PAGE * rounds);
    struct chan c;
    chan_open(&c);
    pid_t pid = fork();
    if (pid == 0) {
        chan_keep(&c, 1);
        for (int i = 0; i < rounds; i += 2) {
            if (!await(c.to_child[0]) || p[PAGE * i] != (unsigned char)(i + 1))
                _exit(1);
            p[PAGE * (i + 1)] = (unsigned char)(i + 2);
            post(c.to_parent[1]);
        }
        _exit(0);
    }
    chan_keep(&c, 0);
    int ok = 1;
    for (int i = 0; i < rounds && ok; i += 2) {
        p[PAGE * i] = (unsigned char)(i + 1);
        post(c.to_child[1]);
        if (!await(c.to_parent[0]) || p[PAGE * (i + 1)] != (unsigned char)(i + 2))
            ok = 0;
    }
    chan_close(&c, 0);
    int st;
    waitpid(pid, &st, 0);
    report("ping-pong over 64 fresh pages", ok && WIFEXITED(st) && WEXITSTATUS(st) == 0,
           "a write was lost");
    munmap(p, PAGE * rounds);
}

/* Two children of the same parent share with each other, not only with the parent. */
static void siblings(void) {
    unsigned char *p = map_shared(PAGE);
    struct chan c;
    chan_open(&c);
    pid_t a = fork();
    if (a == 0) {
        p[10] = 0x77;
        post(c.to_child[1]);
        _exit(0);
    }
    pid_t b = fork();
    if (b == 0) {
        close(c.to_child[1]);
        _exit(await(c.to_child[0]) && p[10] == 0x77 ? 0 : 1);
    }
    chan_close(&c, 0);
    chan_close(&c, 1);
    int sa, sb;
    waitpid(a, &sa, 0);
    waitpid(b, &sb, 0);
    report("siblings share an untouched page", sa == 0 && sb == 0 && p[10] == 0x77,
           "sibling did not see the write");
    munmap(p, PAGE);
}

/* A grandchild forked from a child that never touched the page. */
static int grandchild_case(unsigned char *p) {
    pid_t pid = fork();
    if (pid == 0) {
        p[PAGE + 1] = 0x99;
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    return p[PAGE + 1] == 0x99 ? 0 : 1;
}

static void grandchild(void) {
    unsigned char *p = map_shared(PAGE * 2);
    int st = in_child(grandchild_case, p);
    report("grandchild writes, grandparent reads", st == 0 && p[PAGE + 1] == 0x99,
           "grandchild's write lost");
    munmap(p, PAGE * 2);
}

/* The parent moves its mapping with mremap; the child's writes still reach it. */
static void mremap_move(void) {
    unsigned char *p = map_shared(PAGE * 4);
    p[0] = 1;
    struct chan c;
    chan_open(&c);
    pid_t pid = fork();
    if (pid == 0) {
        chan_keep(&c, 1);
        if (!await(c.to_child[0]))
            _exit(2);
        p[5] = 0x42;            /* touched-before-fork page */
        p[PAGE * 2 + 5] = 0x43; /* untouched page */
        post(c.to_parent[1]);
        _exit(await(c.to_child[0]) && p[PAGE * 3] == 0x44 ? 0 : 1);
    }
    chan_keep(&c, 0);
    /* Move it somewhere else (reserve a hole, then move into it). */
    unsigned char *hole = mmap(NULL, PAGE * 4, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *q = mremap(p, PAGE * 4, PAGE * 4, MREMAP_MAYMOVE | MREMAP_FIXED, hole);
    int moved = q == hole;
    post(c.to_child[1]);
    int ok = await(c.to_parent[0]) && moved && q[5] == 0x42 && q[PAGE * 2 + 5] == 0x43;
    if (moved)
        q[PAGE * 3] = 0x44;
    post(c.to_child[1]);
    chan_close(&c, 0);
    int st;
    waitpid(pid, &st, 0);
    char d[96];
    snprintf(d, sizeof d, "moved %d, sees %#x %#x, child %#x", moved, moved ? q[5] : 0,
             moved ? q[PAGE * 2 + 5] : 0, st);
    report("mremap-moved mapping stays shared", ok && WIFEXITED(st) && WEXITSTATUS(st) == 0, d);
    munmap(moved ? q : p, PAGE * 4);
}

/* The child unmaps part of the region: the parent's view and the rest are unaffected. */
static int child_unmaps_middle(unsigned char *p) {
    if (munmap(p + PAGE, PAGE) != 0)
        return 1;
    p[0] = 0x31;
    p[PAGE * 2] = 0x32;
    return 0;
}

static void munmap_part(void) {
    unsigned char *p = map_shared(PAGE * 3);
    p[PAGE] = 0x30;
    int st = in_child(child_unmaps_middle, p);
    report("child munmaps part, rest still shared",
           st == 0 && p[0] == 0x31 && p[PAGE] == 0x30 && p[PAGE * 2] == 0x32,
           "parent's view changed or writes lost");
    munmap(p, PAGE * 3);
}

/* The child makes its view read-only: it still sees the parent's later writes. */
static void mprotect_view(void) {
    unsigned char *p = map_shared(PAGE * 2);
    struct chan c;
    chan_open(&c);
    pid_t pid = fork();
    if (pid == 0) {
        chan_keep(&c, 1);
        if (mprotect(p, PAGE * 2, PROT_READ) != 0)
            _exit(2);
        post(c.to_parent[1]);
        _exit(await(c.to_child[0]) && p[0] == 0x61 && p[PAGE] == 0x62 ? 0 : 1);
    }
    chan_keep(&c, 0);
    await(c.to_parent[0]);
    p[0] = 0x61;
    p[PAGE] = 0x62;
    post(c.to_child[1]);
    int st;
    waitpid(pid, &st, 0);
    char d[48];
    snprintf(d, sizeof d, "child status %#x", st);
    report("read-only view sees the other's writes", WIFEXITED(st) && WEXITSTATUS(st) == 0, d);
    chan_close(&c, 0);
    munmap(p, PAGE * 2);
}

/* MADV_DONTNEED on shared memory drops only this process's mapping: the data stays. */
static void dontneed(void) {
    unsigned char *p = map_shared(PAGE);
    p[0] = 0x71;
    int ok = madvise(p, PAGE, MADV_DONTNEED) == 0 && p[0] == 0x71;
    report("MADV_DONTNEED keeps shared data", ok, "data lost");
    munmap(p, PAGE);
}

/* Threads of the child write untouched pages; the parent reads them. */
static unsigned char *thread_area;
static void *thread_writer(void *arg) {
    long i = (long)arg;
    thread_area[PAGE * i + i] = (unsigned char)(0x80 + i);
    return NULL;
}

static int child_threads(unsigned char *p) {
    thread_area = p;
    pthread_t t[4];
    for (long i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, thread_writer, (void *)i) != 0)
            return 1;
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    return 0;
}

static void threads(void) {
    unsigned char *p = map_shared(PAGE * 4);
    int st = in_child(child_threads, p);
    int ok = st == 0;
    for (int i = 0; i < 4; i++)
        ok &= p[PAGE * i + i] == (unsigned char)(0x80 + i);
    report("child's threads write untouched pages", ok, "a thread's write was lost");
    munmap(p, PAGE * 4);
}

/* A thread of the parent forks; the child writes; another thread of the parent reads. */
static void *fork_from_thread(void *arg) {
    unsigned char *p = arg;
    pid_t pid = fork();
    if (pid == 0) {
        p[3] = 0x66;
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    return NULL;
}

static void thread_forks(void) {
    unsigned char *p = map_shared(PAGE);
    pthread_t t;
    pthread_create(&t, NULL, fork_from_thread, p);
    pthread_join(t, NULL);
    report("fork from a thread, main thread reads", p[3] == 0x66, "write lost");
    munmap(p, PAGE);
}

/* One sharer execs another program: the remaining sharers keep sharing. */
static void exec_sharer(void) {
    unsigned char *p = map_shared(PAGE * 2);
    struct chan c;
    chan_open(&c);
    pid_t e = fork();
    if (e == 0) {
        execl(self_path, self_path, "exec-child", (char *)NULL);
        _exit(127);
    }
    int se;
    waitpid(e, &se, 0);
    pid_t w = fork();
    if (w == 0) {
        chan_keep(&c, 1);
        p[PAGE + 9] = 0x19;
        post(c.to_parent[1]);
        _exit(await(c.to_child[0]) && p[9] == 0x18 ? 0 : 1);
    }
    chan_keep(&c, 0);
    int ok = await(c.to_parent[0]) && p[PAGE + 9] == 0x19;
    p[9] = 0x18;
    post(c.to_child[1]);
    chan_close(&c, 0);
    int sw;
    waitpid(w, &sw, 0);
    char d[64];
    snprintf(d, sizeof d, "exec child %#x, writer %#x, seen %d", se, sw, ok);
    report("after a sharer's exec the others still share",
           ok && WIFEXITED(se) && WEXITSTATUS(se) == 0 && WIFEXITED(sw) && WEXITSTATUS(sw) == 0,
           d);
    munmap(p, PAGE * 2);
}

/* A child that execs right after fork: its writes before the exec reach the parent. */
static void write_then_exec(void) {
    unsigned char *p = map_shared(PAGE);
    pid_t pid = fork();
    if (pid == 0) {
        p[1] = 0x2b;
        execl(self_path, self_path, "exec-child", (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    report("child writes then execs", p[1] == 0x2b && WIFEXITED(st) && WEXITSTATUS(st) == 0,
           "write lost");
    munmap(p, PAGE);
}

/* A futex word in a page neither side touched before the fork: the child sleeps on it, the
 * parent sets it and wakes it (shared futexes meet on the shared page). */
#define FUTEX_WAIT 0 /* <linux/futex.h>, which musl-gcc does not see */
#define FUTEX_WAKE 1

static long futex(uint32_t *word, int op, uint32_t val) {
    return syscall(SYS_futex, word, op, val, NULL, NULL, 0);
}

static void shared_futex(void) {
    unsigned char *p = map_shared(PAGE * 2);
    uint32_t *word = (uint32_t *)(p + PAGE);
    struct chan c;
    chan_open(&c);
    pid_t pid = fork();
    if (pid == 0) {
        chan_keep(&c, 1);
        post(c.to_parent[1]);
        while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == 0)
            futex(word, FUTEX_WAIT, 0);
        _exit(*word == 7 ? 0 : 1);
    }
    chan_keep(&c, 0);
    await(c.to_parent[0]);
    /* Let the child go to sleep (it re-checks the word, so an early wake is harmless). */
    usleep(20000);
    __atomic_store_n(word, 7, __ATOMIC_RELEASE);
    futex(word, FUTEX_WAKE, 1);
    int st;
    waitpid(pid, &st, 0);
    report("futex in untouched shared page wakes the other process",
           WIFEXITED(st) && WEXITSTATUS(st) == 0, "child saw the wrong value");
    chan_close(&c, 0);
    munmap(p, PAGE * 2);
}

/* A process-shared mutex in shared memory, hammered by parent and child. */
static void shared_mutex(void) {
    unsigned char *p = map_shared(PAGE);
    pthread_mutex_t *m = (pthread_mutex_t *)p;
    unsigned long *count = (unsigned long *)(p + 256);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(m, &a);
    pid_t pid = fork();
    for (int i = 0; i < 20000; i++) {
        pthread_mutex_lock(m);
        ++*count;
        pthread_mutex_unlock(m);
    }
    if (pid == 0)
        _exit(0);
    int st;
    waitpid(pid, &st, 0);
    char d[48];
    snprintf(d, sizeof d, "count %lu", *count);
    report("process-shared mutex counts 40000", *count == 40000, d);
    munmap(p, PAGE);
}

/* A large mapping, sparsely touched by the child only. */
static int child_sparse(unsigned char *p) {
    for (unsigned long i = 0; i < 64; i++)
        p[(i * 257 % 4096) * PAGE + i] = (unsigned char)i;
    return 0;
}

static void sparse_large(void) {
    size_t len = 4096 * PAGE; /* 16 MiB */
    unsigned char *p = map_shared(len);
    int st = in_child(child_sparse, p);
    int ok = st == 0;
    for (unsigned long i = 0; i < 64; i++)
        ok &= p[(i * 257 % 4096) * PAGE + i] == (unsigned char)i;
    report("16 MiB mapping, sparse child writes", ok, "writes lost");
    munmap(p, len);
}

/* A shared mapping of /dev/zero is shared anonymous memory. */
static void dev_zero(void) {
    int fd = open("/dev/zero", O_RDWR);
    unsigned char *p = mmap(NULL, PAGE * 4, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        report("MAP_SHARED /dev/zero is shared after fork", 0, strerror(errno));
        return;
    }
    int st = in_child(child_writes_untouched, p);
    report("MAP_SHARED /dev/zero is shared after fork", st == 0 && p[0] == 0xa1 && p[PAGE * 3 + 7] == 0xa2,
           "write lost");
    munmap(p, PAGE * 4);
}

/* Private anonymous memory stays private (the control). */
static int child_writes_private(unsigned char *p) {
    p[0] = 0xee;
    return 0;
}

static void private_control(void) {
    unsigned char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                            -1, 0);
    int st = in_child(child_writes_private, p);
    report("MAP_PRIVATE stays private", st == 0 && p[0] == 0, "child's write leaked");
    munmap(p, PAGE);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "exec-child") == 0)
        return 0;
    self_path = argv[0];
    untouched_child_to_parent();
    touched_child_to_parent();
    parent_to_child("untouched page, parent writes after fork, child reads", 0);
    parent_to_child("touched page, parent writes after fork, child reads", 1);
    ping_pong();
    siblings();
    grandchild();
    mremap_move();
    munmap_part();
    mprotect_view();
    dontneed();
    threads();
    thread_forks();
    exec_sharer();
    write_then_exec();
    shared_futex();
    shared_mutex();
    sparse_large();
    dev_zero();
    private_control();
    printf("failures: %d\n", failures);
    return failures;
}
