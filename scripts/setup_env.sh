#!/usr/bin/env bash
# Create .venv with ROS 2 Jazzy wheels, torch and the project's dependencies. Idempotent: a stamp file
# keyed by the requirements' content makes a second run on a ready tree take a second.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.setup-stamp
want=$(cat requirements/*.txt setup.cfg scripts/setup_env.sh | sha256sum | cut -c1-16)
if [[ -f $STAMP && "$(cat $STAMP)" == "$want" ]]; then
  echo "setup: $VENV is up to date"
  exit 0
fi
# System libraries: EGL/OSMesa for MuJoCo offscreen rendering, cmake/g++ for colcon (Debian 12).
need_apt=()
for pkg in libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 cmake g++ ; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  if [[ $(id -u) == 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  echo "setup: installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
[[ -x $VENV/bin/python ]] || $PY -m venv $VENV
PIP="$VENV/bin/pip --disable-pip-version-check -q"
$PIP install --upgrade pip >/dev/null
# torch first, pinned: the machine's local CPU wheel; a later unpinned requirement must not pull CUDA builds.
$VENV/bin/python -c "import torch" 2>/dev/null || $PIP install torch==2.13.0
$PIP install -r requirements/ros.txt -r requirements/ros-build.txt -r requirements/base.txt -r requirements/dev.txt \
  -c requirements/constraints.txt 2>&1 | grep -v "is ignored" || true
$VENV/bin/python -c "import rclpy, torch, mujoco, onnxruntime, rosbags" # fail loudly if anything is missing
$PIP install --no-deps -e . >/dev/null
# The Jazzy wheels hard-code the wheel builder's Python include dirs in their CMake exports; point them at ours.
pyinc=$($VENV/bin/python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
# CMake refuses exported include dirs inside the source tree (where .venv lives), so numpy's headers are
# copied to a cache directory outside it.
npsrc=$($VENV/bin/python -c "import numpy; print(numpy.get_include())")
npver=$($VENV/bin/python -c "import numpy; print(numpy.__version__)")
npinc="${XDG_CACHE_HOME:-$HOME/.cache}/embodied_wm/numpy-$npver-include"
if [[ ! -d $npinc ]]; then mkdir -p "$(dirname "$npinc")"; cp -r "$npsrc" "$npinc.tmp" && mv "$npinc.tmp" "$npinc"; fi
for f in $VENV/share/*/cmake/export_*__rosidl_generator_pyExport.cmake; do
  sed -i -E "s#/opt/python/cp311-cp311/include/python3\.11#${pyinc}#g; s#[^;\"]*/site-packages/numpy/_core/include#${npinc}#g" "$f"
done
echo "$want" > $STAMP
echo "setup: ready in $(pwd)/$VENV"
