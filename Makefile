# moondog - build, test, install. See README.md.
VERSION := 0.1.0
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share/moondog
DOCDIR ?= $(PREFIX)/share/doc/moondog
MANDIR ?= $(PREFIX)/share/man
# systemd reads units and sysusers.d files under /usr/local/lib too.
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
SYSCONFDIR ?= /etc

CC ?= cc
PKGS := lua5.4 libmodbus libmosquitto libedit
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS ?= -O2 -g
CFLAGS += -std=c11 -D_GNU_SOURCE $(WARN) -DMD_VERSION='"$(VERSION)"' $(PKG_CFLAGS)
# --as-needed: a library nothing calls yet (libmosquitto, and OpenSSL behind it)
# costs RSS and start-up time in every process.
LDFLAGS += -Wl,--as-needed
LDLIBS += $(PKG_LIBS) -lpthread -lrt -lm

# make SANITIZE=1: AddressSanitizer + UndefinedBehaviorSanitizer build
ifeq ($(SANITIZE),1)
CFLAGS += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
BUILD := build/asan
else
BUILD := build/plain
endif
ifeq ($(WERROR),1)
CFLAGS += -Werror
endif

CORE_SRC := $(filter-out core/main.c,$(wildcard core/*.c))
CORE_OBJ := $(CORE_SRC:core/%.c=$(BUILD)/%.o)

# Debian packages the build, the tests and the demo need.
DEPS := build-essential pkg-config liblua5.4-dev lua5.4 libmodbus-dev libmosquitto-dev \
        libcmocka-dev libedit-dev lua-cjson tmux socat valgrind python3-pymodbus mbpoll
# MQTT tests and bench: a real broker, its clients, a CA made with openssl, /usr/bin/time
DEPS += mosquitto mosquitto-clients openssl time
# moondog sim's plot (make run)
DEPS += gnuplot-nox
# tests/sh/test_install.sh: systemd-analyze verify on the units, man -l on the page
DEPS += systemd man-db
LINT_DEPS := lua-check clang-format cppcheck
FUZZ_DEPS := clang libclang-rt-14-dev

.PHONY: all deps run test bench install uninstall clean lint moondog docs deb

all: moondog

# ./moondog is a copy of the plain or sanitizer build, whichever was asked
# for last; phony so that switching SANITIZE always switches the copy. The
# copy is renamed into place, so a running ./moondog never blocks it.
moondog: $(BUILD)/moondog
	cp $< $@.tmp && mv -f $@.tmp $@

$(BUILD)/moondog: $(BUILD)/main.o $(CORE_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: core/%.c core/*.h | $(BUILD)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD):
	mkdir -p $@

# Install missing Debian packages (needs root or sudo); quiet when all are there.
deps:
	@missing=$$(for p in $(DEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

# The simulated site with export limiting on, published to MQTT with Home
# Assistant discovery (scripts/sim.lua; the older device demo: moondog demo).
run: deps
	$(MAKE) moondog
	./moondog sim --scenario load_drop --broker --seconds 180

TEST_C := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(wildcard tests/c/test_*.c))

# tests/c/test_<name>.c is linked with $(BUILD)/<name>.o and TEST_EXTRA_<name>
# (more objects and libraries it needs), plus cmocka.
TEST_EXTRA_loop := -lpthread
# conn: the loop it runs on (listed again as a prerequisite, so that it is built)
TEST_EXTRA_conn := $(BUILD)/loop.o $(BUILD)/err.o -lpthread
$(BUILD)/tests/test_conn: $(BUILD)/loop.o $(BUILD)/err.o
# mbus: the layers of the client and the loop it runs on
MBUS_OBJ := $(addprefix $(BUILD)/,mbus_base.o mbus_net.o mbus_serial.o serial.o conn.o loop.o mbcodec.o err.o)
TEST_EXTRA_mbus := $(MBUS_OBJ) -lpthread -lm
$(BUILD)/tests/test_mbus: $(MBUS_OBJ)
TEST_EXTRA_sscodec := $(BUILD)/err.o -lm
TEST_EXTRA_rctcodec := $(BUILD)/err.o -lm
TEST_EXTRA_jsonfmt := -lm
TEST_EXTRA_mbcodec := $(BUILD)/err.o
TEST_EXTRA_growatt := $(BUILD)/mbcodec.o $(BUILD)/err.o
# libmosquitto only as the reference of the differential topic test
TEST_EXTRA_mqtt_queue := $(BUILD)/err.o $$(pkg-config --libs libmosquitto)
TEST_EXTRA_mqtt_subs := $(BUILD)/mqtt_queue.o $(BUILD)/err.o
TEST_EXTRA_mqttcodec := $(BUILD)/mqtt_queue.o $(BUILD)/err.o
TEST_EXTRA_mbserver := $(BUILD)/mbcodec.o $(BUILD)/err.o -lm
TEST_EXTRA_stream_conn := $(BUILD)/stream.o $(BUILD)/conn.o $(BUILD)/loop.o $(BUILD)/err.o -lpthread
TEST_EXTRA_stream_listener := $(BUILD)/stream.o $(BUILD)/conn.o $(BUILD)/loop.o $(BUILD)/err.o -lpthread
TEST_EXTRA_attach_server := $(BUILD)/loop.o $(BUILD)/attachcodec.o $(BUILD)/log.o $(BUILD)/err.o -lpthread
.SECONDEXPANSION:
$(BUILD)/tests/test_%: tests/c/test_%.c $(BUILD)/%.o $$(filter %.o,$$(TEST_EXTRA_$$*)) | $(BUILD)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -Icore -o $@ $< $(BUILD)/$*.o $(TEST_EXTRA_$*) \
	  $$(pkg-config --cflags --libs cmocka)

test: deps
	$(MAKE) moondog $(TEST_C)
	./tests/run.sh $(BUILD) $(TEST_C)

bench: deps
	$(MAKE) moondog
	./tests/bench/run.sh

lint:
	@$(MAKE) --no-print-directory deps DEPS="$(LINT_DEPS)"
	luacheck --std lua54 lua scripts devices tests/lua packaging
	clang-format --dry-run -Werror core/*.c core/*.h
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability -D_GNU_SOURCE core

# The man page and the Lua API reference, generated: the man page from
# `moondog --help` (packaging/man.lua), the reference from the library's
# `---` comments, the text help() shows (packaging/apidoc.lua).
DOCS := $(BUILD)/moondog.1 $(BUILD)/api.md
docs: $(DOCS)

$(BUILD)/moondog.1: $(BUILD)/moondog packaging/man.lua core/main.c | $(BUILD)
	MOONDOG_HOME=$(CURDIR) $(BUILD)/moondog packaging/man.lua $(VERSION) > $@.tmp && mv $@.tmp $@

$(BUILD)/api.md: $(BUILD)/moondog packaging/apidoc.lua $(shell find lua -name '*.lua') | $(BUILD)
	MOONDOG_HOME=$(CURDIR) $(BUILD)/moondog packaging/apidoc.lua > $@.tmp && mv $@.tmp $@

# Units with this install's paths in them.
$(BUILD)/%.service: packaging/%.service.in | $(BUILD)
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' $< > $@

UNITS := $(BUILD)/moondog.service $(BUILD)/moondog@.service

# The example site goes to $(SYSCONFDIR)/moondog/site.lua only when there is
# none (never over a user's site), and to the docs' examples always.
install: moondog $(DOCS) $(UNITS)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR) $(DESTDIR)$(DOCDIR)/examples \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
	  $(DESTDIR)$(SYSCONFDIR)/moondog
	install -m 755 moondog $(DESTDIR)$(BINDIR)/moondog
	cp -r lua scripts devices $(DESTDIR)$(DATADIR)/
	install -m 644 $(UNITS) $(DESTDIR)$(UNITDIR)/
	install -m 644 packaging/moondog.sysusers $(DESTDIR)$(SYSUSERSDIR)/moondog.conf
	install -m 644 $(BUILD)/moondog.1 $(DESTDIR)$(MANDIR)/man1/moondog.1
	install -m 644 README.md LICENSE docs/*.md $(BUILD)/api.md $(DESTDIR)$(DOCDIR)/
	install -m 644 devices/README.md $(DESTDIR)$(DOCDIR)/devices.md
	install -m 644 packaging/site.lua $(DESTDIR)$(DOCDIR)/examples/site.lua
	install -m 644 packaging/secrets.example $(DESTDIR)$(DOCDIR)/examples/secrets
	[ -e $(DESTDIR)$(SYSCONFDIR)/moondog/site.lua ] || \
	  install -m 644 packaging/site.lua $(DESTDIR)$(SYSCONFDIR)/moondog/site.lua

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/moondog $(DESTDIR)$(MANDIR)/man1/moondog.1
	rm -f $(DESTDIR)$(UNITDIR)/moondog.service $(DESTDIR)$(UNITDIR)/moondog@.service
	rm -f $(DESTDIR)$(SYSUSERSDIR)/moondog.conf
	rm -rf $(DESTDIR)$(DATADIR) $(DESTDIR)$(DOCDIR)

# make deb: moondog_$(VERSION)_<arch>.deb here, built by dpkg-buildpackage
# (debian/) from a copy of the tree in build/deb, so that its by-products
# land in build/deb and not in the folder above the tree.
DEB_DEPS := debhelper dpkg-dev fakeroot
deb:
	@$(MAKE) --no-print-directory deps DEPS="$(DEB_DEPS)"
	rm -rf build/deb && mkdir -p build/deb/moondog-$(VERSION)
	tar -c --exclude=./build --exclude=./.git --exclude=./tests --exclude=./moondog \
	  --exclude='./moondog_*' . | tar -x -C build/deb/moondog-$(VERSION)
	cd build/deb/moondog-$(VERSION) && dpkg-buildpackage -us -uc -b
	cp build/deb/moondog_$(VERSION)_*.deb .
	@ls moondog_$(VERSION)_*.deb

clean:
	rm -rf build moondog moondog_*.deb

# make fuzz [FUZZ_SECONDS=10]: build each tests/fuzz/fuzz_<name>.c with libFuzzer
# and the sanitizers, linked with core/<name>.c (and FUZZ_EXTRA_<name>), then run
# it for FUZZ_SECONDS
# on its seed corpus tests/fuzz/corpus/<name>/. New inputs go to
# build/fuzz/corpus/<name>/, crash reproducers to build/fuzz/. A crash, a
# sanitizer report or a broken contract (abort) fails the target.
FUZZ_SECONDS ?= 10
FUZZ_CC ?= clang
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
              -std=c11 -D_GNU_SOURCE $(WARN) -Icore
FUZZ_BIN := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))

.PHONY: fuzz
fuzz:
	@$(MAKE) --no-print-directory deps DEPS="$(FUZZ_DEPS)"
	@$(MAKE) --no-print-directory fuzz-run

.PHONY: fuzz-run
fuzz-run: $(FUZZ_BIN)
	@set -e; for bin in $(FUZZ_BIN); do \
	  name=$${bin##*/fuzz_}; \
	  mkdir -p build/fuzz/corpus/$$name; \
	  echo "== $$bin for $(FUZZ_SECONDS) s"; \
	  $$bin -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=build/fuzz/$$name- build/fuzz/corpus/$$name tests/fuzz/corpus/$$name; \
	done

# Sources a target links besides core/<name>.c: FUZZ_EXTRA_<name>.
FUZZ_EXTRA_mbserver := core/mbcodec.c core/err.c
build/fuzz/fuzz_mbserver: $(FUZZ_EXTRA_mbserver)
FUZZ_EXTRA_sscodec := core/err.c -lm
build/fuzz/fuzz_sscodec: core/err.c
FUZZ_EXTRA_rctcodec := core/err.c -lm
build/fuzz/fuzz_rctcodec: core/err.c
FUZZ_EXTRA_growatt := core/mbcodec.c core/err.c
build/fuzz/fuzz_growatt: core/mbcodec.c core/err.c
FUZZ_MBUS_SRC := core/mbus_base.c core/mbcodec.c core/mbus_net.c core/mbus_serial.c \
                 core/serial.c core/conn.c core/loop.c core/err.c
FUZZ_EXTRA_mbus := $(FUZZ_MBUS_SRC) -lpthread -lm
build/fuzz/fuzz_mbus: $(FUZZ_MBUS_SRC)

FUZZ_MQTT_SRC := core/mqtt_queue.c core/mqtt_plain.c core/mqttcodec.c core/conn.c \
                 core/loop.c core/log.c core/err.c
FUZZ_EXTRA_mqtt := $(FUZZ_MQTT_SRC) -lpthread -ldl
build/fuzz/fuzz_mqtt: $(FUZZ_MQTT_SRC)
FUZZ_EXTRA_mqttcodec := core/mqtt_queue.c core/err.c
build/fuzz/fuzz_mqttcodec: core/mqtt_queue.c core/err.c
FUZZ_EXTRA_mbcodec := core/err.c
build/fuzz/fuzz_mbcodec: core/err.c

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c core/%.c core/*.h tests/fuzz/check.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< core/$*.c $(FUZZ_EXTRA_$*)
