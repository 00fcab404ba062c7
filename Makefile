# attn - thin wrapper over CMake. `make demo` runs the main job, `make test` every test.
BUILD       ?= build
ASAN_BUILD  ?= build-asan
JOBS        ?= 2
PYTHON      := /usr/bin/python3
CMAKE_FLAGS ?=
PREFIX      ?= /usr/local

.PHONY: all build demo test test-sanitize test-python-sanitize test-noblas bench bench-mpi install clean

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

# The Python extension and the library under ASan + UBSan, the runtimes
# preloaded into Debian's interpreter (leak checking off: CPython's own
# allocations at exit would drown it); the PyTorch tests are left out.
PYASAN_BUILD ?= build-pyasan
test-python-sanitize:
	@tools/deps.sh test
	cmake -S . -B $(PYASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_WERROR=ON \
	      -DATTN_SANITIZE=ON -DATTN_PYTHON=ON -DATTN_CLI=OFF -DPython3_EXECUTABLE=$(PYTHON) $(CMAKE_FLAGS)
	cmake --build $(PYASAN_BUILD) -j$(JOBS) --target attn_python
	PYTHONPATH=$(PYASAN_BUILD)/python \
	    LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    $(PYTHON) -m pytest -q -p no:cacheprovider python/tests --ignore=python/tests/test_torch.py

# The dependency-free configuration (-DATTN_BLAS=OFF: built-in GEMM loops), C tests.
test-noblas:
	@tools/deps.sh build
	cmake -S . -B build-noblas -DCMAKE_BUILD_TYPE=Release -DATTN_WERROR=ON -DATTN_BLAS=OFF \
	      -DATTN_PYTHON=OFF -DATTN_CLI=OFF $(CMAKE_FLAGS)
	cmake --build build-noblas -j$(JOBS)
	cd build-noblas && ctest --output-on-failure -j$(JOBS)

bench:
	@tools/deps.sh test
	@$(MAKE) --no-print-directory build
	bash bench/run.sh $(BUILD)

# The scale-out table of docs/scale-out.md (libattn_mpi under mpirun, one host).
bench-mpi:
	@tools/deps.sh test
	@$(MAKE) --no-print-directory build
	bash bench/mpi_scale.sh $(BUILD)

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-noblas build-deb

# ---- Packages (README "Install") ---------------------------------------------
.PHONY: deb test-deb test-pip

# Debian packages into build-deb/debs/ (library, -dev, attn command, python3 module).
deb:
	@tools/deps.sh build
	bash tools/deb/build.sh build-deb

# Build the packages, apt-get install them, use them as a user would, remove them (root).
test-deb:
	@tools/deps.sh test
	bash tests/deb_test.sh build-deb

# pip install . into a fresh venv (offline), the Python tests against it, pip wheel, pip uninstall.
test-pip:
	@tools/deps.sh test
	bash tests/pip_test.sh .

# ---- Reliability (docs/reliability.md) --------------------------------------
FUZZ_SECONDS ?= 60
FUZZ_BUILD   ?= build-fuzz
TSAN_BUILD   ?= build-tsan
TSAN_FLAGS    = -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATTN_PYTHON=OFF \
                -DATTN_CLI=OFF -DCMAKE_C_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" \
                -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread

.PHONY: fuzz fuzz-smoke test-tsan test-valgrind

# valgrind memcheck on the C tests of the main build: no invalid access, no
# definite or indirect leak. valgrind hides AVX-512 (and forcing it is
# SIGILL), so the kernels run as AVX2 and generic here.
VALGRIND_TESTS = test_sdpa test_modules test_kv test_faults test_fold test_edge test_threads test_flash test_kernels test_isa test_rope test_rmsnorm test_gqa test_kv_rope test_gemv test_loops test_dropout test_grads test_packed
test-valgrind: build
	@command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
	cd $(BUILD) && for t in $(VALGRIND_TESTS); do \
	    ATTN_ISA=avx2 ATTN_TEST_QUICK=1 valgrind -q --leak-check=full \
	        --errors-for-leak-kinds=definite,indirect --error-exitcode=99 ./tests/$$t || exit 1; done

# libFuzzer targets (clang, ASan + UBSan): replay fuzz/regressions/, then
# fuzz each target for FUZZ_SECONDS seconds.
fuzz:
	FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_JOBS=$(JOBS) bash fuzz/run.sh $(FUZZ_SECONDS)

# About a minute in total: the regression inputs, then 15 s per target.
fuzz-smoke:
	FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_JOBS=$(JOBS) bash fuzz/run.sh 15

# ThreadSanitizer on test_threads, with clang: OpenMP off (only the callers'
# pthreads), then clang's libomp with its Archer tool so TSan understands
# OpenMP's barriers (GCC's libgomp gives false reports).
test-tsan:
	cmake -S . -B $(TSAN_BUILD) $(TSAN_FLAGS) -DATTN_OPENMP=OFF
	cmake --build $(TSAN_BUILD) -j$(JOBS) --target test_threads
	cd $(TSAN_BUILD) && ATTN_TEST_QUICK=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	    ./tests/test_threads
	cmake -S . -B $(TSAN_BUILD)-omp $(TSAN_FLAGS) -DATTN_OPENMP=ON
	cmake --build $(TSAN_BUILD)-omp -j$(JOBS) --target test_threads
	cd $(TSAN_BUILD)-omp && ATTN_TEST_QUICK=1 \
	    OMP_TOOL_LIBRARIES=$$(ls /usr/lib/llvm-*/lib/libarcher.so | tail -1) \
	    TSAN_OPTIONS=halt_on_error=1:ignore_noninstrumented_modules=1 ./tests/test_threads
