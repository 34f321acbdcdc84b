/* Linked against libdynelf-plugin (DT_NEEDED, found through LD_LIBRARY_PATH): ld.so loads
 * it and runs its constructor before main. */
#include <stdio.h>

int dynelf_plugin_answer(int x);

int main(void) {
    printf("main %d\n", dynelf_plugin_answer(1));
    return 7;
}
