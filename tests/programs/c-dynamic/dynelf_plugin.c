/* A shared library for the dynamic-ELF tests: its constructor runs when it is loaded (by
 * ld.so at start-up, or by dlopen), and it keeps state in .data and .bss. */
#include <stdio.h>

static int calls;                  /* .bss */
static int base = 40;              /* .data */
static char scratch[64 << 10];     /* a big .bss */

__attribute__((constructor)) static void loaded(void) {
    scratch[sizeof scratch - 1] = 1;
    printf("plugin loaded\n");
}

int dynelf_plugin_answer(int x) {
    calls++;
    return base + x + calls + scratch[sizeof scratch - 1];
}
