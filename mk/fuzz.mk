# libFuzzer targets for every parser that sees outside bytes (docs/FUZZING.md).
# Built with clang under build/fuzz/, apart from the release and sanitizer
# trees, and never part of `make build` or `make test`:
#   make fuzz                 every target FUZZ_SECONDS (60) each, then a table
#   make fuzz-smoke           every target ~15 s on its corpus (CI)
#   make fuzz-build           the binaries only
#   make fuzz FUZZ_TARGETS=url FUZZ_SECONDS=600

FUZZ_CC       ?= clang
FUZZ_BUILD    := build/fuzz
FUZZ_SECONDS  ?= 60
FUZZ_SMOKE_SECONDS ?= 15
FUZZ_ALL      := $(sort $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_TARGETS  ?= $(FUZZ_ALL)

# The library is instrumented for coverage (fuzzer-no-link) and checked by
# ASan+UBSan; only the targets link libFuzzer's main.
FUZZ_SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS   := $(BASE_CFLAGS) -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) \
                 -fsanitize=fuzzer-no-link $(WARN) $(EXTRA_CFLAGS)
FUZZ_LDFLAGS  := $(BASE_LDFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer $(EXTRA_LDFLAGS)

FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_BUILD)/%.o) $(FUZZ_BUILD)/llhttp/llhttp.o \
                 $(FUZZ_BUILD)/llhttp/api.o $(FUZZ_BUILD)/llhttp/http.o
FUZZ_LIB      := $(FUZZ_BUILD)/libpayguard.a
FUZZ_HELPER   := $(FUZZ_BUILD)/tests/fuzz/helpers.o
FUZZ_BINS     := $(FUZZ_ALL:%=$(FUZZ_BUILD)/fuzz_%)

.PHONY: fuzz fuzz-smoke fuzz-build

fuzz-build: check-deps
	@command -v $(FUZZ_CC) >/dev/null || { echo "fuzz: $(FUZZ_CC) not found (apt-get install clang libclang-rt-14-dev)"; exit 1; }
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

fuzz: fuzz-build
	@tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	@tests/fuzz/run.sh --smoke $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(BASE_CFLAGS) -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link -w -c $< -o $@

$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_HELPER) $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_LDFLAGS) -o $@ $^ $(LIBS)

# The targets' objects are intermediate to make; keep them between runs.
.SECONDARY: $(FUZZ_HELPER) $(FUZZ_ALL:%=$(FUZZ_BUILD)/tests/fuzz/fuzz_%.o)
