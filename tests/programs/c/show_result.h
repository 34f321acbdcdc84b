/* "what: result" lines for the programs compared with their native run: a result, or -1 and
 * the errno's name (names, not numbers or strerror texts, which differ between libcs). */
#ifndef SHOW_RESULT_H
#define SHOW_RESULT_H

#include <errno.h>
#include <stdio.h>

static const char *errno_name(void) {
    switch (errno) {
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    case ESRCH: return "ESRCH";
    case EFAULT: return "EFAULT";
    case ENOMEM: return "ENOMEM";
    case EEXIST: return "EEXIST";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EIDRM: return "EIDRM";
    default: return "other";
    }
}

/* "what: r", or "what: -1 ERRNO" for a negative `r`. */
static void show(const char *what, long r) {
    if (r < 0)
        printf("%s: -1 %s\n", what, errno_name());
    else
        printf("%s: %ld\n", what, r);
}

#endif
