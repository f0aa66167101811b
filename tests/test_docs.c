/* test_docs.c — generated documentation stays in step with the code. */
#include <stdlib.h>
#include <string.h>

#include "../src/util/util.h"
#include "test.h"

TEST(test_docs_config_md_is_current) {
    static char out[1 << 18];
    int rc = run_cmd("./train --help-config", out, sizeof out);
    size_t len = 0;
    char *doc = read_file("docs/config.md", &len);
    CHECK(rc == 0 && doc, "cannot run ./train --help-config or read docs/config.md");
    if (doc) CHECK(strcmp(out, doc) == 0, "docs/config.md is stale: run `make docs` and commit it");
    free(doc);
}

/* The walk-through in docs/positions.md quotes sources: each code block after a line
 * "From `FILE`:" must appear in FILE verbatim, so the guide cannot drift from the code. */
TEST(test_docs_position_guide_quotes_the_sources) {
    size_t len = 0;
    char *doc = read_file("docs/positions.md", &len);
    CHECK(doc != NULL, "cannot read docs/positions.md");
    if (!doc) return;
    int quotes = 0;
    for (char *p = strstr(doc, "From `"); p; p = strstr(p + 1, "From `")) {
        char path[256], *end = strchr(p + 6, '`');
        char *code = strstr(p, "```c\n"), *stop = code ? strstr(code + 5, "```") : NULL;
        if (!end || !stop || (size_t)(end - p - 6) >= sizeof path) continue;
        snprintf(path, sizeof path, "%.*s", (int)(end - p - 6), p + 6);
        *stop = '\0';
        char *src = read_file(path, &len);
        CHECK(src && strstr(src, code + 5), "docs/positions.md quotes %s, which no longer has:\n%s",
              path, code + 5);
        free(src);
        *stop = '`';
        quotes++;
    }
    CHECK(quotes == 6, "docs/positions.md: %d quoted code blocks, expected the guide's 6", quotes);
    free(doc);
}
