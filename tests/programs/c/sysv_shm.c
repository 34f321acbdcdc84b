/* System V shared memory, printed for a comparison with the native run
 * (tests/tests/linux_edges.rs): keys and private segments, attaching in a parent and a
 * child, the status, detaching, removal while attached, and the errors. Every segment it
 * makes is removed before it exits (natively they would outlive it). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#include "show_result.h"

/* 0 or -1 (an id or an address is not printed: they differ between runs). */
static long ok(long r) { return r < 0 ? -1 : 0; }

static void status(const char *what, int id) {
    struct shmid_ds ds;
    if (shmctl(id, IPC_STAT, &ds) < 0) {
        show(what, -1);
        return;
    }
    printf("%s: size %zu nattch %lu mode %o cpid-self %d\n", what, (size_t)ds.shm_segsz,
           (unsigned long)ds.shm_nattch, (unsigned)ds.shm_perm.mode, ds.shm_cpid == getpid());
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* A private segment shared with a child. */
    int id = shmget(IPC_PRIVATE, 10000, IPC_CREAT | 0600);
    show("private segment", ok(id));
    char *p = shmat(id, NULL, 0);
    show("attach", p == (void *)-1 ? -1 : 0);
    show("page aligned", ((unsigned long)p & 4095) == 0);
    show("zero at first", p[0] + p[9999]);
    strcpy(p, "parent");
    p[9999] = 'z';
    status("after attach", id);
    show("maps name it", maps_lines("/SYSV", "(deleted)"));
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        printf("child sees: %s %c\n", p, p[9999]);
        status("child's view", id);
        char *q = shmat(id, NULL, 0);
        strcpy(q + 100, "from the child");
        show("child detach", shmdt(q));
        fflush(stdout);
        _exit(0);
    }
    waitpid(c, NULL, 0);
    printf("parent sees: %s\n", p + 100);
    status("after the child", id);
    show("detach inside", shmdt(p + 4096));
    show("detach", shmdt(p));
    show("detach again", shmdt(p));
    status("detached", id);
    /* Read-only, rounding, an address taken. */
    char *r = shmat(id, NULL, SHM_RDONLY);
    printf("read-only sees: %s\n", r);
    show("detach read-only", shmdt(r));
    char *spot = mmap(NULL, 3 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    show("over a mapping", shmat(id, spot, 0) == (void *)-1 ? -1 : 0);
    show("over it, remap", shmat(id, spot, SHM_REMAP) == spot ? 0 : -1);
    show("unaligned", shmat(id, spot + 1, SHM_REMAP) == (void *)-1 ? -1 : 0);
    show("rounded", shmat(id, spot + 1, SHM_RND | SHM_REMAP) == spot ? 0 : -1);
    status("two attachments", id);
    /* Removed while attached: still there, marked, until the last detach. */
    show("remove", shmctl(id, IPC_RMID, NULL));
    status("removed, attached", id);
    show("detach", shmdt(spot));
    show("detach last", shmdt(spot));
    status("removed, detached", id);
    show("attach bad id", shmat(-5, NULL, 0) == (void *)-1 ? -1 : 0);
    /* Keys. */
    key_t key = (key_t)((getpid() << 8) | 0x5a);
    int k = shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0600);
    show("keyed segment", ok(k));
    show("exclusive again", shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0600));
    show("same key", shmget(key, 100, 0) == k ? 0 : -1);
    show("larger", shmget(key, 8192, 0));
    show("no such key", shmget(key + 1, 4096, 0));
    show("size 0", shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600));
    struct shmid_ds ds;
    shmctl(k, IPC_STAT, &ds);
    ds.shm_perm.mode = 0640;
    show("set mode", shmctl(k, IPC_SET, &ds));
    status("mode set", k);
    show("bad command", shmctl(k, 99, &ds));
    struct shminfo info;
    show("info", ok(shmctl(0, IPC_INFO, (struct shmid_ds *)&info)));
    show("info min", (long)info.shmmin);
    show("remove keyed", shmctl(k, IPC_RMID, NULL));
    show("key gone", shmget(key, 4096, 0));
    show("stale id", shmctl(k, IPC_STAT, &ds));
    return 0;
}
