# Sourced by the benchmarks of the tiny V4 checkpoint: FP4KIT (the binary, $1), WORK (a work directory,
# $2 or a fresh one), DATA (tests/data), SRC (the tiny checkpoint) and CALIB (its routed-expert amax).
set -euo pipefail
FP4KIT=${1:-build/fp4kit}
WORK=${2:-$(mktemp -d)}
DATA=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/data" && pwd)
SRC=$DATA/dsv4-tiny
CALIB=$DATA/calib/oracle/amax_routed.safetensors
