/* caps: Linux's capability rules as a program sees them (run as root).
 *
 * caps rules DIR  first sets its sets to a known state (bounding = permitted = effective =
 *                 KEEP, inheritable and ambient empty: the native run starts from whatever
 *                 its host gave it), then: capset dropping CAP_CHOWN (chown of DIR/file
 *                 fails), PR_CAPBSET_READ/DROP, ambient raise/lower, keepcaps, and in
 *                 children: effective uid leaving 0 and coming back, setuid to nobody with
 *                 and without PR_SET_KEEPCAPS, setfsuid, execve as root and as nobody (with
 *                 an ambient capability), capget of another pid and with a bad version.
 * caps show       prints the /proc/self/status Cap* lines and capget's view.
 * Prints what it sees; the caller compares it with a native run. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define V1 0x19980330
#define V3 0x20080522

struct hdr {
    uint32_t version;
    int pid;
};
struct data {
    uint32_t effective, permitted, inheritable;
};

/* CHOWN DAC_OVERRIDE FOWNER KILL SETGID SETUID SETPCAP NET_RAW */
#define KEEP ((1ull << 0) | (1ull << 1) | (1ull << 3) | (1ull << 5) | (1ull << 6) | (1ull << 7) | \
              (1ull << 8) | (1ull << 13))

static const char *self;

static void status(const char *what) {
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    printf("-- %s\n", what);
    if (!f) {
        printf("open status: %s\n", strerror(errno));
        return;
    }
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "Cap", 3) == 0)
            fputs(line, stdout);
    fclose(f);
    fflush(stdout);
}

static int get(int pid, uint64_t *e, uint64_t *p, uint64_t *i) {
    struct hdr h = {V3, pid};
    struct data d[2];
    if (syscall(SYS_capget, &h, d) != 0)
        return -1;
    *e = d[0].effective | (uint64_t)d[1].effective << 32;
    *p = d[0].permitted | (uint64_t)d[1].permitted << 32;
    *i = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
    return 0;
}

static int set(uint64_t e, uint64_t p, uint64_t i) {
    struct hdr h = {V3, 0};
    struct data d[2] = {{(uint32_t)e, (uint32_t)p, (uint32_t)i},
                        {(uint32_t)(e >> 32), (uint32_t)(p >> 32), (uint32_t)(i >> 32)}};
    return syscall(SYS_capset, &h, d);
}

static void result(const char *what, long r) {
    printf("%s: %ld%s%s\n", what, r, r < 0 ? " " : "", r < 0 ? strerror(errno) : "");
    fflush(stdout);
}

static void show(void) {
    uint64_t e, p, i;
    status("show");
    if (get(0, &e, &p, &i) == 0)
        printf("capget: eff %llx prm %llx inh %llx\n", (unsigned long long)e,
               (unsigned long long)p, (unsigned long long)i);
    printf("uid %u euid %u\n", (unsigned)getuid(), (unsigned)geteuid());
}

static void exec_show(void) {
    fflush(stdout);
    execl(self, self, "show", (char *)NULL);
    printf("exec: %s\n", strerror(errno));
    exit(1);
}

static void child(void (*f)(const char *), const char *dir) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        f(dir);
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
}

static void euid_away_and_back(const char *dir) {
    (void)dir;
    result("setresuid(0, 1000, 0)", syscall(SYS_setresuid, 0, 1000, 0));
    status("effective uid 1000, saved 0");
    result("seteuid(0)", syscall(SYS_setresuid, -1, 0, -1));
    status("effective uid 0 again");
}

static void nobody_keepcaps(const char *dir) {
    (void)dir;
    result("PR_SET_KEEPCAPS 1", prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
    result("PR_GET_KEEPCAPS", prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0));
    result("setuid(65534)", syscall(SYS_setuid, 65534));
    status("nobody, keepcaps");
    result("PR_CAP_AMBIENT_RAISE KILL as nobody", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, 5, 0, 0));
    result("capset effective KILL", set(1ull << 5, KEEP & ~1ull, 1ull << 5));
    status("nobody with an ambient KILL");
    exec_show();
}

static void nobody(const char *dir) {
    (void)dir;
    result("setuid(65534)", syscall(SYS_setuid, 65534));
    status("nobody");
    result("setuid(0) as nobody", syscall(SYS_setuid, 0));
    exec_show();
}

static void fsuid(const char *dir) {
    (void)dir;
    printf("setfsuid(1000) was %d\n", setfsuid(1000));
    status("fsuid 1000");
    printf("setfsuid(0) was %d\n", setfsuid(0));
    status("fsuid 0");
}

static void root_exec(const char *dir) {
    (void)dir;
    exec_show();
}

static void rules(const char *dir) {
    char file[4096];
    snprintf(file, sizeof file, "%s/file", dir);
    int fd = open(file, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd >= 0)
        close(fd);
    /* The known state. */
    for (int c = 0; c <= 40; c++)
        if (!(KEEP & (1ull << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0)
            printf("drop %d: %s\n", c, strerror(errno));
    result("capset KEEP", set(KEEP, KEEP, 0));
    result("PR_CAP_AMBIENT_CLEAR_ALL", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0));
    status("known state");
    result("PR_CAPBSET_READ CHOWN", prctl(PR_CAPBSET_READ, 0, 0, 0, 0));
    result("PR_CAPBSET_READ SYS_ADMIN", prctl(PR_CAPBSET_READ, 21, 0, 0, 0));
    result("PR_CAPBSET_READ 41", prctl(PR_CAPBSET_READ, 41, 0, 0, 0));
    result("PR_CAPBSET_DROP NET_RAW", prctl(PR_CAPBSET_DROP, 13, 0, 0, 0));
    /* Drop CHOWN from effective only, then from permitted. */
    result("capset without effective CHOWN", set(KEEP & ~1ull, KEEP, 0));
    result("chown file 1000", chown(file, 1000, -1));
    result("capset effective CHOWN back", set(KEEP, KEEP, 0));
    result("chown file 1000", chown(file, 1000, -1));
    result("capset without CHOWN", set(KEEP & ~1ull, KEEP & ~1ull, 0));
    result("chown file 0", chown(file, 0, -1));
    result("capset raising CHOWN", set(KEEP, KEEP, 0));
    result("capset effective beyond permitted", set(KEEP, KEEP & ~1ull & ~(1ull << 3), 0));
    result("capset inheritable SYS_ADMIN (not bounding)", set(KEEP & ~1ull, KEEP & ~1ull, 1ull << 21));
    status("after capset");
    /* Ambient. */
    result("PR_CAP_AMBIENT_RAISE KILL (not inheritable)", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, 5, 0, 0));
    result("capset inheritable KILL", set(KEEP & ~1ull, KEEP & ~1ull, 1ull << 5));
    result("PR_CAP_AMBIENT_RAISE KILL", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, 5, 0, 0));
    result("PR_CAP_AMBIENT_IS_SET KILL", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, 5, 0, 0));
    result("PR_CAP_AMBIENT_IS_SET 41", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, 41, 0, 0));
    status("ambient KILL");
    /* capget: another pid, version 1, a bad version. */
    uint64_t e, p, i;
    pid_t me = getpid();
    result("capget own pid", get(me, &e, &p, &i));
    printf("capget: eff %llx prm %llx inh %llx\n", (unsigned long long)e,
           (unsigned long long)p, (unsigned long long)i);
    struct hdr h = {V1, 0};
    struct data d[2] = {{0}};
    result("capget v1", syscall(SYS_capget, &h, d));
    printf("v1: eff %x second word %x\n", d[0].effective, d[1].effective);
    h.version = 0x12345678;
    result("capget bad version", syscall(SYS_capget, &h, d));
    printf("version written back: %x\n", h.version);
    h.version = V3;
    h.pid = 999999;
    result("capget no such pid", syscall(SYS_capget, &h, d));
    /* Children. */
    child(euid_away_and_back, dir);
    child(nobody_keepcaps, dir);
    child(nobody, dir);
    child(fsuid, dir);
    child(root_exec, dir);
    /* Dropping from the bounding set needs SETPCAP. */
    result("capset without SETPCAP", set(KEEP & ~1ull & ~(1ull << 8), KEEP & ~1ull, 1ull << 5));
    result("PR_CAPBSET_DROP KILL without SETPCAP", prctl(PR_CAPBSET_DROP, 5, 0, 0, 0));
    status("end");
}

int main(int argc, char **argv) {
    self = argv[0];
    if (argc >= 2 && strcmp(argv[1], "show") == 0) {
        show();
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "rules") == 0) {
        rules(argv[2]);
        return 0;
    }
    fprintf(stderr, "usage: caps show | caps rules DIR\n");
    return 2;
}
