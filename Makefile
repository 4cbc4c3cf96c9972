# redis-proxy: `make` builds, `make run` runs on conf/proxy.ini, `make check` runs every test.
# SANITIZE=1 builds everything with AddressSanitizer and UBSan (into build-asan/).
# `make fuzz` runs each libFuzzer target for FUZZ_SECONDS (into build-fuzz/).

CXX      ?= g++
PKGS     := libevent libevent_openssl hiredis inih libsystemd libssl libcrypto
# What building and the unit tests need (the container image's build stage: make build-deps).
BUILD_PKGS := g++ make pkg-config libevent-dev libhiredis-dev libinih-dev libcpputest-dev libsystemd-dev libssl-dev
DEB_PKGS := g++ make pkg-config libevent-dev libhiredis-dev libinih-dev libcpputest-dev \
            libsystemd-dev libssl-dev systemd redis-server redis-tools python3 python3-redis python3-prometheus-client \
            python3-yaml curl groff-base openssl
# Debian's Python, whose modules (python3-redis) the packages above install; not whichever
# python3 comes first in PATH.
PYTHON   := /usr/bin/python3

ifeq ($(SANITIZE),1)
BUILD    := build-asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT      := -O1 -g
else
BUILD    := build
SANFLAGS :=
OPT      := -O2 -g
endif

CXXFLAGS += -std=c++17 $(OPT) -Wall -Wextra -Wshadow -Wno-unused-parameter -fno-exceptions -fno-rtti \
            $(SANFLAGS) $(shell pkg-config --cflags $(PKGS) 2>/dev/null) -MMD -MP
LDFLAGS  += $(SANFLAGS)
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# The source's layers, top to bottom (docs/design.md, "Source layout"); each is a folder of src/ and of
# tests/unit/, and a file includes only from its own layer or those below (tests/check_layers.py).
LAYERS   := daemon front cache redis base
CPPFLAGS += $(LAYERS:%=-Isrc/%)
SRC      := $(foreach l,$(LAYERS),$(wildcard src/$(l)/*.cc))
OBJ      := $(SRC:src/%.cc=$(BUILD)/obj/%.o)
LIB_OBJ  := $(filter-out $(BUILD)/obj/daemon/main.o,$(OBJ))
UNIT_SRC := $(wildcard tests/unit/*.cc) $(foreach l,$(LAYERS),$(wildcard tests/unit/$(l)/*.cc))
UNIT_OBJ := $(UNIT_SRC:tests/unit/%.cc=$(BUILD)/unit/%.o)

BENCH_PKGS := wrk redis-tools webdis nutcracker nginx-light valgrind python3-matplotlib

.SECONDEXPANSION:

.PHONY: all run check check-fresh docs combo soak unit system deps build-deps client-deps check-image bench bench-deps fuzz fuzz-deps install deb deb-deps check-systemd install-packages clean

all: $(BUILD)/redis-proxy

$(BUILD)/redis-proxy: $(OBJ)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: src/%.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c -o $@ $<

# CppUTest's new/delete leak detector clashes with ASan; disable it with -DCPPUTEST_MEM_LEAK_DETECTION_DISABLED.
$(BUILD)/unit/%.o: tests/unit/%.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -Wno-shadow -c -o $@ $<

$(BUILD)/unit-tests: $(UNIT_OBJ) $(LIB_OBJ)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lCppUTest -lCppUTestExt

# The hiredis client the system tests use to pipeline requests.
$(BUILD)/resp-pipeline: tests/system/resp_pipeline.cc | $(BUILD)/obj
	$(CXX) $(CXXFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

$(BUILD)/obj $(BUILD)/unit:
	mkdir -p $@

# Installs the Debian packages the build, the tests and `make run` need (with sudo when not root).
deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(DEB_PKGS)"

build-deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(BUILD_PKGS)" APT_FLAGS=--no-install-recommends

# The Node.js clients the system tests drive (tests/clients), from the npm registry: without it
# (or without npm) their test is skipped, except in CI (CI=true), where .ci/run installs them.
client-deps:
	@if [ ! -d tests/clients/node_modules ] && command -v npm >/dev/null; then \
		npm ci --prefix tests/clients --no-audit --no-fund --silent || echo "npm ci failed: the Node.js client tests will be skipped"; \
	fi

bench-deps: deps
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(BENCH_PKGS)"

# APT_LOG=file: apt's own lines go there, and one line here says what is installed (make run).
install-packages:
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing $$(echo $$missing | wc -w) Debian package(s):" $$missing; \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		if [ -n "$(APT_LOG)" ]; then exec >>"$(APT_LOG)" 2>&1; fi; \
		$$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $(APT_FLAGS) $$missing; \
	fi

unit: $(BUILD)/unit-tests
	$(BUILD)/unit-tests

SYSTEM_ENV := PROXY_BIN=$(abspath $(BUILD)/redis-proxy) PIPELINE_BIN=$(abspath $(BUILD)/resp-pipeline)

system: $(BUILD)/redis-proxy $(BUILD)/resp-pipeline
	$(SYSTEM_ENV) $(PYTHON) tests/system/run.py

check: deps client-deps
	$(PYTHON) tests/check_layers.py
	$(MAKE) all $(BUILD)/unit-tests $(BUILD)/resp-pipeline
	$(BUILD)/unit-tests
	$(SYSTEM_ENV) $(PYTHON) tests/system/run.py

# The randomized combination test (tests/system/test_combinations.py; make check runs its fixed
# seeds). `make combo SEEDS=1234,99` replays seeds; `make soak SEEDS=N DURATION=seconds` runs up to
# N random seeds (printed; every seed if N is empty) for DURATION seconds in all, SEED_SECONDS each.
# Both take SANITIZE=1 (build-asan/).
SEED_SECONDS ?= 6
DURATION     ?= 300
combo: $(BUILD)/redis-proxy $(BUILD)/resp-pipeline
	COMBO_SEEDS="$(SEEDS)" COMBO_SECONDS=$(SEED_SECONDS) $(SYSTEM_ENV) $(PYTHON) tests/system/run.py test_combinations.py

soak: $(BUILD)/redis-proxy $(BUILD)/resp-pipeline
	COMBO_SOAK_SEEDS="$(SEEDS)" COMBO_SOAK_SECONDS=$(DURATION) COMBO_SECONDS=$(SEED_SECONDS) $(SYSTEM_ENV) \
		$(PYTHON) tests/system/run.py test_combinations.py

# Runs the proxy in the foreground on conf/local.ini if there is one (git ignores it: tune there),
# else conf/proxy.ini; CONF=file for another, ARGS='-o proxy.listen=127.0.0.1:8081' for more options.
# Against a throwaway redis-server of its own, on a unix socket under build/, in a session of its
# own so that Ctrl-C reaches the proxy only, and stopped once the proxy is gone; REDIS=host:port
# uses that Redis instead (REDIS=conf: the file's own [redis]). apt's and the compiler's lines go to
# logs under build/, which a failure points to. A file that does not load stops it with its error.
CONF  ?= $(if $(wildcard conf/local.ini),conf/local.ini,conf/proxy.ini)
REDIS ?=
RUN_DIR := $(abspath $(BUILD))
run:
	@mkdir -p $(BUILD); rm -f $(BUILD)/deps.log $(BUILD)/build.log
	@$(MAKE) --no-print-directory deps APT_LOG=$(RUN_DIR)/deps.log || \
		{ tail -n 20 $(BUILD)/deps.log; echo "make run: installing packages failed; all of apt's output is in $(BUILD)/deps.log"; exit 1; }
	@echo "building $(BUILD)/redis-proxy (compiler output: $(BUILD)/build.log)"; \
	$(MAKE) --no-print-directory all >$(BUILD)/build.log 2>&1 || \
		{ grep -m 20 -E 'error|Error' $(BUILD)/build.log; echo "make run: the build failed; see $(BUILD)/build.log"; exit 1; }
	@set -u; conf="$(CONF)"; args="$(ARGS)"; redis_pid=; \
	$(BUILD)/redis-proxy -c "$$conf" $$args -t -q || exit 1; \
	cluster=$$($(BUILD)/redis-proxy -c "$$conf" $$args -T | awk '$$1 == "redis.cluster" { print $$3 }'); \
	if [ -n "$(REDIS)" ] && [ "$(REDIS)" != conf ]; then \
		args="$$args -o redis.address=$(REDIS)"; echo "redis: $(REDIS) (REDIS=)"; \
	elif [ -n "$(REDIS)" ] || [ -n "$$cluster" ]; then \
		echo "redis: as $$conf says ($$($(BUILD)/redis-proxy -c "$$conf" $$args -T | awk '$$1 == "redis.address" || $$1 == "redis.cluster" { printf "%s ", $$3 }'))"; \
	else \
		sock=$(RUN_DIR)/redis.sock; rm -f "$$sock"; \
		setsid redis-server --port 0 --unixsocket "$$sock" --unixsocketperm 700 --save '' --appendonly no \
			--dir $(RUN_DIR) >$(BUILD)/redis.log 2>&1 & redis_pid=$$!; \
		for i in $$(seq 50); do redis-cli -s "$$sock" ping >/dev/null 2>&1 && break; sleep 0.1; done; \
		redis-cli -s "$$sock" ping >/dev/null 2>&1 || { echo "make run: redis-server did not start; see $(BUILD)/redis.log"; exit 1; }; \
		args="$$args -o redis.address=unix:$$sock"; \
		echo "redis: a throwaway redis-server of its own, stopped with the proxy: redis-cli -s $(BUILD)/redis.sock (REDIS=host:port for another)"; \
	fi; \
	args="$$args -o proxy.pid_file=$(RUN_DIR)/redis-proxy.pid"; \
	echo "config: $$conf; reload it with: $(BUILD)/redis-proxy -c $$conf$$args -s reload"; \
	trap '[ -n "$$redis_pid" ] && kill $$redis_pid 2>/dev/null && wait $$redis_pid; true' EXIT; \
	trap 'true' INT TERM; \
	$(BUILD)/redis-proxy -c "$$conf" $$args

# The benchmark (never part of check): the proxy against its peers, in one run; see bench/bench.py.
$(BUILD)/bench/%: bench/%.cc
	@mkdir -p $(BUILD)/bench
	$(CXX) $(CXXFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

bench: bench-deps
	$(MAKE) all $(BUILD)/bench/evhttp_bare $(BUILD)/bench/paced_client
	BUILD_DIR=$(abspath $(BUILD)) $(PYTHON) bench/bench.py

# `make install`, with DESTDIR (a staging root, as packages use) and PREFIX. An existing
# /etc/redis-proxy/proxy.ini is never overwritten: the example goes beside it as proxy.ini.dist.
PREFIX      ?= /usr
SBINDIR     ?= $(PREFIX)/sbin
MANDIR      ?= $(PREFIX)/share/man
SYSCONFDIR  ?= /etc
UNITDIR     ?= /lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d

install: all
	install -D -m 0755 $(BUILD)/redis-proxy $(DESTDIR)$(SBINDIR)/redis-proxy
	install -D -m 0644 systemd/redis-proxy.service $(DESTDIR)$(UNITDIR)/redis-proxy.service
	install -D -m 0644 systemd/redis-proxy.sysusers $(DESTDIR)$(SYSUSERSDIR)/redis-proxy.conf
	install -D -m 0644 packaging/redis-proxy.8 $(DESTDIR)$(MANDIR)/man8/redis-proxy.8
	install -D -m 0644 packaging/redis-proxy.logrotate $(DESTDIR)$(SYSCONFDIR)/logrotate.d/redis-proxy
	@# The file may hold the Redis password: installed here, readable by the service's group only,
	@# 0640 root:redis-proxy, or 0600 root until that group exists (systemd-sysusers makes it from
	@# the file above; then: chgrp redis-proxy FILE && chmod 0640 FILE). Staged (DESTDIR, the
	@# package), 0644: the package's postinst sets 0640 root:redis-proxy at the first install.
	@conf=$(DESTDIR)$(SYSCONFDIR)/redis-proxy/proxy.ini; owner="-m 0644"; \
	if [ -z "$(DESTDIR)" ]; then owner="-m 0600"; getent group redis-proxy >/dev/null && owner="-m 0640 -g redis-proxy"; fi; \
	if [ -e $$conf ]; then \
		echo "keeping $$conf; the example is proxy.ini.dist"; \
		install -D $$owner conf/proxy.ini $$conf.dist; \
	else \
		install -D $$owner conf/proxy.ini $$conf; \
	fi

# `make deb`: the Debian package, from packaging/debian, built in a copy of the sources under
# build-deb/ (so the tree itself never holds a debian/ directory or build leftovers), then
# checked by lintian, which must report no error.
VERSION  := $(shell sed -n 's/^#define REDIS_PROXY_VERSION "\(.*\)"/\1/p' src/base/version.h)
DEB_TOOL_PKGS := dpkg-dev debhelper lintian fakeroot

deb-deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(DEB_PKGS) $(DEB_TOOL_PKGS)"

deb: deb-deps
	rm -rf build-deb && mkdir -p build-deb/redis-proxy-$(VERSION)
	cp -r Makefile README.md LICENSE src conf systemd packaging docs build-deb/redis-proxy-$(VERSION)/
	cp -r packaging/debian build-deb/redis-proxy-$(VERSION)/debian
	cd build-deb/redis-proxy-$(VERSION) && dpkg-buildpackage -b -us -uc
	lintian --fail-on error build-deb/redis-proxy_$(VERSION)_*.deb
	@ls build-deb/*.deb

# `make check-systemd`: the package in a real systemd booted in a container (see
# tests/systemd/check.sh); CI runs it after make check and make deb.
check-systemd: deb
	@$(MAKE) --no-print-directory install-packages PACKAGES="debootstrap systemd-container procps"
	bash tests/systemd/check.sh

# The docs' blocks that come from the binary: docs/configuration.md's reference table (the
# settings table itself, redis-proxy --settings) and docs/operations.md's --help. (make bench
# writes docs/performance.md's tables; tests/system/test_docs.py checks both kinds.)
docs: $(BUILD)/redis-proxy
	@$(PYTHON) tests/system/test_docs.py --write $(BUILD)/redis-proxy

# The README's Quickstart as a newcomer on a fresh minimal Debian 12 (non-root, sudo, no systemd as
# PID 1, Debian's /etc/hosts): make run, its curl and redis-cli lines, Ctrl-C, make check; see
# tests/fresh/check.sh. It checks what is committed (a clone of this repository).
check-fresh:
	@$(MAKE) --no-print-directory install-packages PACKAGES="debootstrap systemd-container"
	bash tests/fresh/check.sh

# The container image, built for real (buildah, from a Debian base made with debootstrap: nothing
# is pulled) and run (podman) against a test Redis: see tests/image/check.sh.
check-image:
	@$(MAKE) --no-print-directory install-packages PACKAGES="debootstrap buildah podman podman-compose runc redis-server redis-tools curl"
	bash tests/image/check.sh

# Fuzzing (never part of check): libFuzzer with ASan and UBSan, clang from Debian. Each target
# runs FUZZ_SECONDS on a working corpus in build-fuzz/ seeded from tests/fuzz/corpus/; a crash
# leaves its input as build-fuzz/TARGET-crash-*, to be turned into a unit test.
FUZZ_PKGS    := clang libclang-rt-14-dev
FUZZ_SECONDS ?= 60
FUZZ_CXX     := clang++
FUZZ_FLAGS   := -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                $(LAYERS:%=-Isrc/%) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_TARGETS := resp_parser key_decode config acl_rules glob http_credentials resp_auth tls_server
FUZZ_SRC_resp_parser := src/base/resp_parser.cc
FUZZ_SRC_key_decode  := src/front/key_decode.cc
FUZZ_SRC_config      := src/base/config.cc src/base/address.cc src/base/log.cc src/base/acl.cc src/base/tls.cc src/base/cpus.cc
FUZZ_SRC_acl_rules   := src/base/acl.cc
FUZZ_SRC_glob        := src/base/acl.cc
FUZZ_SRC_http_credentials := src/base/http_credentials.cc
FUZZ_SRC_resp_auth   := src/base/resp_parser.cc src/front/resp_args.cc src/base/acl.cc
FUZZ_SRC_tls_server  := src/base/transport.cc src/base/tls.cc

build-fuzz/fuzz_%: tests/fuzz/fuzz_%.cc $$(FUZZ_SRC_$$*)
	@mkdir -p build-fuzz
	$(FUZZ_CXX) $(FUZZ_FLAGS) -o $@ $^ $(LDLIBS)

fuzz-deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(FUZZ_PKGS)"

fuzz: fuzz-deps
	$(MAKE) $(FUZZ_TARGETS:%=build-fuzz/fuzz_%)
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p build-fuzz/corpus/$$t; \
		dict=; [ -f tests/fuzz/$${t%%_*}.dict ] && dict=-dict=tests/fuzz/$${t%%_*}.dict; \
		echo "fuzzing $$t for $(FUZZ_SECONDS)s"; \
		build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $$dict \
			-artifact_prefix=build-fuzz/$$t- build-fuzz/corpus/$$t tests/fuzz/corpus/$$t \
			2>build-fuzz/$$t.log || { tail -40 build-fuzz/$$t.log; exit 1; }; \
		grep -E "stat::number_of_executed_units|cov:" build-fuzz/$$t.log | tail -2; \
	done

clean:
	rm -rf build build-asan build-fuzz build-deb

-include $(OBJ:.o=.d) $(UNIT_OBJ:.o=.d)
