#!/usr/bin/env bash
# `make test-deb`: the Debian packages as a user meets them. Builds them,
# installs them with apt-get (as root), then, with no rpath and no
# LD_LIBRARY_PATH: builds and runs the README's C example with pkg-config and
# with CMake's find_package, runs `attn --version` and reads its man page,
# imports the Python module with Debian's python3 from another folder; then
# removes every package and checks that their files are gone.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(mkdir -p "${1:-$src/build-deb}" && cd "${1:-$src/build-deb}" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "test-deb installs packages: run it as root"; exit 1; }
bash "$src/tools/deb/build.sh" "$build"
debs=("$build"/debs/*.deb)
pkgs=()
for d in "${debs[@]}"; do pkgs+=("$(dpkg-deb -f "$d" Package)"); done
work=$(mktemp -d)
cleanup() {
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 remove -y -q "${pkgs[@]}" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${debs[@]}" >"$work/apt.log" 2>&1 ||
  { cat "$work/apt.log"; exit 1; }
unset LD_LIBRARY_PATH PYTHONPATH
passed=0
cd "$work"
awk '/^```c$/ {on=1; next} /^```$/ {on=0} on' "$src/README.md" > example.c
cc -std=c11 -Wall -Werror -o example example.c $(pkg-config --cflags --libs attn)
if objdump -p example | grep -q 'R.*PATH'; then echo "example has an rpath"; exit 1; fi
./example | grep -q '^out\[3\]' && passed=$((passed + 1))
cmake -S "$src/tests/consumer" -B consumer -DATTN_EXAMPLE_C="$work/example.c" >/dev/null
cmake --build consumer -j2 >/dev/null
./consumer/readme_shared | grep -q '^out\[3\]' && ./consumer/cxx_consumer | grep -q 'softmax ok' &&
  passed=$((passed + 1))
attn --version | tee version.txt | head -n1
grep -q '^attn ' version.txt && passed=$((passed + 1))
man -w attn >/dev/null && zcat "$(man -w attn)" | grep -q '^\.SH "attn run"' && passed=$((passed + 1))
/usr/bin/python3 -c 'import attn, numpy as np; assert attn.__file__.startswith("/usr/lib/python3/dist-packages/"), attn.__file__; print("python:", attn.__file__, attn.softmax_lastdim(np.zeros((1, 2), np.float32)))'
passed=$((passed + 1))
apt-get -o DPkg::Lock::Timeout=600 remove -y -q "${pkgs[@]}" >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; exit 1; }
for f in /usr/bin/attn /usr/include/attn.h; do
  [ ! -e "$f" ] || { echo "$f left after apt-get remove"; exit 1; }
done
if /usr/bin/python3 -c 'import attn' 2>/dev/null; then echo "attn still importable after remove"; exit 1; fi
passed=$((passed + 1))
echo "deb test: $passed passed, 0 failed"
