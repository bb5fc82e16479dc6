# payguard — plain GNU make. Objects live under build/<mode>/ so the release
# and sanitizer builds never mix. `make MODE=asan` builds the ASan+UBSan tree.

MODE    ?= release
BUILD   := build/$(MODE)
CC      ?= cc
LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
        -Wmissing-prototypes -Wformat=2 -Wvla -Wconversion
ifeq ($(WERROR),1)
WARN += -Werror
endif

BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -I. -I$(LLHTTP_INC) -MMD -MP \
               -fstack-protector-strong -fPIE -pthread
BASE_LDFLAGS := -pie -Wl,-z,relro -Wl,-z,now -pthread

ifeq ($(MODE),release)
MODE_CFLAGS := -O2 -g -D_FORTIFY_SOURCE=2
MODE_LDFLAGS :=
else ifeq ($(MODE),asan)
MODE_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=all
MODE_LDFLAGS := -fsanitize=address,undefined
else ifeq ($(MODE),tsan)
MODE_CFLAGS := -O1 -g -fsanitize=thread
MODE_LDFLAGS := -fsanitize=thread
else
$(error MODE must be release, asan or tsan)
endif

CFLAGS  := $(BASE_CFLAGS) $(MODE_CFLAGS) $(WARN) $(EXTRA_CFLAGS)
LDFLAGS := $(BASE_LDFLAGS) $(MODE_LDFLAGS) $(EXTRA_LDFLAGS)
LIBS    := -luv -lssl -lcrypto -llmdb -lyaml -ljansson -lcrypt

# Every module folder contributes its .c files to libpayguard.a; main.c is the CLI.
MODULES   := common crypto config auth policy ledger notify proxy
LIB_SRCS  := $(filter-out proxy/main.c,$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LLHTTP_OBJS := $(BUILD)/llhttp/llhttp.o $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o
LIB       := $(BUILD)/libpayguard.a

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)

.PHONY: all build deps run test unit check-deps bench bench-quick clean lint fmt
all: build
ifeq ($(MODE),release)
	@ln -sf $(BUILD)/payguard payguard
	@ln -sf ../$(BUILD)/mockrail tools/mockrail
endif

build: check-deps $(BUILD)/payguard $(BUILD)/mockrail $(UNIT_BINS) $(BENCH_BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# llhttp is compiled from Debian's node-llhttp sources, with its own warnings off.
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(MODE_CFLAGS) -w -c $< -o $@

$(LIB): $(LIB_OBJS) $(LLHTTP_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/payguard: $(BUILD)/proxy/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/mockrail: $(BUILD)/tools/mockrail.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# Installs the Debian packages payguard needs (as root), or says the command.
deps:
	@tools/deps.sh install

check-deps:
	@tools/deps.sh check

run: deps
	@$(MAKE) --no-print-directory all
	@tools/run.sh

# The whole suite, release build then ASan+UBSan build; ends with one summary line.
test: deps
	@tools/test.sh

unit: build
	@tools/test.sh --unit-only $(MODE)

bench: deps
	@$(MAKE) --no-print-directory MODE=release build
	@bench/run.sh --publish

bench-quick: deps
	@$(MAKE) --no-print-directory MODE=release build
	@bench/run.sh --quick

lint:
	@tools/lint.sh

fmt:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build payguard tools/mockrail

# Further targets (fuzzing, soak, static and dynamic checks) live in mk/.
include $(wildcard mk/*.mk)

-include $(shell find build -name '*.d' 2>/dev/null)
