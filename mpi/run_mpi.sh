#!/usr/bin/env bash
# mpi/run_mpi.sh NP SECONDS PROGRAM [ARGS...] - run PROGRAM on NP ranks of this
# machine, bounded by SECONDS (a hang fails instead of blocking CI):
#   oversubscribed (more ranks than cores), ranks yield when idle (ATTN_MPI_YIELD=0:
#   they spin, right when ranks x threads <= cores, as bench/mpi_scale.sh does), no binding
#   (rank x threads may exceed a core), OpenMP threads wait passively,
#   the shared-memory transport (vader) without its single-copy mechanism
#   (CMA/ptrace is often denied in containers; ATTN_MPI_SINGLE_COPY=cma
#   turns it back on where it works, as bench/mpi_scale.sh does), allowed as root.
set -euo pipefail
np=$1 secs=$2
shift 2
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec timeout --kill-after=5 "$secs" mpirun -np "$np" --oversubscribe --bind-to none \
    --mca mpi_yield_when_idle "${ATTN_MPI_YIELD:-1}" --mca btl self,vader \
    --mca btl_vader_single_copy_mechanism "${ATTN_MPI_SINGLE_COPY:-none}" \
    "$@"
