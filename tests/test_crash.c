/* test_crash.c — what survives a crash or a full disk, and what a hostile checkpoint gets.
 *
 * - SIGKILL at seeded random moments of a run that checkpoints every step (20 kills, or
 *   TRAINSHORT_KILLS; scripts/stress_kill.sh runs 200): every --resume succeeds and the losses of
 *   the finished run equal, bit for bit, those of a run never interrupted; no file of an
 *   interrupted save is left.
 * - Each state a save can be interrupted in (see src/checkpoint.h), built by hand: before the
 *   commit point the previous pair is used, after it the pending optimizer file is completed.
 * - Temp files of dead processes are removed; a live process's are not; one ./train per run
 *   directory.
 * - A new run that fails before its first checkpoint leaves no directory behind; a finished run
 *   killed before its "done" row gets it on --resume.
 * - A full disk (a small tmpfs, as root): a failed log, checkpoint or --json write is one error
 *   line and a non-zero exit, leaves no half-written row, and keeps the last checkpoint resumable.
 * - Checkpoint metadata out of range and non-finite tensors are refused with one line. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include "../src/io/safetensors.h"
#include "../src/util/util.h"
#include "cli_util.h"
#include "test.h"

#define MAX_STEPS 16384 /* the longest run whose losses a test reads */

/* ---- processes ---- */

/* Starts "./train args" (TRAINSHORT_BIN's, see locate_binaries) with its output in out_path;
 * returns its pid (the shell execs train, and train's own re-exec keeps the pid, so a signal to
 * the pid reaches train). */
static pid_t spawn_train(const char *args, const char *out_path) {
    char cmd[2048], located[2200];
    snprintf(cmd, sizeof cmd, "exec ./train %s", args);
    locate_binaries(cmd, located, sizeof located);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        execl("/bin/sh", "sh", "-c", located, (char *)NULL);
        _exit(127);
    }
    if (pid < 0) sys_error("fork: %s", strerror(errno));
    return pid;
}

/* A pid that no process has: a child that has exited and been reaped. */
static pid_t dead_pid(void) {
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, NULL, 0);
    return pid;
}

/* Names in dir left by an interrupted save: temp files and pending optimizer files. */
static int leftovers(const char *dir, char *names, size_t n) {
    DIR *d = opendir(dir);
    int count = 0;
    names[0] = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strstr(e->d_name, ".tmp.") && strncmp(e->d_name, "optim.step-", 11)) continue;
        size_t k = strlen(names);
        snprintf(names + k, n - k, " %s", e->d_name);
        count++;
    }
    if (d) closedir(d);
    return count;
}

/* Every step 1..steps has exactly one "loss" row in run's log, equal to ref's. */
static void expect_same_losses(const char *run, const char *ref, int steps, const char *what) {
    static double a[MAX_STEPS + 1], b[MAX_STEPS + 1];
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/log.jsonl", run);
    snprintf(pb, sizeof pb, "%s/log.jsonl", ref);
    int rows = log_column(pa, "loss", a, steps), ref_rows = log_column(pb, "loss", b, steps);
    CHECK(rows == steps && ref_rows == steps, "%s: %d loss rows (reference %d), expected %d", what,
          rows, ref_rows, steps);
    int first_bad = 0;
    for (int s = 1; s <= steps && !first_bad; s++)
        if (!(a[s] == b[s])) first_bad = s;
    CHECK(!first_bad, "%s: step %d loss %.17g, uninterrupted %.17g", what, first_bad,
          first_bad ? a[first_bad] : 0, first_bad ? b[first_bad] : 0);
}

/* ---- the scratch runs ---- */

/* <dir>/cfg.json: the tiny model, checkpoints every step, `steps` steps, dropout on (so the
 * masks' step keys are exercised), plus extra overrides. */
static void crash_config(const char *dir, int steps, const char *extra) {
    char path[600], s[64], c[64];
    snprintf(path, sizeof path, "%s/cfg.json", dir);
    snprintf(s, sizeof s, "train.steps=%d", steps);
    snprintf(c, sizeof c, "%s", extra ? extra : "train.log_every=1");
    const char *over[] = {s,   "train.ckpt_every=1", "train.eval_every=0", "model.dropout=0.1", c,
                          NULL};
    write_config(path, dir, over);
}

/* <dir>/ref: the uninterrupted run of <dir>/cfg.json. */
static int reference_run(const char *dir, char *out) {
    int rc = sh(out, "./train --config %s/cfg.json --out %s/ref", dir, dir);
    CHECK(rc == 0, "the reference run failed (%d): %s", rc, out);
    return rc == 0;
}

/* <dir>/<name>: a run stopped cleanly after `step` steps. */
static int run_to(const char *dir, const char *name, int step, char *out) {
    int rc = sh(out, "./train --config %s/cfg.json --out %s/%s --stop-at %d", dir, dir, name, step);
    CHECK(rc == 0, "training %s to step %d failed (%d): %s", name, step, rc, out);
    return rc == 0;
}

/* ---- 1. SIGKILL at random moments ---- */

TEST(test_crash_sigkill_then_resume_continues_losses) {
    long asked = test_env_long("TRAINSHORT_KILLS", 20);
    const int kills = asked > 0 && asked < 100000 ? (int)asked : 20;
    const int steps = kills * 40 + 200 < MAX_STEPS ? kills * 40 + 200 : MAX_STEPS;
    char dir[256], out[OUT_LEN], run[600], args[700], path[700], names[1024];
    cli_scratch("crash_kill", dir, sizeof dir);
    crash_config(dir, steps, NULL);
    double t0 = now_seconds();
    if (!reference_run(dir, out)) return;
    double step_time = (now_seconds() - t0) / steps; /* an upper bound: start-up included */
    t0 = now_seconds();
    if (!run_to(dir, "run", 1, out)) return; /* the kills start from a checkpoint */
    double start = now_seconds() - t0;       /* start-up + one step */
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(args, sizeof args, "--resume %s", run);
    snprintf(path, sizeof path, "%s/resume.out", dir);
    int killed = 0, completed = 0, cleaned = 0, finished = 0;
    uint64_t key = rng_key(17, 1);
    for (int i = 0; killed < kills && !finished; i++) {
        /* from the middle of start-up to at most ~30 steps into training, so that on any host
         * the run outlasts the kills (40 steps are planned per kill) */
        double delay = start * (0.5 + rng_uniform(key, 2 * (uint64_t)i)) +
                       30 * step_time * rng_uniform(key, 2 * (uint64_t)i + 1);
        pid_t pid = spawn_train(args, path);
        usleep((useconds_t)(delay * 1e6));
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        char *said = read_file(path, NULL);
        completed += said && strstr(said, "completed the interrupted save") != NULL;
        cleaned += said && strstr(said, "of interrupted saves") != NULL;
        if (WIFSIGNALED(st))
            killed++;
        else {
            finished = 1;
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "resume %d failed: %s", i,
                  said ? said : "");
        }
        free(said);
    }
    CHECK(killed == kills, "the run finished after %d of %d kills: raise the step count", killed,
          kills);
    int rc = sh(out, "./train --resume %s", run);
    CHECK(rc == 0, "the last resume failed (%d): %s", rc, out);
    snprintf(path, sizeof path, "%s/ref", dir);
    expect_same_losses(run, path, steps, "killed and resumed");
    CHECK(leftovers(run, names, sizeof names) == 0, "left behind:%s", names);
    printf("  %d kills over %d steps; the resumes completed %d interrupted saves and cleaned up "
           "after %d\n",
           killed, steps, completed, cleaned);
}

/* ---- 2. each interrupted state of a save, built by hand ---- */

/* <dir>/state: the run stopped at step 4, plus files of step 5's save as `setup` places them
 * (a shell command run in <dir>, where a5 is the run stopped at step 5); then --resume must
 * print `said` and finish with the uninterrupted losses. */
static void expect_recovery(const char *name, const char *setup, const char *said) {
    char dir[256], out[OUT_LEN], state[600], ref[600], names[1024];
    cli_scratch(name, dir, sizeof dir);
    crash_config(dir, 8, NULL);
    if (!reference_run(dir, out) || !run_to(dir, "a4", 4, out) || !run_to(dir, "a5", 5, out))
        return;
    int rc = sh(out, "cd %s && cp -r a4 state && %s", dir, setup);
    CHECK(rc == 0, "%s: setting up: %s", name, out);
    snprintf(state, sizeof state, "%s/state", dir);
    rc = sh(out, "./train --resume %s", state);
    CHECK(rc == 0 && strstr(out, said), "%s: resume (%d) should say '%s': %s", name, rc, said, out);
    snprintf(ref, sizeof ref, "%s/ref", dir);
    expect_same_losses(state, ref, 8, name);
    CHECK(leftovers(state, names, sizeof names) == 0, "%s: left behind:%s", name, names);
}

TEST(test_crash_resume_completes_a_save_interrupted_after_its_commit) {
    /* model.safetensors of step 5 is in place; its optimizer state still has the pending name */
    expect_recovery("crash_after_commit",
                    "cp a5/model.safetensors a5/log.jsonl state/ && "
                    "cp a5/optim.safetensors state/optim.step-5.safetensors",
                    "completed the interrupted save of step 5");
    /* the same in a run's first save: no optim.safetensors yet */
    expect_recovery("crash_after_first_commit",
                    "cp a5/model.safetensors a5/log.jsonl state/ && rm state/optim.safetensors && "
                    "cp a5/optim.safetensors state/optim.step-5.safetensors",
                    "completed the interrupted save of step 5");
}

TEST(test_crash_resume_drops_a_save_interrupted_before_its_commit) {
    /* step 5's optimizer state was written, its model was not: the pair of step 4 holds */
    expect_recovery("crash_before_commit",
                    "cp a5/optim.safetensors state/optim.step-5.safetensors && "
                    "cp a5/model.safetensors state/model.safetensors.tmp.999999999",
                    "removed 2 file(s) of interrupted saves");
}

TEST(test_crash_temp_files_of_live_processes_are_kept) {
    char dir[256], out[OUT_LEN], path[700];
    cli_scratch("crash_temps", dir, sizeof dir);
    crash_config(dir, 6, NULL);
    if (!run_to(dir, "run", 3, out)) return;
    char dead[700], live[700];
    snprintf(dead, sizeof dead, "%s/run/log.jsonl.tmp.%d", dir, (int)dead_pid());
    snprintf(live, sizeof live, "%s/run/log.jsonl.tmp.%d", dir, (int)getpid());
    write_text(dead, "x");
    write_text(live, "x");
    snprintf(path, sizeof path, "%s/run", dir);
    int rc = sh(out, "./train --resume %s", path);
    CHECK(rc == 0 && strstr(out, "removed 1 file(s)"), "resume (%d): %s", rc, out);
    CHECK(!file_exists(dead), "the dead process's temp file is still there");
    CHECK(file_exists(live), "a running process's temp file was removed");
}

TEST(test_crash_one_train_per_run_directory) {
    char dir[256], out[OUT_LEN], args[700], path[700], log[700];
    cli_scratch("crash_lock", dir, sizeof dir);
    crash_config(dir, 1000000, "train.log_every=1");
    if (!run_to(dir, "run", 1, out)) return;
    snprintf(args, sizeof args, "--resume %s/run", dir);
    snprintf(path, sizeof path, "%s/first.out", dir);
    snprintf(log, sizeof log, "%s/run/log.jsonl", dir);
    pid_t pid = spawn_train(args, path);
    double t0 = now_seconds(); /* wait until it trains (its log gets a row past step 1) */
    static double loss[8];
    while (now_seconds() - t0 < 30 && log_column(log, "loss", loss, 3) < 3) usleep(10000);
    int rc = sh(out, "./train --resume %s/run", dir);
    expect_user_error(rc, out, "in use by another ./train", NULL, NULL, "a second --resume");
    rc = sh(out, "./train --config %s/cfg.json --out %s/run", dir, dir);
    expect_user_error(rc, out, "in use by another ./train", NULL, NULL, "a new run in its --out");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* ---- 3. a new run that fails before its first checkpoint ---- */

TEST(test_crash_failed_first_steps_leave_no_directory) {
    char dir[256], out[OUT_LEN], path[600], run[600];
    cli_scratch("crash_diverge", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/bad.json", dir);
    write_diverging_config(path, dir, 0);
    snprintf(run, sizeof run, "%s/run", dir);
    int rc = sh(out, "./train --config %s --out %s", path, run);
    CHECK(rc == 1 && strstr(out, "not finite") && strstr(out, "is removed"),
          "a diverging new run (%d): %s", rc, out);
    CHECK(!file_exists(run), "the diverged run left %s", run);
    /* a directory the user made is emptied, not removed */
    rc = sh(out, "mkdir %s && ./train --config %s --out %s", run, path, run);
    CHECK(rc == 1 && file_exists(run), "a user's --out directory was removed (%d)", rc);
    rc = sh(out, "ls -A %s | wc -l", run);
    CHECK(rc == 0 && atoi(out) == 0, "files left in the user's directory: %s", out);
    snprintf(path, sizeof path, "%s/cfg.json", dir);
    write_config(path, dir, NULL);
    rc = sh(out, "./train --config %s --out %s", path, run);
    CHECK(rc == 0, "a retry with the same --out (%d): %s", rc, out);
}

/* ---- 4. a full disk ---- */

/* A 1 MB tmpfs at <dir>/mnt; 0 and a SKIP when it cannot be mounted. */
static int small_disk(const char *dir, const char *name) {
    char out[OUT_LEN];
    if (geteuid() != 0) {
        SKIP_NEED("root", "%s: mounting a tmpfs needs root", name);
        return 0;
    }
    int rc =
        sh(out, "mkdir -p %s/mnt && mount -t tmpfs -o size=1m trainshort-test %s/mnt", dir, dir);
    if (rc) SKIP_NEED("root", "%s: mount -t tmpfs failed: %s", name, out);
    return rc == 0;
}

/* Fills <dir>/mnt to its last page with <dir>/mnt/fill, then frees free_kb of it again. */
static int fill_disk(const char *dir, int free_kb) {
    char out[OUT_LEN];
    int rc = sh(out,
                "(cat /dev/zero >> %s/mnt/fill) 2>/dev/null; s=$(stat -c %%s %s/mnt/fill) && "
                "truncate -s $((s - %d * 1024)) %s/mnt/fill",
                dir, dir, free_kb, dir);
    CHECK(rc == 0, "filling the tmpfs: %s", out);
    return rc == 0;
}

/* Unmounts <dir>/mnt (also one a crashed earlier run of the tests left). */
static void unmount(const char *dir) {
    char out[OUT_LEN];
    sh(out, "umount %s/mnt 2>/dev/null", dir);
}

/* The scratch directory tests/tmp/<name>, after unmounting what an earlier run left in it. */
static void disk_scratch(const char *name, char *dir, size_t n) {
    char old[300];
    snprintf(old, sizeof old, "tests/tmp/%s", name);
    unmount(old);
    cli_scratch(name, dir, n);
}

TEST(test_crash_disk_full_new_run_leaves_nothing) {
    char dir[256], out[OUT_LEN], run[600];
    disk_scratch("crash_full_new", dir, sizeof dir);
    crash_config(dir, 6, NULL);
    if (!small_disk(dir, "crash_full_new") || !fill_disk(dir, 0)) return;
    snprintf(run, sizeof run, "%s/mnt/run", dir);
    int rc = sh(out, "./train --config %s/cfg.json --out %s", dir, run);
    CHECK(rc == 1 && strstr(out, "No space left on device") && strstr(out, "is removed") &&
              count_lines(strstr(out, "error: ")) == 1,
          "a new run on a full disk (%d): %s", rc, out);
    CHECK(!file_exists(run), "%s was left behind", run);
    unmount(dir);
}

TEST(test_crash_disk_full_checkpoint_keeps_the_last_one) {
    char dir[256], out[OUT_LEN], run[600], ref[700], names[1024];
    disk_scratch("crash_full_ckpt", dir, sizeof dir);
    crash_config(dir, 8, NULL);
    if (!reference_run(dir, out) || !small_disk(dir, "crash_full_ckpt")) return;
    snprintf(run, sizeof run, "%s/mnt/run", dir);
    int rc = sh(out, "./train --config %s/cfg.json --out %s --stop-at 3", dir, run);
    CHECK(rc == 0, "training to step 3 (%d): %s", rc, out);
    /* 24 KB hold the log's next rows, not the next checkpoint (~80 KB) */
    if (!fill_disk(dir, 24)) return;
    rc = sh(out, "./train --resume %s", run);
    CHECK(rc == 1 && strstr(out, "No space left on device") &&
              strstr(out, "checkpoint of step 3") && count_lines(strstr(out, "error: ")) == 1,
          "a checkpoint on a full disk (%d): %s", rc, out);
    CHECK(leftovers(run, names, sizeof names) == 0, "left behind:%s", names);
    snprintf(ref, sizeof ref, "%s/log.jsonl", run);
    CHECK(log_column(ref, "step", NULL, -1) >= 0, "%s has a row cut short", ref);
    rc = sh(out, "rm %s/mnt/fill && ./train --resume %s", dir, run);
    CHECK(rc == 0 && strstr(out, "at step 3"), "resuming once there is space (%d): %s", rc, out);
    snprintf(ref, sizeof ref, "%s/ref", dir);
    expect_same_losses(run, ref, 8, "after a full disk");
    unmount(dir);
}

TEST(test_crash_disk_full_log_mid_run) {
    enum { LOG_STEPS = 2000 }; /* a log of ~400 KB: the 1 MB disk holds it once there is room */
    char dir[256], out[OUT_LEN], run[600], args[700], path[700], log[700];
    disk_scratch("crash_full_log", dir, sizeof dir);
    crash_config(dir, LOG_STEPS, "train.ckpt_every=100");
    if (!small_disk(dir, "crash_full_log")) return;
    snprintf(run, sizeof run, "%s/mnt/run", dir);
    int rc = sh(out, "./train --config %s/cfg.json --out %s --stop-at 1", dir, run);
    CHECK(rc == 0, "training to step 1 (%d): %s", rc, out);
    snprintf(args, sizeof args, "--resume %s", run);
    snprintf(path, sizeof path, "%s/train.out", dir);
    snprintf(log, sizeof log, "%s/log.jsonl", run);
    pid_t pid = spawn_train(args, path);
    static double loss[LOG_STEPS + 1];
    double t0 = now_seconds();
    while (now_seconds() - t0 < 30 && log_column(log, "loss", loss, LOG_STEPS) < 20) usleep(2000);
    fill_disk(dir, 0); /* while it trains */
    int st;
    waitpid(pid, &st, 0);
    char *said = read_file(path, NULL);
    const char *err = said ? strstr(said, "error: ") : NULL;
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1 && err && count_lines(err) == 1 &&
              strstr(err, "No space left on device") && strstr(err, "is kept"),
          "training onto a full disk: %s", said ? said : "(no output)");
    free(said);
    CHECK(log_column(log, "step", NULL, -1) >= 0, "%s has a row cut short", log);
    rc = sh(out, "rm %s/mnt/fill && ./train --resume %s", dir, run);
    CHECK(rc == 0, "resuming once there is space (%d): %s", rc, out);
    int rows = log_column(log, "loss", loss, LOG_STEPS);
    CHECK(rows == LOG_STEPS, "%d loss rows for %d steps", rows, LOG_STEPS);
    unmount(dir);
}

TEST(test_crash_disk_full_eval_json) {
    char dir[256], out[OUT_LEN], json[600];
    disk_scratch("crash_full_eval", dir, sizeof dir);
    crash_config(dir, 4, NULL);
    if (!train_run(dir, out) || !small_disk(dir, "crash_full_eval") || !fill_disk(dir, 0)) return;
    const char *flags[] = {"--json", "--per-position"};
    for (int i = 0; i < 2; i++) {
        snprintf(json, sizeof json, "%s/mnt/rows.jsonl", dir);
        int rc = sh(out, "./eval --ckpt %s/run --lvalid 8,16 %s %s", dir, flags[i], json);
        CHECK(rc == 1 && strstr(out, "No space left on device") && strstr(out, json) &&
                  count_lines(strstr(out, "error: ")) == 1,
              "%s onto a full disk (%d): %s", flags[i], rc, out);
        size_t len = 1;
        char *text = read_file(json, &len);
        CHECK(text && len == 0, "%s holds %zu bytes of a row", json, len);
        free(text);
        unlink(json);
    }
    unmount(dir);
}

/* ---- 5. hostile checkpoints ---- */

/* Rewrites a checkpoint with metadata `key` set to value (NULL: unchanged) and, if poison is
 * set, the first float of tensor `poison` replaced by x. */
static void rewrite(const char *path, const char *key, const char *value, const char *poison,
                    float x) {
    char err[512];
    StFile *f = st_open(path, err, sizeof err);
    if (!f) sys_error("%s", err);
    int n = st_count(f);
    StTensor *t = xcalloc((size_t)n, sizeof *t);
    float *copy = NULL;
    for (int i = 0; i < n; i++) {
        t[i] = *st_at(f, i);
        if (poison && !strcmp(t[i].name, poison)) {
            copy = xcalloc(st_numel(&t[i]), sizeof *copy);
            memcpy(copy, t[i].data, st_numel(&t[i]) * sizeof *copy);
            copy[0] = x;
            t[i].data = copy;
        }
    }
    const char *keys[] = {"format", "config", "vocab_size", "step", "tokens", "elapsed"};
    const char *vals[6];
    int m = 0;
    for (int i = 0; i < 6; i++) {
        const char *v = st_meta(f, keys[i]);
        if (!v) continue;
        keys[m] = keys[i];
        vals[m++] = key && !strcmp(key, keys[i]) ? value : v;
    }
    if (st_write(path, t, n, keys, vals, m, err, sizeof err)) sys_error("%s", err);
    free(copy);
    free(t);
    st_close(f);
}

TEST(test_crash_checkpoint_metadata_out_of_range) {
    char dir[256], out[OUT_LEN];
    static const struct {
        const char *file, *key, *value, *want;
    } cases[] = {
        {"model", "step", "-3", "'step' is -3"},
        {"model", "step", "99999999999999999999", "'step' is missing or not an integer"},
        {"model", "step", "13", "'step' is 13, expected an integer in [0, 12]"},
        {"model", "vocab_size", "-1", "'vocab_size' is -1"},
        {"optim", "step", "-1", "'step' is -1"},
        {"optim", "tokens", "-5", "'tokens' is -5"},
        {"optim", "tokens", "9223372036854775807", "'tokens' is 9223372036854775807"},
        {"optim", "elapsed", "nan", "'elapsed' is 'nan'"},
    };
    if (!trained_scratch("crash_meta", dir, sizeof dir, out, NULL)) return;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[700];
        int rc = sh(out, "rm -rf %s/bad && cp -r %s/run %s/bad", dir, dir, dir);
        snprintf(path, sizeof path, "%s/bad/%s.safetensors", dir, cases[i].file);
        rewrite(path, cases[i].key, cases[i].value, NULL, 0);
        rc = sh(out, "./train --resume %s/bad", dir);
        expect_user_error(rc, out, cases[i].want, NULL, NULL, cases[i].value);
        if (strcmp(cases[i].file, "model")) continue;
        rc = sh(out, "./eval --ckpt %s/bad", dir);
        expect_user_error(rc, out, cases[i].want, NULL, NULL, cases[i].value);
    }
}

TEST(test_crash_checkpoint_non_finite_tensors) {
    char dir[256], out[OUT_LEN], path[700];
    static const struct {
        const char *file, *tensor;
        float x;
    } cases[] = {{"model", "tok_emb.weight", NAN},
                 {"model", "layers.0.ln1.bias", INFINITY},
                 {"optim", "adam.m.layers.0.attn.qkv.weight", -INFINITY},
                 {"optim", "adam.v.tok_emb.weight", -1.0f}};
    if (!trained_scratch("crash_nonfinite", dir, sizeof dir, out, NULL)) return;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = sh(out, "rm -rf %s/bad && cp -r %s/run %s/bad", dir, dir, dir);
        snprintf(path, sizeof path, "%s/bad/%s.safetensors", dir, cases[i].file);
        rewrite(path, NULL, NULL, cases[i].tensor, cases[i].x);
        rc = sh(out, "./train --resume %s/bad", dir);
        expect_user_error(rc, out, cases[i].tensor, NULL, NULL, cases[i].tensor);
        if (strcmp(cases[i].file, "model")) continue;
        rc = sh(out, "./eval --ckpt %s/bad", dir);
        expect_user_error(rc, out, cases[i].tensor, "non-finite", NULL, cases[i].tensor);
    }
}

TEST(test_crash_token_count_beyond_2_53) {
    char dir[256], out[OUT_LEN], path[600];
    cli_scratch("crash_tokens", dir, sizeof dir);
    const char *over[] = {"train.steps=1000000000", "train.batch=65536", "train.accum=65536", NULL};
    snprintf(path, sizeof path, "%s/cfg.json", dir);
    write_config(path, dir, over);
    int rc = sh(out, "./train --config %s --out %s/run", path, dir);
    snprintf(path, sizeof path, "%s/run", dir);
    expect_user_error(rc, out, "above the 2^53", NULL, path, "a token count beyond 2^53");
}

/* Output that goes to a full disk is an error, not a truncated file with status 0. */
TEST(test_crash_stdout_to_a_full_disk) {
    const char *cmds[] = {"./train --help-config", "./train --list-positions", "./train --help",
                          "./eval --help"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char out[OUT_LEN];
        int rc = sh(out, "(%s >/dev/full)", cmds[i]);
        CHECK(rc == 1 && strstr(out, "error: cannot write to standard output") &&
                  count_lines(out) == 1,
              "%s > /dev/full (%d): %s", cmds[i], rc, out);
    }
}

/* batch x seq_len x accum = 2^31 tokens per step: the start-up summary counts them in 64 bits
 * (an int wrapped to a negative count). The run is killed once the summary is out. */
TEST(test_crash_summary_counts_2_31_tokens_per_step) {
    char dir[256], args[1600], path[700];
    cli_scratch("crash_summary", dir, sizeof dir);
    const char *over[] = {"train.batch=2048", "train.accum=65536", "train.steps=1", NULL};
    snprintf(path, sizeof path, "%s/cfg.json", dir);
    write_config(path, dir, over);
    snprintf(args, sizeof args, "--config %s --out %s/run", path, dir);
    snprintf(path, sizeof path, "%s/train.out", dir);
    pid_t pid = spawn_train(args, path);
    char *said = NULL;
    for (double t0 = now_seconds(); now_seconds() - t0 < 60; usleep(10000)) {
        free(said);
        said = read_file(path, NULL);
        if (said && strstr(said, "tokens/step")) break;
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    CHECK(said && strstr(said, "2048 x 16 tokens x 65536 accum = 2147483648 tokens/step"),
          "the summary: %s", said ? said : "(nothing)");
    free(said);
}

/* Killed after its last checkpoint but before its "done" row: a --resume writes that row, once. */
TEST(test_crash_finished_run_gets_its_done_row) {
    char dir[256], out[OUT_LEN], log[700];
    if (!trained_scratch("crash_done_row", dir, sizeof dir, out, NULL)) return;
    snprintf(log, sizeof log, "%s/run/log.jsonl", dir);
    int rc = sh(out, "sed -i '/\"done\"/d' %s", log);
    CHECK(rc == 0, "removing the done row: %s", out);
    for (int again = 0; again < 2; again++) {
        rc = sh(out, "./train --resume %s/run && grep -c '\"done\":true' %s", dir, log);
        CHECK(rc == 0 && strstr(out, "\n1\n"), "resume %d of a finished run: %s", again, out);
    }
}
