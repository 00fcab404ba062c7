#!/usr/bin/env bash
# Install the way a user does and use the result the way the README says:
# no -rpath, no LD_LIBRARY_PATH beyond what the README documents.
#  1. A private prefix: header with extern "C", SONAME, only attn_* exported,
#     pkg-config; the installed `attn` runs with no environment (it finds the
#     library beside it); the README's C example, built with the README's
#     command, runs with LD_LIBRARY_PATH as the README says for such prefixes.
#  2. The system prefix of `make install` (/usr/local), inside a private mount
#     namespace (a tmpfs over /usr/local, an overlay over /etc for the
#     dynamic linker's cache), so this machine is untouched: the README's
#     example, built and run exactly as the README says, and `attn` from PATH.
#     Needs root (unshare); without it this part is reported as not run.
set -euo pipefail
build=$1 src=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
unset LD_LIBRARY_PATH
cmake --install "$build" --prefix "$prefix" >/dev/null
lib=$(ls -d "$prefix"/lib*/ | head -n1)
lib=${lib%/}
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
if [ -x "$prefix/bin/attn" ]; then
  env -u LD_LIBRARY_PATH "$prefix/bin/attn" --version | grep -q attn
fi
(cd "$prefix" && PKG_CONFIG_PATH="$lib/pkgconfig" \
   sh -c 'cc -std=c11 example.c $(pkg-config --cflags --libs attn) -o example' &&
   LD_LIBRARY_PATH="$lib" ./example | grep -q '^out\[3\]')
passed=1

# 2. /usr/local, as `make install` and the README do it.
system_part() {
  mount -t tmpfs none /usr/local
  local ov; ov=$(mktemp -d)
  mkdir "$ov/u" "$ov/w"
  mount -t overlay overlay -o "lowerdir=/etc,upperdir=$ov/u,workdir=$ov/w" /etc
  cmake --install "$build" --prefix /usr/local >/dev/null
  cd "$prefix"
  cc -std=c11 example.c $(pkg-config --cflags --libs attn) -o example-system && ./example-system | grep -q '^out\[3\]'
  if [ -x /usr/local/bin/attn ]; then PATH=/usr/local/bin:$PATH attn --version | grep -q attn; fi
}
if [ "$(id -u)" = 0 ] && unshare --mount --propagation private true 2>/dev/null; then
  export -f system_part
  export build prefix
  unshare --mount --propagation private bash -euo pipefail -c system_part
  echo "install test: $((passed + 1)) passed, 0 failed"
else
  echo "install test: $passed passed, 0 failed, 1 not run (the /usr/local part needs root for unshare --mount)"
fi
