#!/usr/bin/env bash
# The installed C library as a CMake or pkg-config user meets it: install into
# a temporary prefix, then
#   - a CMake project finds it with find_package(attn CONFIG) and builds the
#     README example against attn::attn and attn::attn_static, and a C++
#     program against the header;
#   - `pkg-config --static` links the README example with libattn.a.
# Programs run with LD_LIBRARY_PATH naming the prefix (it is not a system
# directory); the static ones must not need libattn.so at all.
set -euo pipefail
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
lib=$(ls -d "$prefix"/lib*/ | head -n1)
test -f "$lib/libattn.a" || { echo "no static library in $lib"; exit 1; }
test -f "$lib/cmake/attn/attnConfig.cmake" || { echo "no attnConfig.cmake"; exit 1; }
passed=0

# CMake consumer (C and C++).
cmake -S "$src/tests/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
      -DATTN_EXAMPLE_C="$src/examples/readme_example.c" >/dev/null
cmake --build "$work/consumer" -j2 >/dev/null
LD_LIBRARY_PATH=$lib "$work/consumer/readme_shared" | grep -q '^out\[3\]'
passed=$((passed + 1))
for exe in readme_static cxx_consumer; do
  if objdump -p "$work/consumer/$exe" | grep -q 'NEEDED.*libattn'; then
    echo "$exe needs libattn.so although it links attn::attn_static"; exit 1
  fi
done
"$work/consumer/readme_static" | grep -q '^out\[3\]'
"$work/consumer/cxx_consumer" | grep -q 'softmax ok'
passed=$((passed + 2))

# pkg-config --static: libattn.a plus its private dependencies.
export PKG_CONFIG_PATH="$lib/pkgconfig"
cc -std=c11 -Wall -Werror -o "$work/static_pc" "$src/examples/readme_example.c" \
   $(pkg-config --cflags attn) -Wl,-Bstatic -lattn -Wl,-Bdynamic \
   $(pkg-config --static --libs attn | sed 's/-lattn\b//')
if objdump -p "$work/static_pc" | grep -q 'NEEDED.*libattn'; then
  echo "the pkg-config --static build needs libattn.so"; exit 1
fi
"$work/static_pc" | grep -q '^out\[3\]'
passed=$((passed + 1))
echo "package test: $passed passed, 0 failed"
