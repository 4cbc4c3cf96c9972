// libFuzzer target: the configuration loader. The input is written to a file and loaded; a file
// that loads must also validate, print and take its own printed values back as -o overrides
// (every value -T shows must be one the parser accepts).
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

static char path[64];

extern "C" int LLVMFuzzerInitialize(int *, char ***)
{
    log_set_level(-1);  // quiet: only the outcome matters
    snprintf(path, sizeof(path), "/tmp/fuzz-config-%d.ini", (int)getpid());
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    Config c;
    config_defaults(&c);
    char err[1024];
    if (!config_load_file(&c, path, err, sizeof(err))) {
        assert(strncmp(err, path, strlen(path)) == 0);  // every file error names the file
        return 0;
    }
    config_validate(&c, err, sizeof(err));
    char *printed = NULL;
    size_t printed_len = 0;
    FILE *out = open_memstream(&printed, &printed_len);
    config_print(&c, out);
    fclose(out);
    Config again;
    config_defaults(&again);
    for (char *line = strtok(printed, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char arg[600];
        const char *eq = strstr(line, " = ");
        assert(eq != NULL);
        snprintf(arg, sizeof(arg), "%.*s=%s", (int)(eq - line), line, eq + 3);
        if (strstr(arg, "password=********") != NULL)
            continue;  // masked on purpose
        bool ok = config_override(&again, arg, err, sizeof(err));
        if (!ok)
            fprintf(stderr, "printed value refused: %s: %s\n", arg, err);
        assert(ok);
    }
    free(printed);
    return 0;
}
