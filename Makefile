# kurier: plain GNU Makefile + pkg-config (STYLE.md). Targets: all run check fuzz
# bench install. SANITIZE=address,undefined builds into build-asan/.

CC      ?= cc
PKGS    := libevent libevent_pthreads libevent_openssl openssl sqlite3 libcrypt libunbound \
           libsystemd libidn2 libpq hiredis
VERSION := 0.9.0
VERSION_DATE := 2026-12-06
SANITIZE ?=
BUILD   ?= $(if $(SANITIZE),build-asan,build)
PREFIX  ?= /usr/local
DATADIR ?= $(PREFIX)/share/kurier
BINDIR  ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR  ?= $(PREFIX)/share/man
# Debian's mail-transport-agent places (sendmail(1) for cron, mail, mutt, PHP)
MTA_SBINDIR ?= /usr/sbin
MTA_BINDIR  ?= /usr/bin
SYSCONFDIR  ?= /etc
UNITDIR     ?= /lib/systemd/system
BASHCOMPDIR ?= /usr/share/bash-completion/completions

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

.PHONY: all run check check-build check-unit check-integration check-fuzz-replay fuzz bench \
        bench-smoke install uninstall deps pkg-check format clean

GENERATED := $(BUILD)/man/kurier.1 $(BUILD)/man/kurier.conf.5 $(BUILD)/man/kurierd.8 \
             $(BUILD)/kurier.bash
all: $(BUILD)/kurierd $(BUILD)/kurier $(BUILD)/sendmail $(BUILD)/mailq $(BUILD)/newaliases \
     $(GENERATED)

deps:
	@scripts/install-deps

pkg-check:
	@pkg-config --exists --print-errors $(PKGS) || { echo "make: pkg-config does not" \
	  "find the libraries kurier needs: run \"make deps\" (scripts/install-deps)" >&2; exit 1; }

$(BUILD)/obj/%.o: src/%.c | pkg-check
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# the version in "kurier --version", "kurierd -V", the start log line and the man pages
$(BUILD)/obj/kurierd.o $(CLI_OBJ): CFLAGS += -DKURIER_VERSION='"$(VERSION)"' \
  -DKURIER_VERSION_DATE='"$(VERSION_DATE)"'
$(BUILD)/obj/kurierd.o $(CLI_OBJ): Makefile

# where "make install" puts the reply classifier's rules (data/replies.rules); a
# stamp named after DATADIR rebuilds it when "make install PREFIX=..." changes it
DATADIR_STAMP := $(BUILD)/stamp/datadir$(subst /,_,$(DATADIR))
$(DATADIR_STAMP):
	@mkdir -p $(dir $@) && rm -f $(BUILD)/stamp/datadir* && touch $@
$(BUILD)/obj/egress/replies.o: CFLAGS += -DKURIER_DATADIR='"$(DATADIR)"'
$(BUILD)/obj/egress/replies.o: $(DATADIR_STAMP)

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

# Man pages and completion are made from the tables they describe (command table,
# config key table), so they cannot drift from the code.
$(BUILD)/man/kurier.1: $(BUILD)/kurier
	@mkdir -p $(dir $@)
	$(BUILD)/kurier help --man > $@
$(BUILD)/man/kurier.conf.5: $(BUILD)/kurier
	@mkdir -p $(dir $@)
	$(BUILD)/kurier config man > $@
$(BUILD)/man/kurierd.8: man/kurierd.8 Makefile
	@mkdir -p $(dir $@)
	sed 's/@VERSION@/$(VERSION)/; s/@DATE@/$(VERSION_DATE)/' man/kurierd.8 > $@
$(BUILD)/kurier.bash: $(BUILD)/kurier
	$(BUILD)/kurier completion bash > $@

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

# make check: normal -Werror build, then the ASan+UBSan build runs every suite. The
# builds use every core (CHECK_JOBS; a -j given to make itself is kept); the suites
# run one after the other, each at its own pace.
CHECK_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CHECK_J = $(if $(filter -j% j%,$(MAKEFLAGS)),,-j$(CHECK_JOBS))
check: deps
	$(MAKE) $(CHECK_J) all $(BUILD)/spoolproto
	$(MAKE) bench-smoke
	$(MAKE) $(CHECK_J) SANITIZE=address,undefined check-build
	$(MAKE) SANITIZE=address,undefined check-unit check-fuzz-replay check-integration

# everything the suites of make check run, built (make -j builds it at once)
check-build: all $(UNIT_BIN) $(FUZZ_REPLAY)

check-unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

check-fuzz-replay: $(FUZZ_REPLAY)
	@set -e; for f in $(FUZZ_REPLAY); do n=$$(basename $$f); n=$${n#fuzz_}; \
	  echo "== $$f fuzz/corpus/$$n"; $$f fuzz/corpus/$$n; done

# The integration tests mostly wait (greylist delays, retry timers, queue lifetimes,
# daemons starting), so pytest-xdist runs them in TEST_JOBS processes at once; each
# test has its own daemon, folders and ports. TEST_JOBS=0 runs them in this process.
TEST_JOBS ?= 4
check-integration: all
	KURIER_BUILD=$(abspath $(BUILD)) /usr/bin/python3 -m pytest -q -p no:cacheprovider \
	  $(if $(filter-out 0,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadgroup) --durations=15 tests/integration

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
# bench/spoolproto.c (issue 16's spool design comparison, LMDB) is a bench tool only.
bench: deps
	$(MAKE) all $(BUILD)/spoolproto
	/usr/bin/python3 bench/bench.py --build $(abspath $(BUILD)) --out bench/RESULTS.md \
	  --spoolproto $(BUILD)/spoolproto

# The same harness, small: keeps it from rotting (run by check; no timing asserted).
bench-smoke: all $(BUILD)/spoolproto
	/usr/bin/python3 bench/bench.py --smoke --build $(abspath $(BUILD)) --out $(BUILD)/bench-smoke.md \
	  --spoolproto $(BUILD)/spoolproto

$(BUILD)/spoolproto: bench/spoolproto.c
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -std=c17 -D_GNU_SOURCE $(WARN) -o $@ $< -llmdb

# make install [PREFIX=/usr/local] [DESTDIR=staging]: binaries, the sendmail/mailq/
# newaliases links where Debian's MTAs put them, man pages, bash completion, the
# systemd unit, /etc/kurier/kurier.conf (only when there is none: never overwritten)
# and the state folders; the kurier system user when run as root without DESTDIR.
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MTA_SBINDIR) \
	  $(DESTDIR)$(MTA_BINDIR) $(DESTDIR)$(DATADIR) $(DESTDIR)$(MANDIR)/man1 \
	  $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
	  $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(SYSCONFDIR)/kurier
	install -m 0755 $(BUILD)/kurierd $(DESTDIR)$(SBINDIR)/kurierd
	install -m 0755 $(BUILD)/kurier $(DESTDIR)$(BINDIR)/kurier
	@for l in $(MTA_SBINDIR)/sendmail $(MTA_BINDIR)/mailq $(MTA_BINDIR)/newaliases; do \
	  f=$(DESTDIR)$$l; \
	  if [ -e "$$f" ] && [ "$$(readlink "$$f")" != "$(BINDIR)/kurier" ] && [ ! -e "$$f.pre-kurier" ]; \
	  then echo "make install: another MTA's $$l kept as $$l.pre-kurier"; mv "$$f" "$$f.pre-kurier"; fi; \
	  echo "ln -sf $(BINDIR)/kurier $$f"; ln -sf $(BINDIR)/kurier "$$f"; \
	done
	install -m 0644 data/replies.rules $(DESTDIR)$(DATADIR)/replies.rules
	install -m 0644 examples/kurier.conf.production $(DESTDIR)$(DATADIR)/kurier.conf.example
	install -m 0644 $(BUILD)/man/kurier.1 $(DESTDIR)$(MANDIR)/man1/kurier.1
	install -m 0644 $(BUILD)/man/kurier.conf.5 $(DESTDIR)$(MANDIR)/man5/kurier.conf.5
	install -m 0644 $(BUILD)/man/kurierd.8 $(DESTDIR)$(MANDIR)/man8/kurierd.8
	install -m 0644 $(BUILD)/kurier.bash $(DESTDIR)$(BASHCOMPDIR)/kurier
	sed 's|@SBINDIR@|$(SBINDIR)|g' data/systemd/kurier.service.in \
	  > $(DESTDIR)$(UNITDIR)/kurier.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/kurier.service
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/kurier/kurier.conf ]; then \
	  echo "make install: $(DESTDIR)$(SYSCONFDIR)/kurier/kurier.conf kept; the example is" \
	    "$(DATADIR)/kurier.conf.example"; \
	else \
	  install -m 0644 examples/kurier.conf.production $(DESTDIR)$(SYSCONFDIR)/kurier/kurier.conf; \
	fi
	install -d -m 0711 $(DESTDIR)/var/lib/kurier $(DESTDIR)/var/spool/kurier
	install -d -m 0755 $(DESTDIR)/var/mail/vhosts
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" -eq 0 ] && ! id -u kurier >/dev/null 2>&1; then \
	  echo "make install: creating the system user kurier"; \
	  useradd --system --home-dir /var/lib/kurier --no-create-home \
	    --shell /usr/sbin/nologin kurier; \
	fi
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; \
	  then systemctl daemon-reload; fi

# Removes what install put there, but not the configuration, the state folders
# (queue, database, mailboxes) or the user: mail is never deleted by make.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/kurierd $(DESTDIR)$(BINDIR)/kurier \
	  $(DESTDIR)$(DATADIR)/replies.rules $(DESTDIR)$(DATADIR)/kurier.conf.example \
	  $(DESTDIR)$(MANDIR)/man1/kurier.1 $(DESTDIR)$(MANDIR)/man5/kurier.conf.5 \
	  $(DESTDIR)$(MANDIR)/man8/kurierd.8 $(DESTDIR)$(BASHCOMPDIR)/kurier \
	  $(DESTDIR)$(UNITDIR)/kurier.service
	for l in $(MTA_SBINDIR)/sendmail $(MTA_BINDIR)/mailq $(MTA_BINDIR)/newaliases; do \
	  if [ "$$(readlink $(DESTDIR)$$l)" = "$(BINDIR)/kurier" ]; then rm -f $(DESTDIR)$$l; \
	    if [ -e $(DESTDIR)$$l.pre-kurier ]; then mv $(DESTDIR)$$l.pre-kurier $(DESTDIR)$$l; fi; fi; \
	done
	-rmdir $(DESTDIR)$(DATADIR) 2>/dev/null
	@echo "make uninstall: kept $(SYSCONFDIR)/kurier, /var/lib/kurier, /var/spool/kurier," \
	  "/var/mail/vhosts and the user kurier"

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

.PHONY: docs/config.md
docs/config.md: $(BUILD)/kurier
	$(BUILD)/kurier config doc > $@

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
