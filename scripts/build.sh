#!/usr/bin/env bash
# colcon build of the package into build/ and install/. Skips work when nothing that affects the
# install tree changed since the last successful build.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=install/.build-stamp
want=$( (cat CMakeLists.txt package.xml; find $(ls -d msg srv launch config models worlds scripts src 2>/dev/null) -type f \
         ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)
if [[ -f $stamp && "$(cat $stamp)" == "$want" ]]; then
  echo "build: install/ is up to date"
  exit 0
fi
mkdir -p log
source .venv/bin/activate
export AMENT_PREFIX_PATH="$PWD/.venv"
export CMAKE_PREFIX_PATH="$PWD/.venv"
export LD_LIBRARY_PATH="$PWD/.venv/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
colcon --log-base log build --symlink-install --base-paths . --build-base build --install-base install \
  --event-handlers console_direct- --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PWD/.venv/bin/python" \
  -DPython3_NumPy_INCLUDE_DIR="$(ls -d ${XDG_CACHE_HOME:-$HOME/.cache}/embodied_wm/numpy-$(.venv/bin/python -c "import numpy; print(numpy.__version__)")-include)" -DCMAKE_BUILD_TYPE=Release -Wno-dev > log/colcon-build.txt 2>&1 || { mkdir -p log; tail -40 log/colcon-build.txt; echo "build: colcon failed (full log: $PWD/log/colcon-build.txt)"; exit 1; }
echo "$want" > $stamp
echo "build: installed into $PWD/install"
