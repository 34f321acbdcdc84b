/* groups: supplementary groups as a program sees them.
 *
 * groups show      prints the ids and getgroups() (in the order it returns them, which Linux
 *                  keeps sorted), the /proc/self/status Uid/Gid/Groups lines, and getgroups'
 *                  refusal of a buffer too small.
 * groups drop DIR  as root: makes DIR/grp-file owned by 0:4242 mode 0640, then in children
 *                  sets the groups (setgroups(2), unsorted and with a duplicate) and drops to
 *                  uid/gid 1000, reads the file through the supplementary group, execs
 *                  itself to show the groups survive fork and exec, is refused setgroups
 *                  once unprivileged, and cannot read the file without the group.
 * Prints what it sees; the caller compares it with a native run. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void show_groups(const char *what) {
    gid_t g[256];
    int n = getgroups(256, g);
    printf("%s:", what);
    if (n < 0) {
        printf(" error %s\n", strerror(errno));
        return;
    }
    for (int i = 0; i < n; i++)
        printf(" %u", (unsigned)g[i]);
    printf("\n");
}

static int show(void) {
    printf("uid=%u euid=%u gid=%u egid=%u\n", (unsigned)getuid(), (unsigned)geteuid(),
           (unsigned)getgid(), (unsigned)getegid());
    show_groups("getgroups");
    int n = getgroups(0, NULL);
    printf("getgroups(0): %d\n", n);
    if (n > 1) {
        gid_t one[1];
        errno = 0;
        int r = getgroups(1, one);
        printf("getgroups(1): %d %s\n", r, r < 0 ? strerror(errno) : "");
    }
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) {
        printf("/proc/self/status: %s\n", strerror(errno));
        return 0;
    }
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "Uid:", 4) || !strncmp(line, "Gid:", 4) ||
            !strncmp(line, "Groups:", 7))
            fputs(line, stdout);
    }
    fclose(f);
    return 0;
}

static void try_read(const char *what, const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("%s: read: %s\n", what, strerror(errno));
        return;
    }
    char buf[32] = {0};
    ssize_t r = read(fd, buf, sizeof buf - 1);
    close(fd);
    printf("%s: read %zd bytes: %s", what, r, buf);
}

static int drop(const char *self, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/grp-file", dir);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, "group secret\n", 13) != 13) {
        perror("create");
        return 1;
    }
    close(fd);
    if (chown(path, 0, 4242) || chmod(path, 0640)) {
        perror("chown/chmod");
        return 1;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        gid_t set[] = {4242, 7, 7, 3};
        printf("setgroups as root: %d\n", setgroups(4, set));
        show_groups("getgroups after setgroups");
        if (setgid(1000) || setuid(1000)) {
            perror("drop");
            _exit(1);
        }
        show_groups("getgroups after dropping to 1000");
        try_read("with group 4242", path);
        errno = 0;
        gid_t none[1] = {0};
        int r = setgroups(1, none);
        printf("setgroups unprivileged: %d %s\n", r, r < 0 ? strerror(errno) : "");
        fflush(stdout);
        pid_t c = fork();
        if (c == 0) {
            show_groups("getgroups in a forked child");
            fflush(stdout);
            execl(self, self, "show", (char *)NULL);
            perror("execl");
            _exit(127);
        }
        int st;
        waitpid(c, &st, 0);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("first child: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        printf("setgroups(0) as root: %d\n", setgroups(0, NULL));
        show_groups("getgroups after clearing");
        if (setgid(1000) || setuid(1000)) {
            perror("drop");
            _exit(1);
        }
        try_read("without group 4242", path);
        _exit(0);
    }
    waitpid(pid, &st, 0);
    printf("second child: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    unlink(path);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && !strcmp(argv[1], "show"))
        return show();
    if (argc >= 3 && !strcmp(argv[1], "drop"))
        return drop(argv[0], argv[2]);
    fprintf(stderr, "usage: groups show | groups drop DIR\n");
    return 2;
}
