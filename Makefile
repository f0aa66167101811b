# trainshort — `make` builds ./train and ./eval; `make test` runs the test suite.
CC      ?= gcc
# Debian ships OpenBLAS in pthread and OpenMP builds; we link the OpenMP one explicitly so that
# BLAS calls made inside our own OpenMP loops run single-threaded instead of oversubscribing.
BLAS_LIB ?= /usr/lib/x86_64-linux-gnu/openblas-openmp
BLAS_INC ?= /usr/include/x86_64-linux-gnu/openblas-openmp
OPT     ?= -O3 -march=native
# -fno-trapping-math changes no result (nothing here reads floating-point exception flags); it
# lets gcc turn the selects of exp_fast/erf_fast (ops/fastmath.h) into vector blends. Without it
# gcc 12 vectorizes those loops only with AVX-512's masks: on an AVX2 host every exponential of
# the softmaxes and GELU ran scalar.
CFLAGS  ?= $(OPT) -fno-trapping-math -fopenmp -std=c11 -Wall -Wextra -D_GNU_SOURCE -I$(BLAS_INC) -MMD -MP $(EXTRA_CFLAGS)
LDFLAGS ?= -fopenmp -L$(BLAS_LIB) -Wl,-rpath,$(BLAS_LIB) $(EXTRA_LDFLAGS)
# oneDNN (libdnnl-dev): the oneDNN float32 and bf16 matrix products (src/ops/gemm.c)
LDLIBS  := -lopenblas -ldnnl -lcjson -lm
BUILD   ?= build
BIN     ?= .

LIB_SRC  := $(shell find src -name '*.c' ! -path src/train.c ! -path src/eval.c ! -path src/generate.c | sort)
TEST_SRC := $(sort $(wildcard tests/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)

.PHONY: all test test-asan test-asan-build fuzz quickstart deps format docs bench clean
all: $(BIN)/train $(BIN)/eval $(BIN)/generate

# The git revision compiled into ./eval's --json rows and ./train's log. build/rev.txt is rewritten
# only when the revision changes, and eval.o and train.o depend on it, so a new revision rebuilds
# those two and nothing else.
REV := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
REV_FILE := $(BUILD)/rev.txt
$(shell mkdir -p $(BUILD) && [ "$$(cat $(REV_FILE) 2>/dev/null)" = "$(REV)" ] || echo "$(REV)" > $(REV_FILE))
$(BUILD)/src/eval.o $(BUILD)/src/train.o: $(REV_FILE)
$(BUILD)/src/eval.o $(BUILD)/src/train.o: EXTRA_CFLAGS += -DTRAINSHORT_REV='"$(REV)"'

$(BIN)/train: $(BUILD)/src/train.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BIN)/eval: $(BUILD)/src/eval.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BIN)/generate: $(BUILD)/src/generate.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BIN)/run_tests: $(TEST_OBJ) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
tests/run_tests: $(TEST_OBJ) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

deps:
	@scripts/install_deps.sh

test: deps
	@$(MAKE) --no-print-directory all tests/run_tests
	@tests/run_tests

# The same suite under AddressSanitizer and UndefinedBehaviorSanitizer, built entirely inside
# build-asan/ (binaries included) so the optimized ./train and ./eval are left alone;
# TRAINSHORT_BIN tells the CLI tests where the binaries are.
ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
test-asan: deps test-asan-build
	@TRAINSHORT_BIN=build-asan ASAN_OPTIONS=detect_leaks=1 build-asan/run_tests
test-asan-build:
	@$(MAKE) --no-print-directory BUILD=build-asan BIN=build-asan OPT="$(ASAN_FLAGS)" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" build-asan/train build-asan/eval build-asan/generate build-asan/run_tests

# libFuzzer targets (clang) for the safetensors loader and the config parser, built into
# build-fuzz/ with ASan and UBSan; each runs FUZZ_SECONDS on a corpus seeded from the repo's
# checkpoints and configs (grown in build-fuzz/corpus across runs). Not part of make test.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -std=c11 -Wall -Wextra -Wno-unknown-pragmas -D_GNU_SOURCE
FUZZ_LIB     := src/io/safetensors.c src/io/json_check.c src/util/util.c
FUZZ_HDR     := $(wildcard src/io/*.h src/util/*.h src/position/*.h) tests/fuzz_common.h
FUZZ_CORPUS  := build-fuzz/corpus
FUZZ_RUN     := -max_total_time=$(FUZZ_SECONDS) -dict=fuzz/json.dict -artifact_prefix=build-fuzz/

build-fuzz/fuzz_safetensors: fuzz/fuzz_safetensors.c $(FUZZ_LIB) $(FUZZ_HDR)
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_LIB) -lcjson -lm
FUZZ_CONFIG  := src/config/config.c src/params.c $(wildcard src/position/*.c)
build-fuzz/fuzz_config: fuzz/fuzz_config.c $(FUZZ_CONFIG) $(FUZZ_LIB) $(FUZZ_HDR)
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_CONFIG) $(FUZZ_LIB) -lcjson -lm
build-fuzz/make_seeds: fuzz/make_seeds.c $(FUZZ_LIB) $(FUZZ_HDR)
	@mkdir -p build-fuzz
	$(FUZZ_CC) -O1 -std=c11 -D_GNU_SOURCE -o $@ $< $(FUZZ_LIB) -lcjson -lm

fuzz: build-fuzz/fuzz_safetensors build-fuzz/fuzz_config build-fuzz/make_seeds
	@mkdir -p $(FUZZ_CORPUS)/safetensors $(FUZZ_CORPUS)/config
	@cp tests/ref/fixtures/*.safetensors $(FUZZ_CORPUS)/safetensors/
	@build-fuzz/make_seeds $(FUZZ_CORPUS)/safetensors/written.safetensors
	@for f in $$(find configs results tests/fixtures -name '*.json'); do \
	  cp $$f $(FUZZ_CORPUS)/config/$$(echo $$f | tr / _); done
	@for s in train.lr=3e-4 model.position.type=alibi 'model.output.cutoffs=[100,200]' \
	  'model.output={"type":"adaptive","cutoffs":[10]}' data.dir=x; do \
	  printf '%s' "$$s" > $(FUZZ_CORPUS)/config/set-$$(printf '%s' "$$s" | cksum | cut -d' ' -f1); done
	build-fuzz/fuzz_safetensors $(FUZZ_RUN) $(FUZZ_CORPUS)/safetensors
	build-fuzz/fuzz_config $(FUZZ_RUN) $(FUZZ_CORPUS)/config

quickstart: deps
	@$(MAKE) --no-print-directory all
	@scripts/quickstart.sh

docs: train
	./train --help-config > docs/config.md

format:
	clang-format -i $$(find src tests -name '*.[ch]')

bench: all
	scripts/bench_train.sh

clean:
	rm -rf build build-asan build-fuzz train eval generate tests/run_tests tests/tmp

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BUILD)/src/train.d $(BUILD)/src/eval.d
