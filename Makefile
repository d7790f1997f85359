# memtrace: one Makefile, every output under build/. `make V=1` shows the commands.
# Local overrides go in an untracked config.mak (CC, PREFIX, DEVELOPER=1, SANITIZE=...).
-include config.mak

CC         ?= cc
CXX        ?= c++
PKG_CONFIG ?= pkg-config
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCDIR     ?= $(PREFIX)/include
B          := build

WARN := -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wpointer-arith -Wvla -Wundef
ifeq ($(DEVELOPER),1)
WARN += -Werror
endif
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -Iinclude -Icommon -MMD -MP

UNWIND_CFLAGS    := $(shell $(PKG_CONFIG) --cflags libunwind 2>/dev/null)
UNWIND_LIBS      := $(shell $(PKG_CONFIG) --libs libunwind 2>/dev/null)
CRITERION_CFLAGS := $(shell $(PKG_CONFIG) --cflags criterion 2>/dev/null)
CRITERION_LIBS   := $(shell $(PKG_CONFIG) --libs criterion 2>/dev/null)
DW_CFLAGS        := $(shell $(PKG_CONFIG) --cflags libdw 2>/dev/null)
DW_LIBS          := $(shell $(PKG_CONFIG) --libs libdw 2>/dev/null)
ZSTD_CFLAGS      := $(shell $(PKG_CONFIG) --cflags libzstd 2>/dev/null)
ZSTD_LIBS        := $(shell $(PKG_CONFIG) --libs libzstd 2>/dev/null || echo -lzstd)

# The shim runs inside other programs' malloc: hidden symbols, static TLS (first access never
# allocates), and no builtin malloc folding (GCC may turn malloc+memset into calloc, which inside
# our calloc hook would recurse forever).
SHIM_CFLAGS := $(BASE_CFLAGS) -fPIC -fvisibility=hidden -ftls-model=initial-exec \
               -fno-builtin-malloc -fno-builtin-calloc -fno-builtin-realloc -fno-builtin-free \
               $(UNWIND_CFLAGS) $(ZSTD_CFLAGS)
SHIM_LDFLAGS := -shared -Wl,--version-script=preload/libmemtrace.map -Wl,-z,defs \
                -Wl,-z,nodelete
SHIM_LIBS    := $(UNWIND_LIBS) $(ZSTD_LIBS) -ldl -pthread

SAN_FLAGS :=
ifneq ($(SANITIZE),)
SAN_FLAGS := -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
endif
REPORT_CFLAGS := $(BASE_CFLAGS) $(DW_CFLAGS) $(ZSTD_CFLAGS) $(SAN_FLAGS)
REPORT_LIBS   := $(DW_LIBS) $(ZSTD_LIBS) $(SAN_FLAGS)

# User flags are appended, never replaced.
SHIM_CFLAGS   += $(CFLAGS)
REPORT_CFLAGS += $(CFLAGS)

ifneq ($(V),1)
Q := @
quiet = @printf '  %-7s %s\n' $(1) $(2);
endif

COMMON_SRC  := $(wildcard common/*.c)
PRELOAD_SRC := $(wildcard preload/*.c)
# hooks*.c and init.c export or run the interposers: never linked into a test runner.
PRELOAD_CORE_SRC := $(filter-out preload/hooks%.c preload/init.c,$(PRELOAD_SRC))
REPORT_SRC  := $(wildcard report/*.c)
REPORT_LIB_SRC := $(filter-out report/main.c,$(REPORT_SRC))

SHIM_OBJ        := $(PRELOAD_SRC:%.c=$(B)/shim/%.o) $(COMMON_SRC:%.c=$(B)/shim/%.o)
SHIM_CORE_OBJ   := $(PRELOAD_CORE_SRC:%.c=$(B)/shim/%.o) $(COMMON_SRC:%.c=$(B)/shim/%.o)
REPORT_OBJ      := $(REPORT_SRC:%.c=$(B)/obj/%.o) $(COMMON_SRC:%.c=$(B)/obj/%.o)
REPORT_LIB_OBJ  := $(REPORT_LIB_SRC:%.c=$(B)/obj/%.o) $(COMMON_SRC:%.c=$(B)/obj/%.o)

UNIT_SRC  := $(wildcard tests/unit/*.c)
INTEG_SRC := $(wildcard tests/integration/*.c)
HELPER_SRC := $(wildcard tests/helpers.c)
PROG_C    := $(wildcard tests/progs/*.c)
PROG_CXX  := $(wildcard tests/progs/*.cc)
PROG_LIB  := $(wildcard tests/progs/lib*.c)
PROGS     := $(patsubst tests/progs/%.c,$(B)/progs/%,$(filter-out $(PROG_LIB),$(PROG_C))) \
             $(patsubst tests/progs/%.cc,$(B)/progs/%,$(PROG_CXX)) \
             $(patsubst tests/progs/%.c,$(B)/progs/%.so,$(PROG_LIB))
EXAMPLES  := $(patsubst examples/%.c,$(B)/examples/%,$(wildcard examples/*.c))

.DELETE_ON_ERROR:
.PHONY: all test unit integration selfcheck bench install uninstall clean format check-format fuzz demo

all: $(B)/libmemtrace.so $(B)/memtrace-report $(B)/memtrace $(EXAMPLES)

$(B)/shim/%.o: %.c
	@mkdir -p $(@D)
	$(call quiet,CC,$@)$(CC) $(SHIM_CFLAGS) -c $< -o $@

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(call quiet,CC,$@)$(CC) $(REPORT_CFLAGS) -c $< -o $@

# The allocation hooks keep a frame pointer: they read their caller's frame from it, so stack
# capture starts at the program's frame (preload/unwind.h MT_UNWIND_ORIGIN).
$(B)/shim/preload/hooks_malloc.o: SHIM_CFLAGS += -fno-omit-frame-pointer

$(B)/libmemtrace.so: $(SHIM_OBJ) preload/libmemtrace.map
	$(call quiet,LD,$@)$(CC) $(SHIM_LDFLAGS) -o $@ $(SHIM_OBJ) $(SHIM_LIBS) $(LDFLAGS)

$(B)/memtrace-report: $(REPORT_OBJ)
	$(call quiet,LD,$@)$(CC) -o $@ $(REPORT_OBJ) $(REPORT_LIBS) $(LDFLAGS)

$(B)/memtrace: scripts/memtrace.in
	@mkdir -p $(@D)
	$(call quiet,GEN,$@)sed -e 's|@LIBDIR@|$(abspath $(B))|g' -e 's|@BINDIR@|$(abspath $(B))|g' \
		$< > $@ && chmod +x $@

# ---- tests ---------------------------------------------------------------------------------
TEST_CFLAGS := $(REPORT_CFLAGS) $(CRITERION_CFLAGS) -Ipreload -Ireport -Itests \
               -Wno-missing-prototypes # Criterion's Test() macro defines non-static functions

$(B)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(call quiet,CC,$@)$(CC) $(TEST_CFLAGS) -c $< -o $@

# Unit tests link preload objects (built with shim flags, hooks excluded) and report objects.
# (common/ comes once, with the shim objects)
$(B)/tests/unit-tests: $(UNIT_SRC:tests/%.c=$(B)/tests/%.o) \
                       $(HELPER_SRC:tests/%.c=$(B)/tests/%.o) $(SHIM_CORE_OBJ) \
                       $(REPORT_LIB_SRC:%.c=$(B)/obj/%.o)
	$(call quiet,LD,$@)$(CC) -o $@ $^ $(CRITERION_LIBS) $(UNWIND_LIBS) $(REPORT_LIBS) -ldl -pthread

$(B)/tests/integration-tests: $(INTEG_SRC:tests/%.c=$(B)/tests/%.o) \
                              $(HELPER_SRC:tests/%.c=$(B)/tests/%.o) $(REPORT_LIB_OBJ)
	$(call quiet,LD,$@)$(CC) -o $@ $^ $(CRITERION_LIBS) $(REPORT_LIBS) -pthread

# Test programs: plain, deterministic, frame pointers kept so stacks are easy to check.
PROG_CFLAGS := -O1 -g -fno-omit-frame-pointer -fno-inline -Wall -D_GNU_SOURCE -Iinclude -pthread
$(B)/progs/lib%.so: tests/progs/lib%.c
	@mkdir -p $(@D)
	$(call quiet,CC,$@)$(CC) $(PROG_CFLAGS) -fPIC -shared -o $@ $<
$(B)/progs/%: tests/progs/%.c
	@mkdir -p $(@D)
	$(call quiet,CC,$@)$(CC) $(PROG_CFLAGS) -o $@ $< -ldl
$(B)/progs/%: tests/progs/%.cc
	@mkdir -p $(@D)
	$(call quiet,CXX,$@)$(CXX) $(filter-out -std=c11,$(PROG_CFLAGS)) -o $@ $<

$(B)/examples/%: examples/%.c include/memtrace.h
	@mkdir -p $(@D)
	$(call quiet,CC,$@)$(CC) -O2 -g -Wall -Wextra -D_GNU_SOURCE -Iinclude -o $@ $< -ldl

test: all $(B)/tests/unit-tests $(B)/tests/integration-tests $(PROGS)
	$(Q)MT_BUILD_DIR=$(abspath $(B)) $(B)/tests/unit-tests $(TEST_ARGS)
	$(Q)MT_BUILD_DIR=$(abspath $(B)) $(B)/tests/integration-tests $(TEST_ARGS)
	$(Q)$(MAKE) --no-print-directory selfcheck

unit: all $(B)/tests/unit-tests
	$(Q)MT_BUILD_DIR=$(abspath $(B)) $(B)/tests/unit-tests $(TEST_ARGS)

integration: all $(B)/tests/integration-tests $(PROGS)
	$(Q)MT_BUILD_DIR=$(abspath $(B)) $(B)/tests/integration-tests $(TEST_ARGS)

# The project checks itself for leaks: its clean test programs, memtrace-report reading a real
# trace and the gate checking real traces all run under `memtrace check`; a leak fails the build
# and shows the summary. Skipped with SANITIZE: a sanitized memtrace-report cannot run under the
# shim (the sanitizer's malloc must come first).
SELFCHECK := "progs/check_clean 4" "progs/clean_threads 4" "progs/clean_throw" \
             "memtrace-report T/known.mtrace" "memtrace-report --json T/known.mtrace" \
             "memtrace-report --timeline T/known.mtrace" "memtrace-report check T/clean"
selfcheck: all $(PROGS)
ifeq ($(SANITIZE),)
	$(Q)set -e; b=$(abspath $(B)); t=$$(mktemp -d); trap 'rm -rf "$$t"' EXIT; \
	$$b/memtrace -o $$t/known.mtrace -- $$b/progs/report_known >/dev/null 2>&1; \
	$$b/memtrace check --dir $$t/clean -- $$b/progs/check_clean 2 >/dev/null 2>&1; \
	for c in $(SELFCHECK); do \
		c=$$(echo "$$c" | sed "s|T/|$$t/|g"); \
		if $$b/memtrace check --rm -- $$b/$$c >$$t/log 2>&1; then echo "  CHECK   $$c"; \
		else cat $$t/log; echo "selfcheck: memtrace check failed on $$c"; exit 1; fi; \
	done
endif

# ---- benchmarks (never part of test) -------------------------------------------------------
$(B)/bench/bench_hooks: tests/bench/bench_hooks.c
	@mkdir -p $(@D)
	$(call quiet,CC,$@)$(CC) -O2 -g -fno-omit-frame-pointer -D_GNU_SOURCE -pthread -o $@ $<

bench: all $(B)/bench/bench_hooks
	$(Q)scripts/bench.sh $(abspath $(B))

demo: all
	$(Q)scripts/demo.sh $(abspath $(B))

# ---- fuzzing ---------------------------------------------------------------------------------
FUZZ_TIME ?= 60
$(B)/fuzz/fuzz_reader: tests/fuzz/fuzz_reader.c $(REPORT_LIB_SRC) $(COMMON_SRC)
	@mkdir -p $(@D)
	$(call quiet,CLANG,$@)clang -std=c11 -D_GNU_SOURCE -g -O1 -Iinclude -Icommon -Ireport $(DW_CFLAGS) \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -o $@ $^ $(DW_LIBS) $(ZSTD_LIBS)
fuzz: $(B)/fuzz/fuzz_reader
	$(Q)mkdir -p $(B)/fuzz/corpus && $< -max_total_time=$(FUZZ_TIME) $(B)/fuzz/corpus tests/fuzz/corpus

# ---- install ---------------------------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/memtrace $(DESTDIR)$(INCDIR) \
		$(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 0755 $(B)/memtrace-report $(DESTDIR)$(BINDIR)/memtrace-report
	install -m 0644 $(B)/libmemtrace.so $(DESTDIR)$(LIBDIR)/memtrace/libmemtrace.so
	sed -e 's|@LIBDIR@|$(LIBDIR)/memtrace|g' -e 's|@BINDIR@|$(BINDIR)|g' scripts/memtrace.in \
		> $(DESTDIR)$(BINDIR)/memtrace && chmod 0755 $(DESTDIR)$(BINDIR)/memtrace
	install -m 0644 include/memtrace.h $(DESTDIR)$(INCDIR)/memtrace.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCDIR@|$(INCDIR)|g' \
		scripts/memtrace.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/memtrace.pc

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/memtrace $(DESTDIR)$(BINDIR)/memtrace-report \
		$(DESTDIR)$(LIBDIR)/memtrace/libmemtrace.so $(DESTDIR)$(INCDIR)/memtrace.h \
		$(DESTDIR)$(LIBDIR)/pkgconfig/memtrace.pc
	-rmdir $(DESTDIR)$(LIBDIR)/memtrace

FORMAT_FILES := $(shell find preload report common include tests examples -name '*.[ch]' -o -name '*.cc' 2>/dev/null)
format:
	clang-format -i $(FORMAT_FILES)
check-format:
	clang-format --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
