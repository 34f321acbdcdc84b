/* Reports of the hand-over test programs (tests/tests/upgrade.rs): a whole file written at
 * once (to PATH.new, then renamed), so that the test never reads half a report. */
#ifndef REPORT_FILE_H
#define REPORT_FILE_H

#include <stdio.h>
#include <stdlib.h>

static void say(const char *path, const char *text) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
        perror(path);
        exit(1);
    }
}

#endif
