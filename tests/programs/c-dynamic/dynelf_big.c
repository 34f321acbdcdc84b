/* A shared library with 2 MiB of read-only data (three bytes set) and a getter: most of
 * its pages are read for the first time only when the getter reaches them (tests/tests/
 * dynamic_elf.rs, a library removed while it is mapped). */
#define BIG (2 << 20)

const unsigned char dynelf_big_data[BIG] = {[0] = 1, [BIG / 2] = 2, [BIG - 1] = 3};

int dynelf_big_get(int i) {
    return dynelf_big_data[i];
}
