# The two set-up commands (README.md "Quick start"): `make run` and `make test`.
# Everything else is CMake; this file only chains install → configure → build → run.
BUILD     ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 600
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CONF      ?= examples/flingd.conf
PREFIX    ?= /usr/local
DEB_BUILD ?= build-deb

.PHONY: all deps test-deps install deb build build-asan build-tsan build-fuzz run test test-asan test-tsan fuzz bench clean

all: build

deps:
	@scripts/install-deps

test-deps:
	@scripts/install-deps --test

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: test-deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFL_SANITIZE=ON -DFL_TESTS=ON -DFL_WERROR=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

build-tsan: test-deps
	@cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFL_TSAN=ON -DFL_TESTS=ON -DFL_WERROR=ON >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS)

# libFuzzer needs clang; the build dir is clang's alone.
build-fuzz: test-deps
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFL_FUZZ=ON -DFL_WERROR=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS)

# DESTDIR=/tmp/stage make install stages the files; the unit and fling.pc name PREFIX.
install: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	cmake --install $(BUILD)

# A Debian package for prefix /usr, built in its own dir: fling_VERSION_ARCH.deb in $(DEB_BUILD).
deb: deps
	@cmake -S . -B $(DEB_BUILD) -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
	@cmake --build $(DEB_BUILD) -j $(JOBS)
	cd $(DEB_BUILD) && cpack -G DEB

run: build
	@mkdir -p var
	$(BUILD)/flingd -c $(CONF) $(if $(filter 0,$(shell id -u)),--allow-root)

# Normal build first, then the same suite under ASan+UBSan, then under TSan (about 30 s more).
test: test-deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFL_TESTS=ON -DFL_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j 2 --timeout 300
	@$(MAKE) --no-print-directory test-asan
	@$(MAKE) --no-print-directory test-tsan

test-asan: build-asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -j 2 --timeout 300

test-tsan: build-tsan
	cd $(TSAN_BUILD) && TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=1 second_deadlock_stack=1" \
		ctest --output-on-failure -j 2 --timeout 300

# Fuzzes for FUZZ_SECONDS from the seed corpus; new inputs go to $(FUZZ_BUILD)/corpus, crashes to
# $(FUZZ_BUILD)/crash-*. Copy a crash into tests/fuzz/regress/ once it is understood.
fuzz: build-fuzz
	@mkdir -p $(FUZZ_BUILD)/corpus
	$(FUZZ_BUILD)/fuzz_conn -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 \
		-dict=tests/fuzz/fuzz.dict -artifact_prefix=$(FUZZ_BUILD)/ $(FUZZ_BUILD)/corpus tests/fuzz/corpus

# bench/compare: flingd side by side with Redis (AOF always, everysec), beanstalkd -f 0 and bare
# sinks, alternating runs, one table with PASS/MISS per target (about 3 minutes; PERFORMANCE.md).
# bench-slow: memory and start-up with 1,000,000 queued, the rate with 5,000,000 finished.
# bench-pg: flingd nodes on one PostgreSQL 15 (1 node vs SQLite, 1/2/3 nodes, PostgreSQL's CPU).
.PHONY: bench-deps bench-slow bench-pg
bench-deps:
	@scripts/install-deps --bench

bench: build bench-deps
	BUILD=$(BUILD) bench/compare

bench-slow: build bench-deps
	BUILD=$(BUILD) bench/compare --slow

bench-pg: build bench-deps
	BUILD=$(BUILD) bench/compare --pg

# The crash soak (tests/soak/soak.c): ROUNDS kill -9 rounds under load, then the accounting.
ROUNDS ?= 20
.PHONY: soak
soak: test-deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFL_TESTS=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target flingsoak
	$(BUILD)/flingsoak --rounds $(ROUNDS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD) $(DEB_BUILD)
