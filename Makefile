# The two set-up commands (DESIGN.md): `make run` and `make test`.
# Everything else is CMake; this file only chains install → configure → build → run.
BUILD     ?= build
ASAN_BUILD ?= build-asan
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CONF      ?= examples/flingd.conf

.PHONY: all deps test-deps build build-asan run test test-asan bench clean

all: build

deps:
	@scripts/install-deps

test-deps:
	@scripts/install-deps --test

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: test-deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFL_SANITIZE=ON -DFL_TESTS=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

run: build
	@mkdir -p var
	$(BUILD)/flingd -c $(CONF)

# Normal build first, then the same suite under ASan+UBSan.
test: test-deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFL_TESTS=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j 2 --timeout 300
	@$(MAKE) --no-print-directory test-asan

test-asan: build-asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -j 2 --timeout 300

bench: build
	bench/run

# The crash soak (tests/soak/soak.c): ROUNDS kill -9 rounds under load, then the accounting.
ROUNDS ?= 20
.PHONY: soak
soak: test-deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFL_TESTS=ON >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target flingsoak
	$(BUILD)/flingsoak --rounds $(ROUNDS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
