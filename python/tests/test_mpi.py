"""attn.mpi: `import attn` loads neither mpi4py nor MPI; attn.mpi.sdpa under
mpirun -np 1..3 (mpi_worker.py: bit-identity with attn.sdpa, positions,
collective errors from C checks and from refused Python arguments, ring)."""
import os
import pathlib
import subprocess
import sys

import pytest

# A pip wheel carries no MPI module (attn.mpi comes with the CMake and Debian
# builds, where libattn_mpi is built): there these tests are skipped, and say so.
pytest.importorskip("attn._attn_mpi", reason="this attn was built without libattn_mpi "
                    "(a pip wheel has no attn.mpi; use the CMake or Debian build)")

HERE = pathlib.Path(__file__).resolve().parent
RUN = HERE.parent.parent / "mpi" / "run_mpi.sh"


def test_import_attn_does_not_import_mpi():
    code = ("import sys, attn; assert 'mpi4py' not in sys.modules, 'mpi4py'; "
            "assert not any(m.startswith('attn._attn_mpi') for m in sys.modules); "
            "import attn.mpi; assert 'mpi4py' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))


@pytest.mark.parametrize("np_", [1, 2, 3])
def test_mpi_worker(np_):
    r = subprocess.run(["bash", str(RUN), str(np_), "120", sys.executable,
                        str(HERE / "mpi_worker.py")], capture_output=True, text=True,
                       env=dict(os.environ))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mpi_worker: %d ranks ok" % np_ in r.stdout
