/* Issue 10 (the guest kernel survives any program): runs programs one after the other in
 * child processes and reports how each ended, so that one tenant runs several attacks and
 * then a normal program. Usage: klimits-spawn PROG ARGS... [-- PROG ARGS...]... */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    int i = 1;
    while (i < argc) {
        int j = i;
        while (j < argc && strcmp(argv[j], "--") != 0)
            j++;
        argv[j < argc ? j : argc] = NULL;
        pid_t c = fork();
        if (c == 0) {
            execv(argv[i], &argv[i]);
            perror("execv");
            _exit(127);
        }
        int status = 0;
        waitpid(c, &status, 0);
        if (WIFEXITED(status))
            printf("%s: exited %d\n", argv[i], WEXITSTATUS(status));
        else
            printf("%s: killed by signal %d\n", argv[i], WTERMSIG(status));
        i = j + 1;
    }
    return 0;
}
