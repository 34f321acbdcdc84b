/* small_uprobe: the host-only x86-64 calls uprobe (336) and uretprobe (335) from a program.
 * Linux 6.11+/6.17+ runs them without seccomp filtering; without a uprobe attached to the
 * process, uprobe fails (ENXIO) and uretprobe sends SIGILL. Output is compared with the
 * native run: the guest must see what a native program on the same host sees, and go on. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static long raw0(long nr) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr) : "rcx", "r11", "memory");
    return ret;
}

static void report(const char *name, long nr) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        _exit(1);
    }
    if (pid == 0) {
        long r = raw0(nr);
        printf("%s: returned %ld\n", name, r);
        fflush(stdout);
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid) {
        perror("waitpid");
        _exit(1);
    }
    if (WIFSIGNALED(status))
        printf("%s: killed by signal %d\n", name, WTERMSIG(status));
    else
        printf("%s: exit %d\n", name, WEXITSTATUS(status));
}

int main(void) {
    report("uprobe", 336);
    report("uretprobe", 335);
    /* Twice in the same process too: nothing changed by the first call. */
    long a = raw0(336), b = raw0(336);
    printf("uprobe twice: %ld %ld\n", a, b);
    printf("done\n");
    return 0;
}
