/* memfd-copy: memfd_create with reads, writes, ftruncate, private and read-only shared
 * mappings and file seals; copy_file_range, sendfile, splice, tee and vmsplice round trips
 * between files and pipes, with their offsets and errors. Every line prints what the calls
 * returned (results, errno names, checksums), so the run in a guest is compared line by
 * line with the native one. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static const char *en(int e) {
    switch (e) {
    case 0: return "0";
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    case EBADF: return "EBADF";
    case ESPIPE: return "ESPIPE";
    case EAGAIN: return "EAGAIN";
    case EISDIR: return "EISDIR";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EXDEV: return "EXDEV";
    default: return "other";
    }
}

#define SHOW(name, expr)                                                                   \
    do {                                                                                   \
        errno = 0;                                                                         \
        long long r_ = (long long)(expr);                                                  \
        printf("%s: r=%lld errno=%s\n", name, r_, r_ < 0 ? en(errno) : "0");              \
        fflush(stdout);                                                                    \
    } while (0)

static uint32_t sum(const unsigned char *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static uint32_t file_sum(int fd, off_t *size) {
    struct stat st;
    fstat(fd, &st);
    unsigned char *buf = malloc(st.st_size + 1);
    ssize_t n = pread(fd, buf, st.st_size, 0);
    uint32_t h = sum(buf, n > 0 ? n : 0);
    free(buf);
    *size = st.st_size;
    return h;
}

static void show_file(const char *name, int fd) {
    off_t size;
    uint32_t h = file_sum(fd, &size);
    printf("%s: size=%lld sum=%08x\n", name, (long long)size, h);
    fflush(stdout);
}

int main(void) {
    /* memfd basics. */
    SHOW("memfd bad flags", memfd_create("x", 0x1000));
    char longname[300];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    SHOW("memfd name too long", memfd_create(longname, 0));
    int m = memfd_create("test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    printf("memfd: ok=%d cloexec=%d\n", m >= 0, (fcntl(m, F_GETFD) & FD_CLOEXEC) != 0);
    struct stat st;
    fstat(m, &st);
    printf("memfd stat: regular=%d size=%lld mode=%o\n", S_ISREG(st.st_mode),
           (long long)st.st_size, st.st_mode & 0777);
    SHOW("memfd write", write(m, "hello memfd world", 17));
    char buf[64] = {0};
    SHOW("memfd pread", pread(m, buf, sizeof buf - 1, 6));
    printf("memfd read back: %s\n", buf);
    SHOW("memfd ftruncate 8192", ftruncate(m, 8192));
    fstat(m, &st);
    printf("memfd size: %lld\n", (long long)st.st_size);

    char *priv = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, m, 0);
    printf("private mapping: ok=%d head=%.5s\n", priv != MAP_FAILED, priv);
    memcpy(priv, "HELLO", 5);
    memset(buf, 0, sizeof buf);
    pread(m, buf, 5, 0);
    printf("file after a private write: %s\n", buf);
    munmap(priv, 8192);
    char *shr = mmap(NULL, 4096, PROT_READ, MAP_SHARED, m, 0);
    printf("shared read-only mapping: ok=%d head=%.11s\n", shr != MAP_FAILED, shr);
    munmap(shr, 4096);

    /* Seals. */
    SHOW("get seals", fcntl(m, F_GET_SEALS));
    SHOW("add bad seal", fcntl(m, F_ADD_SEALS, 0x100));
    SHOW("add shrink", fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK));
    SHOW("shrink sealed", ftruncate(m, 100));
    SHOW("grow allowed", ftruncate(m, 12288));
    SHOW("add grow", fcntl(m, F_ADD_SEALS, F_SEAL_GROW));
    SHOW("grow sealed", ftruncate(m, 16384));
    SHOW("same size", ftruncate(m, 12288));
    SHOW("write past the end", pwrite(m, "abc", 3, 12286));
    SHOW("write inside", pwrite(m, "abc", 3, 100));
    SHOW("fallocate past the end", fallocate(m, 0, 0, 20000));
    SHOW("add write", fcntl(m, F_ADD_SEALS, F_SEAL_WRITE));
    SHOW("write sealed", pwrite(m, "abc", 3, 0));
    SHOW("shared writable mapping of a write-sealed memfd",
         mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0) == MAP_FAILED ? -1 : 0);
    SHOW("add seal", fcntl(m, F_ADD_SEALS, F_SEAL_SEAL));
    SHOW("add after seal", fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK));
    SHOW("get seals", fcntl(m, F_GET_SEALS));
    show_file("sealed memfd", m);
    int ns = memfd_create("nosealing", 0);
    SHOW("no sealing: get seals", fcntl(ns, F_GET_SEALS));
    SHOW("no sealing: add", fcntl(ns, F_ADD_SEALS, F_SEAL_WRITE));
    int pp[2];
    pipe(pp);
    SHOW("seals of a pipe", fcntl(pp[0], F_GET_SEALS));
    close(pp[0]);
    close(pp[1]);
    close(ns);

    /* Files to copy between (in a fresh directory of /tmp). */
    char dir[] = "/tmp/memfd-copy-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char pa[300], pb[300];
    snprintf(pa, sizeof pa, "%s/a", dir);
    snprintf(pb, sizeof pb, "%s/b", dir);
    int fa = open(pa, O_CREAT | O_RDWR, 0644);
    int fb = open(pb, O_CREAT | O_RDWR, 0644);
    unsigned char *data = malloc(200000);
    for (int i = 0; i < 200000; i++)
        data[i] = (unsigned char)(i * 7 + i / 251);
    write(fa, data, 200000);
    lseek(fa, 0, SEEK_SET);

    /* copy_file_range. */
    SHOW("copy_file_range all", copy_file_range(fa, NULL, fb, NULL, 300000, 0));
    show_file("copy", fb);
    printf("offsets after: in=%lld out=%lld\n", (long long)lseek(fa, 0, SEEK_CUR),
           (long long)lseek(fb, 0, SEEK_CUR));
    loff_t oi = 1000, oo = 5;
    SHOW("copy_file_range with offsets", copy_file_range(fa, &oi, fb, &oo, 4096, 0));
    printf("offset pointers: in=%lld out=%lld file offsets: in=%lld out=%lld\n",
           (long long)oi, (long long)oo, (long long)lseek(fa, 0, SEEK_CUR),
           (long long)lseek(fb, 0, SEEK_CUR));
    show_file("patched copy", fb);
    oi = 250000;
    SHOW("copy_file_range past the end", copy_file_range(fa, &oi, fb, NULL, 10, 0));
    SHOW("copy_file_range flags", copy_file_range(fa, NULL, fb, NULL, 10, 1));
    oi = 0;
    oo = 10;
    SHOW("copy_file_range overlapping", copy_file_range(fa, &oi, fa, &oo, 100, 0));
    pipe(pp);
    SHOW("copy_file_range to a pipe", copy_file_range(fa, NULL, pp[1], NULL, 10, 0));
    int rdonly = open(pb, O_RDONLY);
    SHOW("copy_file_range to a read-only fd", copy_file_range(fa, NULL, rdonly, NULL, 10, 0));
    close(rdonly);

    /* sendfile: file to file and file to pipe. */
    ftruncate(fb, 0);
    lseek(fb, 0, SEEK_SET);
    off_t so = 0;
    SHOW("sendfile file to file", sendfile(fb, fa, &so, 200000));
    printf("sendfile offset: %lld\n", (long long)so);
    show_file("sendfile copy", fb);
    so = 10;
    SHOW("sendfile file to pipe", sendfile(pp[1], fa, &so, 1000));
    unsigned char got[70000];
    ssize_t n = read(pp[0], got, sizeof got);
    printf("pipe got %zd sum=%08x\n", n, sum(got, n > 0 ? n : 0));

    /* splice: file to pipe, pipe to file, pipe to pipe; tee. */
    loff_t off = 100;
    SHOW("splice file to pipe", splice(fa, &off, pp[1], NULL, 5000, 0));
    printf("splice offset: %lld\n", (long long)off);
    int qq[2];
    pipe(qq);
    SHOW("tee", tee(pp[0], qq[1], 100000, 0));
    SHOW("tee nothing to copy yet (nonblock)", tee(qq[0], pp[1], 0, SPLICE_F_NONBLOCK));
    ftruncate(fb, 0);
    off = 0;
    SHOW("splice pipe to file", splice(pp[0], NULL, fb, &off, 100000, 0));
    printf("splice out offset: %lld\n", (long long)off);
    show_file("spliced file", fb);
    int rr[2];
    pipe(rr);
    SHOW("splice pipe to pipe", splice(qq[0], NULL, rr[1], NULL, 100000, 0));
    n = read(rr[0], got, sizeof got);
    printf("pipe to pipe got %zd sum=%08x\n", n, sum(got, n > 0 ? n : 0));
    SHOW("splice without a pipe", splice(fa, NULL, fb, NULL, 10, 0));
    off = 0;
    SHOW("splice offset on a pipe", splice(pp[0], &off, fb, NULL, 10, 0));
    SHOW("splice bad flags", splice(pp[0], NULL, fb, NULL, 10, 0x100));
    SHOW("tee same pipe", tee(pp[0], pp[1], 10, 0));
    SHOW("tee not pipes", tee(fa, pp[1], 10, 0));
    SHOW("splice empty pipe nonblock", splice(pp[0], NULL, fb, NULL, 10, SPLICE_F_NONBLOCK));

    /* A full output pipe: nothing is taken from the input. */
    {
        int full[2], src[2];
        pipe(full);
        pipe(src);
        fcntl(full[1], F_SETFL, O_NONBLOCK);
        char blk[4096];
        memset(blk, 'f', sizeof blk);
        while (write(full[1], blk, sizeof blk) > 0) {
        }
        write(src[1], "abc", 3);
        SHOW("splice into a full pipe", splice(src[0], NULL, full[1], NULL, 3, SPLICE_F_NONBLOCK));
        SHOW("the input keeps its bytes", read(src[0], buf, sizeof buf));
        close(full[0]);
        close(full[1]);
        close(src[0]);
        close(src[1]);
    }

    /* vmsplice. */
    struct iovec iov[2] = {{"vm", 2}, {"splice", 6}};
    SHOW("vmsplice", vmsplice(rr[1], iov, 2, 0));
    memset(buf, 0, sizeof buf);
    n = read(rr[0], buf, sizeof buf - 1);
    printf("vmsplice read: %zd %s\n", n, buf);

    /* memfd as a copy source and target. */
    int m2 = memfd_create("copy", 0);
    lseek(fa, 0, SEEK_SET);
    so = 0;
    SHOW("sendfile file to memfd", sendfile(m2, fa, &so, 200000));
    show_file("memfd copy", m2);

    unlink(pa);
    unlink(pb);
    rmdir(dir);
    printf("done\n");
    return 0;
}
