#!/usr/bin/env bash
# Install into a temporary prefix, then build the README example the way a
# user would: pkg-config for flags, the shared library with its SONAME.
set -euo pipefail
build=$1 src=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
lib=$(ls -d "$prefix"/lib*/ | head -n1)
export PKG_CONFIG_PATH="$lib/pkgconfig"
test -f "$prefix/include/attn.h"
grep -q 'extern "C"' "$prefix/include/attn.h"
soname=$(objdump -p "$lib/libattn.so" | awk '/SONAME/ {print $2}')
[ "$soname" = "libattn.so.0.2" ] || { echo "SONAME is '$soname', want libattn.so.0.2 (0.x: the minor version is in the SONAME)"; exit 1; }
# Only the public API is exported.
if nm -D --defined-only "$lib/libattn.so" | awk '{print $3}' | grep -v '^attn_[a-z]' | grep -q .; then
  echo "internal symbols exported:"; nm -D --defined-only "$lib/libattn.so" | grep -v ' attn_[a-z]'; exit 1
fi
# The README's C block, compiled as pasted; it must also equal examples/readme_example.c.
awk '/^```c$/ {on=1; next} /^```$/ {on=0} on' "$src/README.md" > "$prefix/example.c"
diff -u "$src/examples/readme_example.c" "$prefix/example.c"
cc -std=c11 -Wall -Werror -o "$prefix/example" "$prefix/example.c" \
   $(pkg-config --cflags --libs attn) -Wl,-rpath,"$lib"
"$prefix/example" | grep -q '^out\[3\]'
echo "install test: 1 passed, 0 failed"
