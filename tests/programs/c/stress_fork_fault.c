/* stress-fork-fault [N]: fork while another thread of the process is page-faulting.
 *
 * A toucher thread maps fresh anonymous memory round after round and writes a tag into the
 * first and last word of every page in order, publishing after each page how many pages are
 * done (`written`); at the end of a round it reads every tag back (a write lost in a
 * copy-on-write break shows here) and unmaps the region. Meanwhile the main thread forks N
 * times (default 1000). Each child checks that its copy of the toucher's memory is a
 * consistent snapshot taken at the fork: every page counted in `written` carries its tag
 * (a page the toucher faulted in after the copy but counted before the child looked would
 * not), and after a while neither `written` nor the tags have changed (nobody writes the
 * child's memory: a change is the parent's thread writing into pages the two still share).
 * The child exits 0 if all held, 1-3 naming the check that failed. The parent reaps every
 * child and checks its status. Prints one line and exits 0 only if everything held;
 * otherwise says what went wrong on stderr and exits 1. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGES 256
#define PAGE_WORDS 512 /* 8-byte words in a 4 KiB page */

/* The toucher's current region (NULL between rounds), its round and pages written. */
static _Atomic(unsigned long *) region;
static atomic_ulong round_no;
static atomic_ulong written;
static atomic_int stop;
static int toucher_errors;

static unsigned long tag(unsigned long r, unsigned long k) {
    return (r * 1000003UL + k + 1) * 0x9e3779b97f4a7c15UL;
}

static void *toucher(void *arg) {
    (void)arg;
    unsigned long r = 0;
    do {
        r++;
        unsigned long *p = mmap(NULL, PAGES * 4096UL, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            fprintf(stderr, "stress-fork-fault: mmap failed: errno %d\n", errno);
            toucher_errors++;
            return NULL;
        }
        atomic_store(&written, 0);
        atomic_store(&round_no, r);
        atomic_store_explicit(&region, p, memory_order_release);
        for (unsigned long k = 0; k < PAGES; k++) {
            p[k * PAGE_WORDS] = tag(r, k);
            p[k * PAGE_WORDS + PAGE_WORDS - 1] = tag(r, k);
            atomic_store_explicit(&written, k + 1, memory_order_release);
            /* Share a lone vCPU with the forking thread and its children (one fault-around
             * block at a time), not a whole time slice. */
            if (k % 16 == 15)
                sched_yield();
        }
        for (unsigned long k = 0; k < PAGES; k++) {
            if (p[k * PAGE_WORDS] != tag(r, k) || p[k * PAGE_WORDS + PAGE_WORDS - 1] != tag(r, k)) {
                fprintf(stderr, "stress-fork-fault: round %lu page %lu: tag lost\n", r, k);
                toucher_errors++;
            }
        }
        atomic_store_explicit(&region, NULL, memory_order_release);
        munmap(p, PAGES * 4096UL);
    } while (!atomic_load(&stop));
    return NULL;
}

/* In the child: is the snapshot consistent and stable? 0 if so, else the failed check. */
static int check_snapshot(void) {
    unsigned long *p = atomic_load_explicit(&region, memory_order_acquire);
    unsigned long r = atomic_load(&round_no);
    unsigned long w = atomic_load_explicit(&written, memory_order_acquire);
    unsigned long first[PAGES];
    if (p) {
        for (unsigned long k = 0; k < w; k++)
            if (p[k * PAGE_WORDS] != tag(r, k) || p[k * PAGE_WORDS + PAGE_WORDS - 1] != tag(r, k))
                return 1;
        for (unsigned long k = 0; k < PAGES; k++)
            first[k] = p[k * PAGE_WORDS];
    }
    /* Let the parent's toucher run on (on another CPU, or on this one). */
    for (int i = 0; i < 20000; i++)
        (void)atomic_load(&written);
    for (int i = 0; i < 3; i++)
        sched_yield();
    if (atomic_load(&region) != p || atomic_load(&round_no) != r || atomic_load(&written) != w)
        return 2;
    if (p) {
        for (unsigned long k = 0; k < PAGES; k++)
            if (p[k * PAGE_WORDS] != first[k])
                return 3;
    }
    return 0;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    pthread_t t;
    if (pthread_create(&t, NULL, toucher, NULL) != 0) {
        fprintf(stderr, "stress-fork-fault: pthread_create failed\n");
        return 1;
    }
    while (atomic_load(&round_no) == 0)
        sched_yield();
    int bad = 0;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(check_snapshot());
        if (pid < 0) {
            fprintf(stderr, "stress-fork-fault: fork %d failed: errno %d\n", i, errno);
            bad++;
            break;
        }
        int status = 0;
        pid_t got = waitpid(pid, &status, 0);
        if (got != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "stress-fork-fault: child %d (pid %d): waitpid returned %d, status %#x\n",
                    i, (int)pid, (int)got, status);
            bad++;
        }
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD) {
        fprintf(stderr, "stress-fork-fault: children left over\n");
        bad++;
    }
    if (bad || toucher_errors) {
        fprintf(stderr, "stress-fork-fault: %d bad children, %d toucher errors\n", bad,
                toucher_errors);
        return 1;
    }
    printf("stress-fork-fault: %d children saw consistent snapshots of a faulting thread's "
           "memory; no write lost\n",
           n);
    return 0;
}
