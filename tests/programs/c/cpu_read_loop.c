/* cpu-read-loop PATH SECONDS: host work on the guest's behalf. Reads all of PATH (with
 * --rootfs and a PATH larger than the guest's page cache, every pass is served by the host
 * again) again and again for SECONDS of wall time,
 * then prints "reads N bytes B" and exits 0 (1 if PATH cannot be read). The host's CPU time
 * for serving the reads is the tenant's: a rate or budget must bound it. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static char buf[1 << 16];

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: cpu-read-loop PATH SECONDS\n");
        return 2;
    }
    double secs = atof(argv[2]);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long reads = 0, bytes = 0;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 >= secs)
            break;
        int fd = open(argv[1], O_RDONLY);
        if (fd < 0) {
            perror("cpu-read-loop: open");
            return 1;
        }
        ssize_t r;
        while ((r = read(fd, buf, sizeof buf)) > 0)
            bytes += (unsigned long)r;
        close(fd);
        if (r < 0) {
            perror("cpu-read-loop: read");
            return 1;
        }
        reads++;
    }
    printf("reads %lu bytes %lu\n", reads, bytes);
    return 0;
}
