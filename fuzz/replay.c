/* replay.c - runs a fuzz target over files (the seed corpus and every regression input)
 * without libFuzzer, so that `make check` and the sanitizer and valgrind passes replay
 * them with the normal compiler. usage: replay FILE... */
#include "fuzz.h"

int main(int argc, char **argv)
{
    mhdctx_log_to_file("/dev/null");
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (f == NULL) {
            perror(argv[i]);
            return 1;
        }
        static uint8_t data[1 << 20];
        size_t n = fread(data, 1, sizeof data, f);
        fclose(f);
        LLVMFuzzerTestOneInput(data, n);
    }
    mhdctx_sql_tag_keys(NULL, 0);
    mhdctx_log_shutdown();
    printf("%d inputs replayed\n", argc - 1);
    return 0;
}
