/* dlopen(argv[1]) (libdynelf-big.so), remove the library's file, then read bytes of it that
 * the loader never touched: Linux keeps a mapped file's bytes after its last name goes, so
 * they read as they were ("1 2 3"). A failure is a line naming it and exit status 1. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s LIBRARY\n", argv[0]);
        return 2;
    }
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) {
        printf("dlopen failed: %s\n", dlerror());
        return 1;
    }
    int (*get)(int) = (int (*)(int))dlsym(h, "dynelf_big_get");
    if (!get) {
        printf("dlsym failed: %s\n", dlerror());
        return 1;
    }
    if (unlink(argv[1]) != 0) {
        printf("unlink failed: %s\n", strerror(errno));
        return 1;
    }
    printf("%d %d %d\n", get(0), get(1 << 20), get((2 << 20) - 1));
    return 0;
}
