/* replay.c: a main() for fuzz targets built without libFuzzer: runs every file of the
 * corpus directories (or files) given as arguments through LLVMFuzzerTestOneInput,
 * so make check keeps every input that once crashed fixed. */
#include "core/compat.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>

#include "core/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    size_t len;
    char *data = file_read(path, &len);
    if (!data) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        return -1;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)data, len);
    free(data);
    return 0;
}

int main(int argc, char **argv)
{
    int n = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: no such corpus\n", argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            bad += run_file(argv[i]) != 0;
            n++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            bad += run_file(path) != 0;
            n++;
        }
        if (d) closedir(d);
    }
    printf("replay: %d inputs, %d unreadable\n", n, bad);
    return bad || n == 0;
}
