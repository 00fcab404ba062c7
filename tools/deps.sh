#!/usr/bin/env bash
# tools/deps.sh build|test - make sure the Debian packages attn needs are installed.
#   build: compiler side (OpenBLAS, zlib, Python headers and NumPy for the extension)
#   test:  build + pytest and PyTorch (independent references) + clang runtimes for
#          sanitizer and fuzzing builds, valgrind
# As root, missing packages are installed with apt-get (waiting on the dpkg lock);
# otherwise the one command to run is printed and the script fails.
set -euo pipefail
build_pkgs=(cmake gcc make pkg-config libopenblas-dev libopenblas0-pthread libopenblas-pthread-dev zlib1g-dev libpng-dev
            python3-dev python3-numpy)
test_pkgs=(python3-pytest python3-torch clang libclang-rt-14-dev libomp-14-dev valgrind
           python3-venv python3-pip python3-setuptools python3-wheel dpkg-dev file man-db g++
           python3-matplotlib
           openmpi-bin libopenmpi-dev python3-mpi4py)
case "${1:-test}" in
  build) want=("${build_pkgs[@]}") ;;
  test) want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "attn: missing Debian packages: ${missing[*]}" >&2
  echo "run as root:  apt-get update && $cmd" >&2
  exit 1
fi
echo "attn: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -q
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
