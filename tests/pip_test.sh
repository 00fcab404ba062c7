#!/usr/bin/env bash
# The Python binding as a pip user meets it, offline: a virtual environment
# over Debian's NumPy, `pip install .`, the Python tests run against the
# installed package from another folder, `pip wheel .`, `pip uninstall`.
set -euo pipefail
src=$(cd "${1:-.}" && pwd)
python=${PYTHON:-/usr/bin/python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Build from a copy of the tracked files, so a developer's build/ is not read.
mkdir -p "$work/tree" && (cd "$src" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work/tree")
"$python" -m venv --system-site-packages "$work/venv"
pip=("$work/venv/bin/pip" --disable-pip-version-check --no-input)
"${pip[@]}" install -q --no-build-isolation --no-index "$work/tree"
"${pip[@]}" show attn > "$work/show.txt"; grep "^Name: attn" "$work/show.txt"
cd "$work"   # another folder: nothing of the source tree on sys.path
"$work/venv/bin/python" -c 'import attn, sys; p = attn.__file__; assert "/venv/" in p, p; print("installed:", p)'
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider "$work/tree/python/tests"
"${pip[@]}" wheel -q --no-build-isolation --no-index --no-deps -w "$work/dist" "$work/tree"
ls "$work"/dist/attn-*.whl >/dev/null
"${pip[@]}" uninstall -y -q attn
if "$work/venv/bin/python" -c 'import attn' 2>/dev/null; then
  echo "attn still importable after pip uninstall"; exit 1
fi
echo "pip test: 4 passed, 0 failed"
