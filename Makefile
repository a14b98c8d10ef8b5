# moondog - build, test, install. See README.md.
VERSION := 0.1.0
PREFIX ?= /usr/local
DESTDIR ?=

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
LINT_DEPS := lua-check clang-format cppcheck
FUZZ_DEPS := clang libclang-rt-14-dev

.PHONY: all deps run test bench install uninstall clean lint moondog

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
TEST_EXTRA_sscodec := $(BUILD)/err.o -lm
TEST_EXTRA_rctcodec := $(BUILD)/err.o -lm
TEST_EXTRA_mbcodec := $(BUILD)/err.o
TEST_EXTRA_growatt := $(BUILD)/err.o
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
	luacheck --std lua54 lua scripts devices tests/lua
	clang-format --dry-run -Werror core/*.c core/*.h
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability -D_GNU_SOURCE core

install: moondog
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/moondog
	install -m 755 moondog $(DESTDIR)$(PREFIX)/bin/moondog
	cp -r lua scripts devices $(DESTDIR)$(PREFIX)/share/moondog/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/moondog
	rm -rf $(DESTDIR)$(PREFIX)/share/moondog

clean:
	rm -rf build moondog

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
FUZZ_EXTRA_mbserver := core/mbcodec.c
build/fuzz/fuzz_mbserver: $(FUZZ_EXTRA_mbserver)
FUZZ_EXTRA_sscodec := -lm
FUZZ_EXTRA_mbus := core/mbcodec.c core/mbus_net.c core/mbus_serial.c core/loop.c \
                   $$(pkg-config --cflags --libs libmodbus) -lpthread -lm
build/fuzz/fuzz_mbus: core/mbcodec.c core/mbus_net.c core/mbus_serial.c core/loop.c

FUZZ_EXTRA_mqtt := core/loop.c core/log.c core/err.c -lpthread -ldl
build/fuzz/fuzz_mqtt: core/loop.c core/log.c core/err.c
FUZZ_EXTRA_mbcodec := core/err.c
build/fuzz/fuzz_mbcodec: core/err.c

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c core/%.c core/*.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< core/$*.c $(FUZZ_EXTRA_$*)
