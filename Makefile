# kurier: plain GNU Makefile + pkg-config (STYLE.md). Targets: all run check fuzz
# bench install. SANITIZE=address,undefined builds into build-asan/.

CC      ?= cc
PKGS    := libevent libevent_pthreads libevent_openssl openssl sqlite3 libcrypt libunbound libidn2
SANITIZE ?=
BUILD   ?= $(if $(SANITIZE),build-asan,build)
PREFIX  ?= /usr/local
DATADIR ?= $(PREFIX)/share/kurier

# pkg-config runs when a recipe first needs its answer, not when this file is read:
# on a fresh machine "make run" reads this file before "deps" has installed the
# libraries (each variable is computed once, then kept). pkg-check stops the build
# with pkg-config's own message when the libraries are still missing.
PKG_CFLAGS = $(eval PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm)$(PKG_LIBS)
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wformat=2 -Wvla
OPT     ?= -O2 -g
CFLAGS   = $(OPT) -std=c17 -D_GNU_SOURCE $(WARN) -Isrc $(PKG_CFLAGS) $(EXTRA_CFLAGS)
ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif

MODULES := core smtp dns policy queue route deliver store auth control glue egress abuse
LIB_SRC := $(foreach m,$(MODULES),$(wildcard src/$(m)/*.c))
LIB_OBJ := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
CLI_SRC := $(wildcard src/cli/*.c)
CLI_OBJ := $(CLI_SRC:src/%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZ_REPLAY := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)

.PHONY: all run check check-unit check-integration check-fuzz-replay fuzz bench \
        bench-smoke install deps pkg-check format clean

all: $(BUILD)/kurierd $(BUILD)/kurier $(BUILD)/sendmail $(BUILD)/mailq $(BUILD)/newaliases

deps:
	@scripts/install-deps

pkg-check:
	@pkg-config --exists --print-errors $(PKGS) || { echo "make: pkg-config does not" \
	  "find the libraries kurier needs: run \"make deps\" (scripts/install-deps)" >&2; exit 1; }

$(BUILD)/obj/%.o: src/%.c | pkg-check
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# where "make install" puts the reply classifier's rules (data/replies.rules)
$(BUILD)/obj/egress/replies.o: CFLAGS += -DKURIER_DATADIR='"$(DATADIR)"'

$(BUILD)/libkurier.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/kurierd: $(BUILD)/obj/kurierd.o $(BUILD)/libkurier.a | pkg-check
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/kurier: $(CLI_OBJ) $(BUILD)/libkurier.a | pkg-check
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

# sendmail(1), mailq(1) and newaliases(1) are the same binary, chosen by argv[0].
$(BUILD)/sendmail $(BUILD)/mailq $(BUILD)/newaliases: $(BUILD)/kurier
	ln -sf kurier $@

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libkurier.a | pkg-check
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(PKG_LIBS)

# Fuzz targets built without libFuzzer: a small main replays the corpus.
$(BUILD)/fuzz/%: fuzz/%.c fuzz/replay.c $(BUILD)/libkurier.a | pkg-check
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(PKG_LIBS)

# A new make builds, one that reads pkg-config after deps has installed the libraries.
run: deps
	$(MAKE) all
	scripts/run-demo $(BUILD)

# make check: normal -Werror build, then the ASan+UBSan build runs every suite.
check: deps
	$(MAKE) all bench-smoke
	$(MAKE) SANITIZE=address,undefined check-unit check-fuzz-replay check-integration

check-unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

check-fuzz-replay: $(FUZZ_REPLAY)
	@set -e; for f in $(FUZZ_REPLAY); do n=$$(basename $$f); n=$${n#fuzz_}; \
	  echo "== $$f fuzz/corpus/$$n"; $$f fuzz/corpus/$$n; done

check-integration: all
	KURIER_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration

# libFuzzer builds (clang); FUZZ_TIME seconds per target.
FUZZ_TIME ?= 60
fuzz: deps
	$(MAKE) CC=clang BUILD=build-fuzz SANITIZE=address,undefined OPT="-O1 -g" \
	  EXTRA_CFLAGS=-fsanitize=fuzzer-no-link build-fuzz/libkurier.a
	@set -e; mkdir -p build-fuzz/fuzz; for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  clang -std=c17 -D_GNU_SOURCE -Isrc -g -O1 -fsanitize=fuzzer,address,undefined \
	    -o build-fuzz/fuzz/$$n $$f build-fuzz/libkurier.a $(PKG_LIBS); \
	  c=fuzz/corpus/$${n#fuzz_}; mkdir -p build-fuzz/corpus/$$n; \
	  echo "== $$n ($(FUZZ_TIME)s)"; \
	  build-fuzz/fuzz/$$n -max_total_time=$(FUZZ_TIME) build-fuzz/corpus/$$n $$c; done

# kurier against Postfix on this machine (issue 5); rewrites bench/RESULTS.md.
bench: deps
	$(MAKE) all
	/usr/bin/python3 bench/bench.py --build $(abspath $(BUILD)) --out bench/RESULTS.md

# The same harness, small: keeps it from rotting (run by check; no timing asserted).
bench-smoke: all
	/usr/bin/python3 bench/bench.py --smoke --build $(abspath $(BUILD)) --out $(BUILD)/bench-smoke.md

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/kurierd $(DESTDIR)$(PREFIX)/sbin/kurierd
	install -m 0755 $(BUILD)/kurier $(DESTDIR)$(PREFIX)/bin/kurier
	ln -sf kurier $(DESTDIR)$(PREFIX)/bin/mailq
	ln -sf ../bin/kurier $(DESTDIR)$(PREFIX)/sbin/sendmail
	ln -sf kurier $(DESTDIR)$(PREFIX)/bin/newaliases
	install -d $(DESTDIR)$(DATADIR)
	install -m 0644 data/replies.rules $(DESTDIR)$(DATADIR)/replies.rules

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

.PHONY: docs/config.md
docs/config.md: $(BUILD)/kurier
	$(BUILD)/kurier config doc > $@

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
