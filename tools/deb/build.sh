#!/usr/bin/env bash
# tools/deb/build.sh [BUILD_DIR] - `make deb`: Debian packages of attn.
# A Release build configured for /usr is installed into a staging folder,
# whose files are then dealt out to the packages below; a file that no
# package takes is an error, so nothing installed is silently left out.
#   libattn<SOVER>       the shared library (SONAME libattn.so.<SOVER>)
#   libattn-dev          header, libattn.so link, libattn.a, pkg-config, CMake package
#   attn-tools           the attn command and its man page
#   python3-attn         the Python module for Debian's python3 (C library linked in)
#   libattn-mpi<SOVER>, libattn-mpi-dev   libattn_mpi, when MPI was found
# Dependencies on other packages come from dpkg-shlibdeps.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(mkdir -p "${1:-$src/build-deb}" && cd "${1:-$src/build-deb}" && pwd)
out=$build/debs
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
libdir=usr/lib/$multiarch
pydir=usr/lib/python3/dist-packages

cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DATTN_WERROR=ON \
      -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_LIBDIR="lib/$multiarch" \
      -DPython3_EXECUTABLE=/usr/bin/python3 -DATTN_PYTHON_INSTALL_DIR="/$pydir" >/dev/null
cmake --build "$build" -j"${JOBS:-2}" >/dev/null
stage=$build/stage
rm -rf "$stage" "$out" "$build/pkgs"
mkdir -p "$out"
DESTDIR=$stage cmake --install "$build" >/dev/null
DESTDIR=$stage cmake --install "$build" --component python >/dev/null
mkdir -p "$stage/usr/share/man/man1"
bash "$src/tools/deb/man.sh" "$build/tools/attn/attn" | gzip -9n > "$stage/usr/share/man/man1/attn.1.gz"

version=$("$build/tools/attn/attn" --version | head -n1 | awk '{print $2}')
soname() { objdump -p "$1" | awk '/SONAME/ {print $2}'; }
sover=$(soname "$stage/$libdir/libattn.so" | sed 's/^libattn\.so\.//')

# take PKG PATH...: move staged paths (globs relative to the stage) into PKG.
take() {
  local pkg=$1; shift
  for pat in "$@"; do
    local found=0
    for p in $(cd "$stage" && compgen -G "$pat" || true); do
      mkdir -p "$build/pkgs/$pkg/$(dirname "$p")"
      mv "$stage/$p" "$build/pkgs/$pkg/$p"
      found=1
    done
    [ $found = 1 ] || { echo "deb: nothing staged matches $pat (for $pkg)" >&2; exit 1; }
  done
}
take "libattn$sover" "$libdir/libattn.so.*"
take libattn-dev usr/include/attn.h "$libdir/libattn.so" "$libdir/libattn.a" \
     "$libdir/pkgconfig/attn.pc" "$libdir/cmake/attn"
take attn-tools usr/bin/attn usr/share/man/man1/attn.1.gz
take python3-attn "$pydir/attn"
have_mpi=0
if compgen -G "$stage/$libdir/libattn_mpi.so.*" >/dev/null; then
  have_mpi=1
  take "libattn-mpi$sover" "$libdir/libattn_mpi.so.*"
  take libattn-mpi-dev usr/include/attn_mpi.h "$libdir/libattn_mpi.so"
  compgen -G "$stage/$libdir/pkgconfig/attn_mpi.pc" >/dev/null &&
    take libattn-mpi-dev "$libdir/pkgconfig/attn_mpi.pc"
fi
left=$(cd "$stage" && find . -type f -o -type l)
[ -z "$left" ] || { echo "deb: installed files no package takes:" >&2; echo "$left" >&2; exit 1; }

# dpkg-shlibdeps wants a debian/ folder; our own libraries resolve through shlibs.local.
work=$build/pkgs
mkdir -p "$work/debian"
printf 'Source: attn\n\nPackage: attn\nArchitecture: any\n' > "$work/debian/control"
printf 'libattn %s libattn%s (>= %s)\n' "$sover" "$sover" "$version" > "$work/debian/shlibs.local"
[ $have_mpi = 1 ] &&
  printf 'libattn_mpi %s libattn-mpi%s (>= %s)\n' "$sover" "$sover" "$version" >> "$work/debian/shlibs.local"
shlibdeps() { # PKG: the Depends of its ELF files
  local files
  files=$(find "$work/$1" -type f \( -name '*.so*' -o -path '*/bin/*' \) -exec sh -c 'file -b "$1" | grep -q ELF && echo "$1"' _ {} \;)
  [ -n "$files" ] || return 0
  (cd "$work" && dpkg-shlibdeps -O -l"$work/libattn$sover/$libdir" ${have_mpi:+-l"$work/libattn-mpi$sover/$libdir"} \
     $files 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
}
# control PKG SECTION DESCRIPTION [EXTRA_DEPENDS]
control() {
  local pkg=$1 section=$2 desc=$3 extra=${4:-} deps
  deps=$(shlibdeps "$pkg")
  [ -n "$extra" ] && deps=${deps:+$deps, }$extra
  mkdir -p "$work/$pkg/DEBIAN"
  {
    echo "Package: $pkg"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Section: $section"
    echo "Priority: optional"
    echo "Maintainer: attn developers <attn@localhost>"
    echo "Installed-Size: $(du -sk "$work/$pkg" | cut -f1)"
    [ -n "$deps" ] && echo "Depends: $deps"
    echo "Description: $desc"
    echo " attn computes transformer attention on the CPU, exactly and fast."
  } > "$work/$pkg/DEBIAN/control"
  case $pkg in libattn[0-9]*|libattn-mpi[0-9]*)
    printf 'activate-noawait ldconfig\n' > "$work/$pkg/DEBIAN/triggers" ;;
  esac
  dpkg-deb --root-owner-group -Zxz --build "$work/$pkg" "$out/${pkg}_${version}_${arch}.deb" >/dev/null
}
control "libattn$sover" libs "transformer attention on the CPU (shared library)"
# The static library links the OpenBLAS the build chose (ATTN_BLAS_LINK).
case $(sed -n 's/^ATTN_BLAS_LINK:[A-Z]*=//p' "$build/CMakeCache.txt") in
  private) blas_dev=libopenblas-pthread-dev ;;
  openmp) blas_dev=libopenblas-openmp-dev ;;
  *) blas_dev=libopenblas-dev ;;
esac
control libattn-dev libdevel "transformer attention on the CPU (development files)" \
        "libattn$sover (= $version), $blas_dev"
control attn-tools science "transformer attention on the CPU (the attn command)"
control python3-attn python "transformer attention on the CPU (Python/NumPy module)" \
        "python3, python3-numpy"
if [ $have_mpi = 1 ]; then
  control "libattn-mpi$sover" libs "attention across machines over MPI (shared library)"
  control libattn-mpi-dev libdevel "attention across machines over MPI (development files)" \
          "libattn-mpi$sover (= $version), libattn-dev (= $version), libopenmpi-dev"
fi
ls "$out"
