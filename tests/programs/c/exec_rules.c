/* exec-rules: what execve accepts and refuses, and what a new program finds. An empty argv
 * becomes one empty argv[0]; an argument of MAX_ARG_STRLEN bytes is E2BIG, one byte less is
 * fine; malformed executables (truncated, another machine or type, odd program-header
 * tables, no format at all) are ENOEXEC (Linux ignores EI_CLASS, so that is not tried); a #! line is split as Linux splits it (the one
 * argument keeps a \r; an interpreter name cut by the 255-byte limit is ENOEXEC); the new
 * program's auxiliary vector has AT_EXECFN, AT_RANDOM, AT_PHENT and AT_PAGESZ. One line per
 * case, "NAME: ok" or "NAME: FAIL ..."; the exit status is the number of failures. The
 * program re-executes itself (the environment variable EXEC_RULES_CHILD says how) to look
 * at what it was given. */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;

static void report(const char *name, int ok, const char *detail) {
    if (ok)
        printf("%s: ok\n", name);
    else {
        printf("%s: FAIL %s\n", name, detail);
        failures++;
    }
    fflush(stdout);
}

static const char *self;
static char dir[64];

/* Child mode: writes what it was given to fd 3 (a pipe), as one line. */
static int child(int argc, char **argv, const char *mode) {
    char out[512];
    int n = 0;
    if (strcmp(mode, "args") == 0) {
        n = snprintf(out, sizeof out, "argc=%d", argc);
        const char *me = getenv("EXEC_RULES_SELF");
        for (int i = 0; i < argc && i < 4; i++) {
            const char *a = argv[i];
            if (me && strcmp(a, me) == 0)
                a = "SELF";
            /* Paths differ between runs: only their last component is shown. */
            if (strchr(a, '/'))
                a = strrchr(a, '/') + 1;
            n += snprintf(out + n, sizeof out - n, " [");
            for (; *a && n < 400; a++)
                n += snprintf(out + n, sizeof out - n, *a == '\r' ? "\\r" : "%c", *a);
            n += snprintf(out + n, sizeof out - n, "]");
        }
    } else {
        const char *execfn = (const char *)getauxval(AT_EXECFN);
        const unsigned char *rnd = (const unsigned char *)getauxval(AT_RANDOM);
        const char *want = getenv("EXEC_RULES_PATH");
        int nonzero = 0;
        for (int i = 0; rnd && i < 16; i++)
            nonzero |= rnd[i];
        n = snprintf(out, sizeof out, "execfn=%d random=%d phent=%lu pagesz=%lu",
                     execfn && want && strcmp(execfn, want) == 0, rnd && nonzero,
                     getauxval(AT_PHENT), getauxval(AT_PAGESZ));
    }
    out[n++] = '\n';
    return write(3, out, n) == n ? 0 : 1;
}

/* Runs `path` with `argv` and the child mode `mode`; returns the child's line, or the
 * execve errno as "errno=N". */
static void run(const char *path, char *const argv[], const char *mode, char *line, size_t max) {
    int p[2];
    if (pipe(p) != 0) {
        snprintf(line, max, "pipe failed");
        return;
    }
    char m[64], wantpath[160], me[160];
    snprintf(m, sizeof m, "EXEC_RULES_CHILD=%s", mode);
    snprintf(wantpath, sizeof wantpath, "EXEC_RULES_PATH=%s", path);
    snprintf(me, sizeof me, "EXEC_RULES_SELF=%s", self);
    char *envp[] = {m, wantpath, me, NULL};
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 3);
        execve(path, argv, envp);
        int e = errno;
        char b[32];
        int n = snprintf(b, sizeof b, "errno=%d\n", e);
        if (write(3, b, n) != n)
            _exit(2);
        _exit(1);
    }
    close(p[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < max && (r = read(p[0], line + got, max - 1 - got)) > 0)
        got += r;
    line[got] = 0;
    if (got && line[got - 1] == '\n')
        line[got - 1] = 0;
    close(p[0]);
    waitpid(pid, NULL, 0);
}

static void expect(const char *name, const char *got, const char *want) {
    char d[640];
    snprintf(d, sizeof d, "got \"%s\", want \"%s\"", got, want);
    report(name, strcmp(got, want) == 0, d);
}

static char *read_self(size_t *len) {
    int fd = open(self, O_RDONLY);
    struct stat st;
    fstat(fd, &st);
    char *b = malloc(st.st_size);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, b + got, st.st_size - got);
        if (r <= 0)
            break;
        got += r;
    }
    close(fd);
    *len = got;
    return b;
}

static void write_file(const char *path, const void *b, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    if (write(fd, b, len) != (ssize_t)len)
        printf("write %s failed\n", path);
    close(fd);
}

static void arguments(void) {
    char line[512];
    char *none[] = {NULL};
    run(self, none, "args", line, sizeof line);
    expect("an empty argv becomes one empty argv[0]", line, "argc=1 []");
    char *two[] = {"first", "second", NULL};
    run(self, two, "args", line, sizeof line);
    expect("argv arrives as given", line, "argc=2 [first] [second]");

    char *big = malloc(32 * 4096 + 1);
    memset(big, 'a', 32 * 4096);
    big[32 * 4096] = 0;
    char *toolong[] = {"x", big, NULL};
    run(self, toolong, "args", line, sizeof line);
    expect("an argument of MAX_ARG_STRLEN bytes is E2BIG", line, "errno=7");
    big[32 * 4096 - 1] = 0;
    run(self, toolong, "args", line, sizeof line);
    report("one byte less is accepted", strncmp(line, "argc=2 [x] [aaaa", 16) == 0, line);
    free(big);
}

static void auxv(void) {
    char line[512];
    char *argv[] = {"aux", NULL};
    run(self, argv, "auxv", line, sizeof line);
    expect("the auxiliary vector has AT_EXECFN, AT_RANDOM, AT_PHENT, AT_PAGESZ", line,
           "execfn=1 random=1 phent=56 pagesz=4096");
}

static void malformed(void) {
    char line[512], path[128];
    size_t len;
    char *me = read_self(&len);
    char *argv[] = {"bad", NULL};
    static const struct {
        const char *name;
        size_t keep;     /* bytes kept (0: all) */
        int off, value;  /* a byte to change (off < 0: none) */
    } cases[] = {
        {"an empty file is ENOEXEC", 1, -1, 0},
        {"an ELF header cut short is ENOEXEC", 60, -1, 0},
        {"program headers cut off are ENOEXEC", 100, -1, 0},
        {"another machine is ENOEXEC", 0, 18, EM_386},
        {"a relocatable object is ENOEXEC", 0, 16, ET_REL},
        {"program headers of another size are ENOEXEC", 0, 54, 64},
        {"no program headers is ENOEXEC", 0, 56, 0},
    };
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/bad%u", dir, i);
        char *copy = malloc(len);
        memcpy(copy, me, len);
        if (cases[i].off >= 0) {
            copy[cases[i].off] = (char)cases[i].value;
            if (cases[i].off == 56)
                copy[57] = 0;
        }
        size_t n = cases[i].keep ? cases[i].keep - (cases[i].keep == 1) : len;
        write_file(path, copy, n);
        free(copy);
        run(path, argv, "args", line, sizeof line);
        expect(cases[i].name, line, "errno=8");
    }
    snprintf(path, sizeof path, "%s/text", dir);
    write_file(path, "just some text\n", 15);
    run(path, argv, "args", line, sizeof line);
    expect("a file of no known format is ENOEXEC", line, "errno=8");
    free(me);
}

static void scripts(void) {
    char line[512], path[128], text[512];
    char *argv[] = {"script", "arg1", NULL};
    snprintf(path, sizeof path, "%s/script", dir);
    snprintf(text, sizeof text, "#!%s -x\r\n", self);
    write_file(path, text, strlen(text));
    run(path, argv, "args", line, sizeof line);
    expect("#!: one argument, \\r kept, then the script and its arguments", line,
           "argc=4 [SELF] [-x\\r] [script] [arg1]");

    snprintf(text, sizeof text, "#! \t%s   two words  \t\n", self);
    write_file(path, text, strlen(text));
    run(path, argv, "args", line, sizeof line);
    expect("#!: spaces around, the rest is one argument", line,
           "argc=4 [SELF] [two words] [script] [arg1]");

    /* "#!/" and 300 bytes of name, no newline. */
    memset(text, 'n', sizeof text);
    memcpy(text, "#!/", 3);
    write_file(path, text, 300);
    run(path, argv, "args", line, sizeof line);
    expect("#!: an interpreter name cut by the 255-byte limit is ENOEXEC", line, "errno=8");
}

int main(int argc, char **argv) {
    const char *mode = getenv("EXEC_RULES_CHILD");
    if (mode)
        return child(argc, argv, mode);
    self = argv[0];
    mkdir("/tmp", 01777);
    strcpy(dir, "/tmp/exec-rules-XXXXXX");
    if (!mkdtemp(dir)) {
        printf("mkdtemp failed\n");
        return 100;
    }
    arguments();
    auxv();
    malformed();
    scripts();
    for (int i = 0; i < 7; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s/bad%d", dir, i);
        unlink(p);
    }
    char p[128];
    snprintf(p, sizeof p, "%s/text", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/script", dir);
    unlink(p);
    rmdir(dir);
    printf("failures: %d\n", failures);
    return failures;
}
