/* dlopen(argv[1]) and call its dynelf_plugin_answer twice; a library that does not load is
 * reported with dlerror() and exit status 1 (compared with the native run). */
#include <dlfcn.h>
#include <stdio.h>

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
    int (*answer)(int) = (int (*)(int))dlsym(h, "dynelf_plugin_answer");
    if (!answer) {
        printf("dlsym failed: %s\n", dlerror());
        return 1;
    }
    printf("answer %d\n", answer(0));
    printf("answer %d\n", answer(10));
    printf("dlclose %d\n", dlclose(h));
    return 0;
}
