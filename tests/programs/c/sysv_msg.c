/* System V message queues, printed for a comparison with the native run
 * (tests/tests/linux_edges.rs): private and keyed queues, the order msgrcv picks messages in
 * (FIFO, a type, MSG_EXCEPT, the lowest type up to a bound), long and empty messages, the
 * size and type errors, the status and a lowered msg_qbytes, children blocked in msgsnd and
 * msgrcv and woken (by room, by the message they wait for, by a signal handler installed
 * with SA_RESTART, by the queue's removal), the limits and the permissions of nobody (run
 * as root). Only results, lengths, texts and yes/no answers are printed, never an id, a pid
 * or a time. Every queue it makes is removed before it exits. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "show_result.h"

/* show(), with the errno names show_result.h lacks. */
static void res(const char *what, long r) {
    const char *name = NULL;
    if (r < 0) {
        switch (errno) {
        case E2BIG: name = "E2BIG"; break;
        case ENOMSG: name = "ENOMSG"; break;
        case EINTR: name = "EINTR"; break;
        case ERANGE: name = "ERANGE"; break;
        }
    }
    if (name)
        printf("%s: -1 %s\n", what, name);
    else
        show(what, r);
}

static long ok(long r) { return r < 0 ? -1 : 0; }

static struct {
    long mtype;
    char mtext[8200];
} sbuf, rbuf;

/* Sends `text` (NULL: `len` bytes of 'x') as a message of type `type`. */
static int snd(int id, long type, const char *text, size_t len, int flg) {
    sbuf.mtype = type;
    if (text)
        memcpy(sbuf.mtext, text, len = strlen(text));
    else
        memset(sbuf.mtext, 'x', len < sizeof sbuf.mtext ? len : sizeof sbuf.mtext);
    return msgsnd(id, &sbuf, len, flg);
}

/* Receives into rbuf and prints the length, the type and (up to 16 bytes of) the text. */
static void rcv(const char *what, int id, size_t size, long type, int flg) {
    memset(&rbuf, 0, sizeof rbuf);
    ssize_t n = msgrcv(id, &rbuf, size, type, flg);
    if (n < 0)
        res(what, -1);
    else
        printf("%s: %zd type %ld \"%.*s\"\n", what, n, rbuf.mtype, (int)(n > 16 ? 16 : n),
               rbuf.mtext);
}

static void status(const char *what, int id) {
    struct msqid_ds ds;
    if (msgctl(id, IPC_STAT, &ds) < 0) {
        res(what, -1);
        return;
    }
    printf("%s: qnum %lu cbytes %lu qbytes %lu lspid mine %d lrpid mine %d stime set %d "
           "rtime set %d mode %o uid %u\n",
           what, (unsigned long)ds.msg_qnum, (unsigned long)ds.msg_cbytes,
           (unsigned long)ds.msg_qbytes, ds.msg_lspid == getpid(), ds.msg_lrpid == getpid(),
           ds.msg_stime != 0, ds.msg_rtime != 0, (unsigned)ds.msg_perm.mode & 0777,
           (unsigned)ds.msg_perm.uid);
}

static int set_qbytes(int id, unsigned long qbytes) {
    struct msqid_ds ds;
    if (msgctl(id, IPC_STAT, &ds) < 0)
        return -1;
    ds.msg_qbytes = qbytes;
    return msgctl(id, IPC_SET, &ds);
}

/* The queue the children work on, and the pipe a child says "about to block" on. */
static int qid, q600, q644, ready[2];

static int say_ready(void) { return write(ready[1], "r", 1) == 1 ? 0 : -1; }

/* Waits for the child's "about to block", then gives it `us` microseconds to block. */
static void await_ready(int us) {
    char c;
    if (read(ready[0], &c, 1) == 1)
        usleep(us);
}

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

static int reap(pid_t c) {
    int st;
    if (waitpid(c, &st, 0) != c)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int child_send60(void) {
    say_ready();
    res("child: send 60 to a full queue", snd(qid, 1, NULL, 60, 0));
    return 0;
}

/* 0 having printed the type 7 message; 10 EIDRM, 11 EINVAL, 12 another error. */
static int child_get7(void) {
    say_ready();
    ssize_t n = msgrcv(qid, &rbuf, 64, 7, 0);
    if (n < 0)
        return errno == EIDRM ? 10 : errno == EINVAL ? 11 : 12;
    printf("child: got %zd type %ld \"%.*s\"\n", n, rbuf.mtype, (int)n, rbuf.mtext);
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
    /* Repeating, in case the first one comes before the call blocks. */
    struct itimerval it = {{0, 20000}, {0, 20000}}, off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &it, NULL);
    res("child: receive, SA_RESTART alarm", msgrcv(qid, &rbuf, 64, 1, 0));
    res("child: send to a full queue, SA_RESTART alarm", snd(qid, 1, "y", 0, 0));
    setitimer(ITIMER_REAL, &off, NULL);
    show("child: handler ran", alarms > 0);
    return 0;
}

static int child_nobody(void) {
    show("nobody: setuid", setuid(65534));
    show("nobody: send 0600", snd(q600, 1, "x", 0, IPC_NOWAIT));
    rcv("nobody: receive 0600", q600, 64, 0, IPC_NOWAIT);
    struct msqid_ds ds;
    memset(&ds, 0, sizeof ds);
    show("nobody: stat 0600", msgctl(q600, IPC_STAT, &ds));
    show("nobody: set 0600", msgctl(q600, IPC_SET, &ds));
    show("nobody: remove 0600", msgctl(q600, IPC_RMID, NULL));
    rcv("nobody: receive 0644", q644, 64, 0, IPC_NOWAIT);
    show("nobody: send 0644", snd(q644, 1, "x", 0, IPC_NOWAIT));
    int own = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    show("nobody: own queue", ok(own));
    status("nobody: own status", own);
    show("nobody: raise qbytes to 20000", set_qbytes(own, 20000));
    show("nobody: lower qbytes to 1000", set_qbytes(own, 1000));
    show("nobody: qbytes back to 16384", set_qbytes(own, 16384));
    show("nobody: remove own", msgctl(own, IPC_RMID, NULL));
    return 0;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (pipe(ready) < 0)
        return 1;
    /* Creation. */
    int id = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    show("private queue", ok(id));
    status("new queue", id);
    key_t key = (key_t)(0x6d000000 | (getpid() & 0xffff));
    int k = msgget(key, IPC_CREAT | IPC_EXCL | 0600);
    show("keyed queue", ok(k));
    show("found by key", msgget(key, 0) == k);
    show("create existing", msgget(key, IPC_CREAT | 0600) == k);
    show("exclusive again", msgget(key, IPC_CREAT | IPC_EXCL | 0600));
    show("no such key", msgget(key ^ 0x00ff0000, 0));
    /* Which message msgrcv picks. */
    show("send 3", snd(id, 3, "a3", 0, 0));
    show("send 1", snd(id, 1, "b1", 0, 0));
    show("send 2", snd(id, 2, "c2", 0, 0));
    show("send 1", snd(id, 1, "d1", 0, 0));
    show("send 5", snd(id, 5, "e5", 0, 0));
    status("five queued", id);
    rcv("type 0", id, 64, 0, 0);
    rcv("type 1", id, 64, 1, 0);
    rcv("except 1", id, 64, 1, MSG_EXCEPT);
    rcv("up to 4", id, 64, -4, 0);
    rcv("up to 4 again", id, 64, -4, IPC_NOWAIT);
    rcv("type 4", id, 64, 4, IPC_NOWAIT);
    rcv("except 5", id, 64, 5, MSG_EXCEPT | IPC_NOWAIT);
    status("one left", id);
    snd(id, 4, "x4", 0, 0);
    snd(id, 2, "y2", 0, 0);
    snd(id, 3, "z3", 0, 0);
    rcv("up to 3", id, 64, -3, 0);
    rcv("up to 3", id, 64, -3, 0);
    rcv("up to 3", id, 64, -3, IPC_NOWAIT);
    rcv("up to 9", id, 64, -9, 0);
    rcv("type 0", id, 64, 0, 0);
    rcv("empty", id, 64, 0, IPC_NOWAIT);
    status("emptied", id);
    /* Sizes and types. */
    show("send 10 bytes", snd(id, 6, "0123456789", 0, 0));
    rcv("receive 4", id, 4, 0, IPC_NOWAIT);
    rcv("receive 0", id, 0, 0, IPC_NOWAIT);
    status("still queued", id);
    rcv("receive 4, noerror", id, 4, 0, MSG_NOERROR | IPC_NOWAIT);
    status("truncated one gone", id);
    show("send empty", snd(id, 9, "", 0, 0));
    status("empty queued", id);
    rcv("receive 0", id, 0, 0, IPC_NOWAIT);
    show("send type 0", snd(id, 0, "z", 0, IPC_NOWAIT));
    show("send type -1", snd(id, -1, "z", 0, IPC_NOWAIT));
    show("send 8193", snd(id, 1, NULL, 8193, IPC_NOWAIT));
    show("send 8192", snd(id, 1, NULL, 8192, IPC_NOWAIT));
    rcv("receive 8192", id, 8192, 0, IPC_NOWAIT);
    rcv("receive size -1", id, (size_t)-1, 0, IPC_NOWAIT);
    show("send bad id", snd(-1, 1, "z", 0, IPC_NOWAIT));
    rcv("receive bad id", -1, 64, 0, IPC_NOWAIT);
    show("bad command", msgctl(id, 99, NULL));
    /* A lowered msg_qbytes. */
    show("qbytes 100", set_qbytes(id, 100));
    status("qbytes lowered", id);
    show("send 60", snd(id, 1, NULL, 60, IPC_NOWAIT));
    show("send 60 more", snd(id, 2, NULL, 60, IPC_NOWAIT));
    show("send 40", snd(id, 3, NULL, 40, IPC_NOWAIT));
    status("full", id);
    qid = id;
    pid_t c = spawn(child_send60);
    await_ready(20000);
    ssize_t n = msgrcv(id, &rbuf, 64, 0, 0);
    int code = reap(c);
    show("made room", n);
    show("child exit", code);
    status("full again", id);
    rcv("drain", id, 64, 0, 0);
    rcv("drain", id, 64, 0, 0);
    show("qbytes 3", set_qbytes(id, 3));
    for (int i = 0; i < 3; i++)
        show("send empty", snd(id, 1, "", 0, IPC_NOWAIT));
    show("a fourth empty", snd(id, 1, "", 0, IPC_NOWAIT));
    status("three empty", id);
    for (int i = 0; i < 3; i++)
        rcv("drain", id, 64, 0, 0);
    /* (Raising it past msgmnb needs CAP_SYS_RESOURCE, which root may lack natively.) */
    show("qbytes 0", set_qbytes(id, 0));
    status("qbytes 0", id);
    show("qbytes 16384", set_qbytes(id, 16384));
    /* The limits. */
    struct msginfo mi;
    memset(&mi, 0, sizeof mi);
    show("ipc info", ok(msgctl(0, IPC_INFO, (struct msqid_ds *)&mi)));
    printf("msgmax %d msgmnb %d msgmni %d\n", mi.msgmax, mi.msgmnb, mi.msgmni);
    memset(&mi, 0, sizeof mi);
    show("msg info", ok(msgctl(0, MSG_INFO, (struct msqid_ds *)&mi)));
    printf("msgmax %d msgmnb %d msgmni %d\n", mi.msgmax, mi.msgmnb, mi.msgmni);
    /* A child waiting for type 7. */
    c = spawn(child_get7);
    await_ready(20000);
    int r3 = snd(id, 3, "three", 0, 0), r7 = snd(id, 7, "seven", 0, 0);
    code = reap(c);
    show("send 3", r3);
    show("send 7", r7);
    show("child exit", code);
    status("type 3 left", id);
    rcv("type 0", id, 64, 0, IPC_NOWAIT);
    /* A signal handler with SA_RESTART: neither call is restarted. */
    show("qbytes 10", set_qbytes(id, 10));
    show("send 10", snd(id, 2, "0123456789", 0, 0));
    show("child exit", reap(spawn(child_signal)));
    status("after the signals", id);
    show("remove", msgctl(id, IPC_RMID, NULL));
    show("send to removed", snd(id, 1, "z", 0, IPC_NOWAIT));
    rcv("receive from removed", id, 64, 0, IPC_NOWAIT);
    status("stat removed", id);
    show("remove again", msgctl(id, IPC_RMID, NULL));
    /* Removed under a waiter (again, longer, if the child had not blocked in time). */
    int r = -1;
    for (int tries = 1; tries <= 10; tries++) {
        qid = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
        c = spawn(child_get7);
        await_ready(20000 * tries);
        r = msgctl(qid, IPC_RMID, NULL);
        code = reap(c);
        if (code != 11)
            break;
    }
    show("remove under a waiter", r);
    show("the waiter got EIDRM", code == 10);
    /* Permissions of nobody. */
    q600 = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    q644 = msgget(IPC_PRIVATE, IPC_CREAT | 0644);
    show("queues for nobody", ok(q600) + ok(q644));
    snd(q600, 1, "secret", 0, 0);
    snd(q644, 1, "public", 0, 0);
    show("child exit", reap(spawn(child_nobody)));
    status("0600 after nobody", q600);
    status("0644 after nobody", q644);
    show("remove 0600", msgctl(q600, IPC_RMID, NULL));
    show("remove 0644", msgctl(q644, IPC_RMID, NULL));
    /* The keyed queue. */
    show("remove keyed", msgctl(k, IPC_RMID, NULL));
    show("key gone", msgget(key, 0));
    show("queues done", 1);
    return 0;
}
