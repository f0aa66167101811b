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
