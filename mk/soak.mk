# Soak and fault tests (tests/soak/, docs/SOAK.md).
#   make soak        SOAK_SECONDS (600), SOAK_MODE (release|asan), SOAK_SEED, SOAK_RATE
#   make soak-ci     the 60 s run CI does, against the ASan build
#   make load-held   10,000 held connections and a burst of 5,000 per second
#                    (SOAK_MODE picks payguard's build; LOADHELD_HOLD, _BURST, _RATE, _MAX)
SOAK_SECONDS ?= 600
SOAK_MODE    ?= release

.PHONY: soak soak-ci load-held soak-tools

# The load-held client (a test tool, built like bench/).
$(BUILD)/soak/connstorm: $(BUILD)/tests/soak/connstorm.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# The clients and the mock rail always come from the release build.
soak-tools:
	@$(MAKE) --no-print-directory MODE=release build build/release/soak/connstorm

soak: deps soak-tools
	@$(MAKE) --no-print-directory MODE=$(SOAK_MODE) build
	SOAK_SECONDS=$(SOAK_SECONDS) SOAK_MODE=$(SOAK_MODE) nice node tests/soak/soak.mjs

soak-ci: deps soak-tools
	@$(MAKE) --no-print-directory MODE=asan build
	SOAK_SECONDS=60 SOAK_MODE=asan nice node tests/soak/soak.mjs

load-held: deps soak-tools
	@$(MAKE) --no-print-directory MODE=$(SOAK_MODE) build
	LOADHELD_MODE=$(SOAK_MODE) nice node tests/soak/loadheld.mjs
