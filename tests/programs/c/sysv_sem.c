/* System V semaphores, printed for a comparison with the native run
 * (tests/tests/linux_edges.rs): private and keyed sets, the semctl commands and their
 * errors, semop's increments, decrements, waits for zero, atomicity and limits, children
 * blocked in semop and woken (by an increment, a zeroing SETVAL, a timeout, a signal handler
 * installed with SA_RESTART, the set's removal), SEM_UNDO at exit, and the permissions of
 * nobody (run as root). Only results, values and yes/no answers are printed, never an id, a
 * pid or a time. Every set it makes is removed before it exits. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "show_result.h"

/* The caller defines it (glibc and musl alike). */
union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
    struct seminfo *info;
};

/* The set the children work on. */
static int sid;

/* show(), with the errno names show_result.h lacks. */
static void res(const char *what, long r) {
    const char *name = NULL;
    if (r < 0) {
        switch (errno) {
        case E2BIG: name = "E2BIG"; break;
        case ERANGE: name = "ERANGE"; break;
        case EFBIG: name = "EFBIG"; break;
        case EINTR: name = "EINTR"; break;
        case ENOMSG: name = "ENOMSG"; break;
        }
    }
    if (name)
        printf("%s: -1 %s\n", what, name);
    else
        show(what, r);
}

/* 0 or -1 (an id is not printed: ids differ between runs). */
static long ok(long r) { return r < 0 ? -1 : 0; }

/* 1 if `r` is `id`, else `r` (-1 and its errno). */
static long same(long r, int id) { return r < 0 ? r : r == id; }

static int op(int id, int num, int delta, int flg) {
    struct sembuf b = {.sem_num = (unsigned short)num, .sem_op = (short)delta, .sem_flg = (short)flg};
    return semop(id, &b, 1);
}

static int setval(int id, int num, int v) {
    union semun a = {.val = v};
    return semctl(id, num, SETVAL, a);
}

static int getval(int id, int num) { return semctl(id, num, GETVAL); }

static void status(const char *what, int id) {
    struct semid_ds ds;
    union semun a = {.buf = &ds};
    if (semctl(id, 0, IPC_STAT, a) < 0) {
        res(what, -1);
        return;
    }
    printf("%s: nsems %lu mode %o otime set %d ctime set %d uid %u\n", what,
           (unsigned long)ds.sem_nsems, (unsigned)ds.sem_perm.mode & 0777, ds.sem_otime != 0,
           ds.sem_ctime != 0, (unsigned)ds.sem_perm.uid);
}

/* Polls `cmd` (GETNCNT or GETZCNT) of semaphore 0 until it is `want`: 1, or 0 after 5 s. */
static int wait_count(int id, int cmd, int want) {
    for (int i = 0; i < 5000; i++) {
        if (semctl(id, 0, cmd) == want)
            return 1;
        usleep(1000);
    }
    return 0;
}

/* Runs `f` in a child (stdout flushed first) that exits with what it returns. */
static pid_t spawn(int (*f)(void)) {
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        int r = f();
        fflush(stdout);
        _exit(r);
    }
    return c;
}

/* The child's exit status, 128 + the signal that killed it, or -1. */
static int reap(pid_t c) {
    int st;
    if (waitpid(c, &st, 0) != c)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int child_decrement(void) {
    int r = op(sid, 0, -1, 0);
    res("child: decrement", r);
    return r == 0 ? 0 : 1;
}

static int child_zero(void) {
    int r = op(sid, 0, 0, 0);
    res("child: wait for zero", r);
    return r == 0 ? 0 : 1;
}

static int child_up2(void) {
    show("child: +2 undo", op(sid, 0, 2, SEM_UNDO));
    show("child: value", getval(sid, 0));
    return 0;
}

static int child_down1(void) {
    show("child: -1 undo", op(sid, 0, -1, SEM_UNDO));
    show("child: value", getval(sid, 0));
    return 0;
}

static int child_down_setval(void) {
    show("child: -1 undo", op(sid, 0, -1, SEM_UNDO));
    show("child: setval 5", setval(sid, 0, 5));
    return 0;
}

static int child_clamp(void) {
    show("child: +2 undo", op(sid, 0, 2, SEM_UNDO));
    show("child: -2 no undo", op(sid, 0, -2, 0));
    return 0;
}

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) { (void)sig; alarms++; }

static int child_signal(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    /* Repeating, in case the first one comes before semop blocks. */
    struct itimerval it = {{0, 20000}, {0, 20000}}, off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &it, NULL);
    res("child: decrement, SA_RESTART alarm", op(sid, 0, -1, 0));
    setitimer(ITIMER_REAL, &off, NULL);
    show("child: handler ran", alarms > 0);
    return 0;
}

static int p600, p644;

static int child_nobody(void) {
    show("nobody: setuid", setuid(65534));
    show("nobody: semop 0600", op(p600, 0, 1, 0));
    show("nobody: getval 0600", getval(p600, 0));
    show("nobody: setval 0600", setval(p600, 0, 2));
    struct semid_ds ds;
    memset(&ds, 0, sizeof ds);
    union semun a = {.buf = &ds};
    show("nobody: stat 0600", semctl(p600, 0, IPC_STAT, a));
    show("nobody: remove 0600", semctl(p600, 0, IPC_RMID));
    show("nobody: getval 0644", getval(p644, 0));
    show("nobody: increment 0644", op(p644, 0, 1, 0));
    show("nobody: wait for zero 0644", op(p644, 0, 0, IPC_NOWAIT));
    show("nobody: set 0644", semctl(p644, 0, IPC_SET, a));
    return 0;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Creation. */
    int id = semget(IPC_PRIVATE, 3, IPC_CREAT | 0600);
    show("private set", ok(id));
    status("new set", id);
    key_t key = (key_t)(0x5e000000 | (getpid() & 0xffff));
    int k = semget(key, 2, IPC_CREAT | IPC_EXCL | 0600);
    show("keyed set", ok(k));
    show("found by key", same(semget(key, 2, 0), k));
    show("fewer nsems", same(semget(key, 1, 0), k));
    show("nsems 0, existing", same(semget(key, 0, 0), k));
    show("more nsems", semget(key, 3, 0));
    show("exclusive again", semget(key, 2, IPC_CREAT | IPC_EXCL | 0600));
    show("create existing", same(semget(key, 2, IPC_CREAT | 0600), k));
    show("no such key", semget(key ^ 0x00ff0000, 1, 0));
    show("nsems 0, new", semget(IPC_PRIVATE, 0, IPC_CREAT | 0600));
    show("nsems -1", semget(IPC_PRIVATE, -1, IPC_CREAT | 0600));
    /* Values. */
    show("zero at first", getval(id, 0) + getval(id, 1) + getval(id, 2));
    show("setval 5", setval(id, 0, 5));
    show("getval", getval(id, 0));
    unsigned short all[3] = {1, 2, 3}, got[3] = {0, 0, 0};
    union semun a = {.array = all};
    show("setall", semctl(id, 0, SETALL, a));
    a.array = got;
    show("getall", semctl(id, 0, GETALL, a));
    printf("all: %u %u %u\n", got[0], got[1], got[2]);
    show("setval 32767", setval(id, 2, 32767));
    res("setval 32768", setval(id, 2, 32768));
    res("setval -1", setval(id, 2, -1));
    show("still", getval(id, 2));
    show("getval semnum 3", getval(id, 3));
    show("getval semnum -1", getval(id, -1));
    show("setval semnum 3", setval(id, 3, 1));
    show("getncnt", semctl(id, 0, GETNCNT));
    show("getzcnt", semctl(id, 0, GETZCNT));
    show("getncnt semnum 3", semctl(id, 3, GETNCNT));
    show("bad command", semctl(id, 0, 99));
    /* Status, mode. */
    status("before semop", id);
    struct semid_ds ds;
    a.buf = &ds;
    show("stat", semctl(id, 0, IPC_STAT, a));
    ds.sem_perm.mode = 0640;
    show("set mode", semctl(id, 0, IPC_SET, a));
    status("mode set", id);
    ds.sem_perm.mode = 0600;
    semctl(id, 0, IPC_SET, a);
    /* The limits. */
    struct seminfo si;
    memset(&si, 0, sizeof si);
    a.info = &si;
    show("ipc info", ok(semctl(0, 0, IPC_INFO, a)));
    printf("semmsl %d semopm %d semvmx %d semaem %d semmni %d\n", si.semmsl, si.semopm,
           si.semvmx, si.semaem, si.semmni);
    memset(&si, 0, sizeof si);
    show("sem info", ok(semctl(0, 0, SEM_INFO, a)));
    printf("semmsl %d semopm %d semvmx %d semmni %d\n", si.semmsl, si.semopm, si.semvmx,
           si.semmni);
    /* semop. */
    unsigned short zeros[3] = {0, 0, 0};
    a.array = zeros;
    semctl(id, 0, SETALL, a);
    show("increment 2", op(id, 0, 2, 0));
    status("after semop", id);
    show("pid is mine", semctl(id, 0, GETPID) == getpid());
    show("decrement 1", op(id, 0, -1, 0));
    show("value", getval(id, 0));
    res("decrement 2, nowait", op(id, 0, -2, IPC_NOWAIT));
    res("wait for zero on 1, nowait", op(id, 0, 0, IPC_NOWAIT));
    show("wait for zero on 0", op(id, 1, 0, 0));
    struct sembuf two[2] = {{1, 1, 0}, {0, -5, IPC_NOWAIT}};
    res("two ops, second blocks", semop(id, two, 2));
    show("first untouched", getval(id, 1));
    two[1].sem_op = -1;
    show("two ops", semop(id, two, 2));
    printf("values: %d %d\n", getval(id, 0), getval(id, 1));
    res("sem_num 3", op(id, 3, 1, 0));
    res("nsops 0", semop(id, two, 0));
    static struct sembuf many[501];
    for (int i = 0; i < 501; i++)
        many[i] = (struct sembuf){2, 0, IPC_NOWAIT};
    res("nsops 501", semop(id, many, 501));
    res("nsops 500", semop(id, many, 500));
    show("setval 32767", setval(id, 0, 32767));
    res("past 32767", op(id, 0, 1, 0));
    res("past 32767, nowait", op(id, 0, 1, IPC_NOWAIT));
    show("value", getval(id, 0));
    res("bad id", op(-1, 0, 1, 0));
    /* A child blocked in a decrement, then in a wait for zero. */
    sid = id;
    setval(id, 0, 0);
    pid_t c = spawn(child_decrement);
    int seen = wait_count(id, GETNCNT, 1);
    int r = op(id, 0, 1, 0);
    int code = reap(c);
    show("a waiter seen", seen);
    show("increment", r);
    show("child exit", code);
    printf("after: value %d ncnt %d pid is the child's %d\n", getval(id, 0),
           semctl(id, 0, GETNCNT), semctl(id, 0, GETPID) == c);
    setval(id, 0, 2);
    c = spawn(child_zero);
    seen = wait_count(id, GETZCNT, 1);
    r = setval(id, 0, 0);
    code = reap(c);
    show("a zero waiter seen", seen);
    show("setval 0", r);
    show("child exit", code);
    show("zcnt after", semctl(id, 0, GETZCNT));
    /* A timeout. */
    struct timespec t0, t1, ts = {0, 50000000};
    struct sembuf down = {0, -1, 0};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    res("semtimedop 50 ms", semtimedop(id, &down, 1, &ts));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    show("waited 45 ms or more", ms >= 45);
    ts.tv_nsec = 1000000000;
    res("semtimedop bad timeout", semtimedop(id, &down, 1, &ts));
    ts.tv_nsec = 0;
    res("semtimedop zero timeout", semtimedop(id, &down, 1, &ts));
    /* SEM_UNDO at exit. */
    setval(id, 0, 3);
    show("child exit", reap(spawn(child_up2)));
    show("undone +2", getval(id, 0));
    setval(id, 0, 1);
    show("child exit", reap(spawn(child_down1)));
    show("undone -1", getval(id, 0));
    setval(id, 0, 1);
    show("child exit", reap(spawn(child_down_setval)));
    show("setval dropped the undo", getval(id, 0));
    setval(id, 0, 0);
    show("child exit", reap(spawn(child_clamp)));
    show("undo clamped at 0", getval(id, 0));
    /* A signal handler with SA_RESTART: semop is not restarted. */
    setval(id, 0, 0);
    show("child exit", reap(spawn(child_signal)));
    show("ncnt after", semctl(id, 0, GETNCNT));
    /* Removed under a waiter. */
    c = spawn(child_decrement);
    seen = wait_count(id, GETNCNT, 1);
    r = semctl(id, 0, IPC_RMID);
    code = reap(c);
    show("a waiter seen", seen);
    show("remove", r);
    show("child exit", code);
    show("semop on removed", op(id, 0, 1, 0));
    show("getval on removed", getval(id, 0));
    status("stat on removed", id);
    show("remove again", semctl(id, 0, IPC_RMID));
    /* Permissions of nobody. */
    p600 = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
    p644 = semget(IPC_PRIVATE, 1, IPC_CREAT | 0644);
    show("sets for nobody", ok(p600) + ok(p644));
    setval(p600, 0, 1);
    setval(p644, 0, 1);
    show("child exit", reap(spawn(child_nobody)));
    printf("values: %d %d\n", getval(p600, 0), getval(p644, 0));
    show("remove 0600", semctl(p600, 0, IPC_RMID));
    show("remove 0644", semctl(p644, 0, IPC_RMID));
    /* The keyed set. */
    show("remove keyed", semctl(k, 0, IPC_RMID));
    show("key gone", semget(key, 0, 0));
    show("semaphores done", 1);
    return 0;
}
