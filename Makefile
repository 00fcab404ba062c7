# attn - thin wrapper over CMake. `make demo` runs the main job, `make test` every test.
BUILD       ?= build
ASAN_BUILD  ?= build-asan
JOBS        ?= 2
PYTHON      := /usr/bin/python3
CMAKE_FLAGS ?=
PREFIX      ?= /usr/local

.PHONY: all build demo test test-sanitize test-noblas bench install clean

all: build

build:
	@tools/deps.sh build
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DATTN_WERROR=ON \
	      -DPython3_EXECUTABLE=$(PYTHON) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j$(JOBS)

demo: build
	$(BUILD)/tools/attn/attn demo

# Every test: C tests (every ISA the CPU runs), the CLI's end-to-end tests and
# the Python tests against NumPy and PyTorch.
test:
	@tools/deps.sh test
	@$(MAKE) --no-print-directory build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# The same C and CLI tests under AddressSanitizer + UndefinedBehaviorSanitizer
# (the Python extension is left out: it would need the runtime preloaded).
test-sanitize:
	@tools/deps.sh test
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_WERROR=ON \
	      -DATTN_SANITIZE=ON -DATTN_PYTHON=OFF -DPython3_EXECUTABLE=$(PYTHON) $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ATTN_TEST_QUICK=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j$(JOBS)

# The dependency-free configuration (-DATTN_BLAS=OFF: built-in GEMM loops), C tests.
test-noblas:
	@tools/deps.sh build
	cmake -S . -B build-noblas -DCMAKE_BUILD_TYPE=Release -DATTN_WERROR=ON -DATTN_BLAS=OFF \
	      -DATTN_PYTHON=OFF -DATTN_CLI=OFF $(CMAKE_FLAGS)
	cmake --build build-noblas -j$(JOBS)
	cd build-noblas && ctest --output-on-failure -j$(JOBS)

bench: build
	bash bench/run.sh $(BUILD)

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-noblas
