# Source me: `source env.sh` gives a shell where `embodied-wm` and the node executables run.
_ewm_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
if [[ ! -x "$_ewm_root/.venv/bin/python" ]]; then
  echo "env.sh: no .venv yet; run 'make setup' (or 'make build') first" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
source "$_ewm_root/.venv/bin/activate"
# The wheels install a ROS prefix into the venv; generated typesupport libraries need LD_LIBRARY_PATH.
export AMENT_PREFIX_PATH="$_ewm_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export LD_LIBRARY_PATH="$_ewm_root/.venv/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [[ -f "$_ewm_root/install/setup.bash" ]]; then
  # shellcheck disable=SC1091
  source "$_ewm_root/install/setup.bash"
fi
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export PATH="$_ewm_root/install/embodied_wm/lib/embodied_wm:$PATH"
unset _ewm_root
