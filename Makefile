# redis-proxy: `make` builds, `make run` runs on conf/proxy.ini, `make check` runs every test.
# SANITIZE=1 builds everything with AddressSanitizer and UBSan (into build-asan/).

CXX      ?= g++
PKGS     := libevent hiredis inih
DEB_PKGS := g++ make pkg-config libevent-dev libhiredis-dev libinih-dev libcpputest-dev \
            redis-server redis-tools python3 curl

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

SRC      := $(wildcard src/*.cc)
OBJ      := $(SRC:src/%.cc=$(BUILD)/obj/%.o)
LIB_OBJ  := $(filter-out $(BUILD)/obj/main.o,$(OBJ))
UNIT_SRC := $(wildcard tests/unit/*.cc)
UNIT_OBJ := $(UNIT_SRC:tests/unit/%.cc=$(BUILD)/unit/%.o)

BENCH_PKGS := wrk redis-tools webdis nutcracker nginx-light valgrind

.PHONY: all run check unit system deps bench bench-deps install-packages clean

all: $(BUILD)/redis-proxy

$(BUILD)/redis-proxy: $(OBJ)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: src/%.cc | $(BUILD)/obj
	$(CXX) $(CXXFLAGS) -c -o $@ $<

# CppUTest's new/delete leak detector clashes with ASan; disable it with -DCPPUTEST_MEM_LEAK_DETECTION_DISABLED.
$(BUILD)/unit/%.o: tests/unit/%.cc | $(BUILD)/unit
	$(CXX) $(CXXFLAGS) -Wno-shadow -Isrc -c -o $@ $<

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

bench-deps: deps
	@$(MAKE) --no-print-directory install-packages PACKAGES="$(BENCH_PKGS)"

install-packages:
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $$missing; \
	fi

unit: $(BUILD)/unit-tests
	$(BUILD)/unit-tests

SYSTEM_ENV := PROXY_BIN=$(abspath $(BUILD)/redis-proxy) PIPELINE_BIN=$(abspath $(BUILD)/resp-pipeline)

system: $(BUILD)/redis-proxy $(BUILD)/resp-pipeline
	$(SYSTEM_ENV) python3 tests/system/run.py

check: deps
	$(MAKE) all $(BUILD)/unit-tests $(BUILD)/resp-pipeline
	$(BUILD)/unit-tests
	$(SYSTEM_ENV) python3 tests/system/run.py

# Runs the proxy in the foreground on conf/proxy.ini; if no Redis answers at the configured
# address, starts a throwaway redis-server there for this session and stops it on exit.
CONF ?= conf/proxy.ini
run: deps
	$(MAKE) all
	@addr=$$($(BUILD)/redis-proxy -c $(CONF) -T | awk '$$1 == "redis.address" { print $$3 }'); \
	case "$$addr" in unix:*) rflags="--port 0 --unixsocket $${addr#unix:}"; ping="-s $${addr#unix:}";; \
	   *) host=$${addr%:*}; port=$${addr##*:}; host=$${host#[}; host=$${host%]}; \
	      rflags="--bind $$host --port $$port"; ping="-h $$host -p $$port";; esac; \
	redis_pid=; \
	if ! redis-cli $$ping ping >/dev/null 2>&1; then \
		echo "no Redis answers at $$addr: starting a throwaway redis-server there"; \
		redis-server $$rflags --save '' --appendonly no --dir /tmp >/tmp/redis-proxy-dev-redis.log 2>&1 & redis_pid=$$!; \
		for i in $$(seq 50); do redis-cli $$ping ping >/dev/null 2>&1 && break; sleep 0.1; done; \
	fi; \
	trap '[ -n "$$redis_pid" ] && kill $$redis_pid 2>/dev/null; true' EXIT INT TERM; \
	$(BUILD)/redis-proxy -c $(CONF)

# The benchmark (never part of check): the proxy against its peers, in one run; see bench/bench.py.
$(BUILD)/bench/%: bench/%.cc
	@mkdir -p $(BUILD)/bench
	$(CXX) $(CXXFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

bench: bench-deps
	$(MAKE) all $(BUILD)/bench/evhttp_bare $(BUILD)/bench/paced_client
	BUILD_DIR=$(abspath $(BUILD)) python3 bench/bench.py

clean:
	rm -rf build build-asan

-include $(OBJ:.o=.d) $(UNIT_OBJ:.o=.d)
