# Checks past the suite (docs/CHECKS.md). `make checks` is what CI runs,
# split in tools/checks/10-static.sh and tools/checks/30-tsan.sh.
#   make static     lint, the clang -Werror build, clang-tidy
#   make clang      release build with clang and -Werror, in build/clang/
#   make tidy       clang-tidy (.clang-tidy) over payguard's sources and mockrail
#   make tsan       unit + integration tests in the TSan build
#   make valgrind   unit + integration tests of the release build under memcheck
# IT_FILES="x.test.mjs ..." narrows the integration files of tsan and valgrind.

CHECK_JOBS  ?= $(shell nproc 2>/dev/null || echo 2)
CLANG_BUILD := build/clang
TIDY_SRCS   := $(LIB_SRCS) proxy/main.c tools/mockrail.c
TIDY_FLAGS  := -std=c11 -D_GNU_SOURCE -I. -I$(LLHTTP_INC) -pthread
# clang-tidy's own chatter, not findings.
TIDY_NOISE  := ^[0-9]+ (warning|error)s?( and [0-9]+ (warning|error)s?)? generated\.$$|^$$

# $(call need,COMMAND,PACKAGE): installs PACKAGE as root when COMMAND is
# missing, else says how.
need = command -v $(1) >/dev/null || { [ "$$(id -u)" = 0 ] && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; } || \
    { echo "$(1) is missing: apt-get install $(2)"; exit 2; }

.PHONY: checks static clang tidy tsan valgrind

checks: static tsan

static: lint clang tidy

# Its own build dir: clang objects never mix with gcc's build/release.
clang: check-deps
	@$(call need,clang,clang)
	@echo "== clang -Werror build ($(CLANG_BUILD))"
	@mkdir -p build
	@$(MAKE) --no-print-directory -j$(CHECK_JOBS) CC=clang BUILD=$(CLANG_BUILD) MODE=release \
	    WERROR=1 build >$(CLANG_BUILD).log 2>&1 || { grep -E 'error|warning' $(CLANG_BUILD).log \
	    | grep -v '^clang ' | head -60; echo "clang build failed (log: $(CLANG_BUILD).log)"; exit 1; }
	@echo "clang: clean"

# One file per clang-tidy run: one run over several files carries the
# analyzer's state across them and reports things that are not there.
tidy:
	@$(call need,clang-tidy,clang-tidy)
	@echo "== clang-tidy ($(words $(TIDY_SRCS)) files)"
	@printf '%s\n' $(TIDY_SRCS) | xargs -P$(CHECK_JOBS) -I{} bash -c \
	    'out=$$(clang-tidy --quiet "$$0" -- $(TIDY_FLAGS) 2>&1); rc=$$?; \
	     printf "%s\n" "$$out" | grep -Ev "$(TIDY_NOISE)"; exit $$rc' {} \
	    || { echo "clang-tidy: findings above"; exit 1; }
	@echo "clang-tidy: clean"

tsan:
	@MODES=tsan tools/test.sh

valgrind:
	@$(call need,valgrind,valgrind)
	@MODES=valgrind tools/test.sh
