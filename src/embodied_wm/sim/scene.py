"""MuJoCo tabletop scene: a 3-DoF slide finger with a 5x5 taxel fingertip, a few objects, a camera.

The scene is generated as MJCF text from a :class:`SceneSpec`, so per-episode domain randomization
(object set, sizes, masses, friction, colours, lights, camera pose) is a new spec rather than run-time
edits of a compiled model: masses are set in the XML, so no ``mj_setConst`` is needed.

Frames and conventions
- World: z up, table top at z = 0. The finger's three slide joints move the fingertip sphere's
  centre in world x, y, z (joint names ``finger_x``, ``finger_y``, ``finger_z``; positions are metres).
- Taxels: 25 box sites under the fingertip sphere, tiling its xy footprint; row 0 is the row nearest
  the fingertip frame's +y axis, column 0 the one nearest -x. Each is a MuJoCo ``touch`` sensor
  (sum of normal contact force inside the site volume, N). A contact under the tip lands in the
  centre taxels, a push from the side in an edge row/column, so the grid encodes contact direction.
- Camera: a fixed RGB camera looking down at the table at an angle. Its optical frame follows REP 103
  (x right, y down, z forward); MuJoCo's camera frame is x right, y up, -z forward.

Length (~600 lines): the MJCF generator, the scene sampler and the simulator wrapper share the scene's
constants and conventions above.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

# Offscreen rendering without a display; EGL is the verified backend here (DESIGN.md).
os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco

from embodied_wm.errors import ConfigError

#: Physics step (s). 2 ms keeps fingertip contacts stable and gives audio 32 samples per step.
PHYSICS_DT = 0.002
TIP_RADIUS = 0.012
TAXEL_ROWS = 5
TAXEL_COLS = 5
#: Joint ranges (m) of the fingertip centre.
JOINT_RANGE = {"finger_x": (-0.22, 0.22), "finger_y": (-0.22, 0.22), "finger_z": (0.0, 0.25)}
JOINT_NAMES = ("finger_x", "finger_y", "finger_z")
#: The position target may lead the joint by at most this much (m): bounds the push force to
#: kp * lead and stops the target winding up while the finger is blocked.
MAX_TARGET_LEAD = 0.02
ACTUATOR_KP = 600.0
ACTUATOR_KV = 25.0
#: Nominal camera position (0, -CAMERA_BACK, CAMERA_HEIGHT) looking at the origin: 45 degrees down,
#: close enough that the spawn square fills about 60 % of the image width.
CAMERA_BACK = 0.34
CAMERA_HEIGHT = 0.34
#: Half extent of the objects' spawn square (m).
SPAWN_HALF = 0.12

#: Segmentation labels (mono8): 0 background, 1 table, 2 finger, FIRST_OBJECT_LABEL + k for object k.
LABEL_BACKGROUND = 0
LABEL_TABLE = 1
LABEL_FINGER = 2
FIRST_OBJECT_LABEL = 3

SHAPES = ("box", "cylinder", "sphere", "capsule")


@dataclass(frozen=True)
class Material:
    """Physical and acoustic properties. Modes are (frequency Hz, decay 1/s, amplitude)."""

    name: str
    density: float  # kg/m^3
    friction: float  # sliding friction coefficient
    rgba: tuple[float, float, float, float]
    modes: tuple[tuple[float, float, float], ...]
    #: Gain of broadband friction noise per (m/s * N) of slip, and its low-pass cutoff (Hz):
    #: rough/soft materials hiss darker than hard ones.
    roughness: float
    noise_cutoff_hz: float


MATERIALS: dict[str, Material] = {
    "wood": Material(
        "wood",
        700.0,
        0.55,
        (0.62, 0.43, 0.23, 1.0),
        ((420.0, 45.0, 1.0), (980.0, 70.0, 0.6), (1850.0, 110.0, 0.3)),
        1.0,
        2500.0,
    ),
    "metal": Material(
        "metal",
        7800.0,
        0.35,
        (0.70, 0.72, 0.76, 1.0),
        ((1250.0, 30.0, 1.0), (3370.0, 45.0, 0.7), (5810.0, 60.0, 0.4)),
        0.6,
        6000.0,
    ),
    "plastic": Material(
        "plastic",
        1100.0,
        0.45,
        (0.15, 0.45, 0.85, 1.0),
        ((760.0, 60.0, 1.0), (2150.0, 90.0, 0.5), (4100.0, 140.0, 0.25)),
        0.8,
        4000.0,
    ),
    "rubber": Material(
        "rubber", 1300.0, 1.0, (0.12, 0.12, 0.12, 1.0), ((180.0, 140.0, 1.0), (430.0, 220.0, 0.4)), 1.6, 900.0
    ),
    # The table and the finger have their own voices so finger-table and finger-object taps differ.
    "table": Material(
        "table",
        700.0,
        0.5,
        (0.80, 0.74, 0.62, 1.0),
        ((95.0, 60.0, 1.0), (240.0, 80.0, 0.7), (610.0, 110.0, 0.4)),
        1.0,
        2000.0,
    ),
    "finger": Material(
        "finger",
        2700.0,
        0.4,
        (0.85, 0.25, 0.2, 1.0),
        ((2900.0, 90.0, 0.5), (6100.0, 160.0, 0.3)),
        0.5,
        5000.0,
    ),
}
OBJECT_MATERIALS = ("wood", "metal", "plastic", "rubber")
#: Order of acoustic material banks (index used by audio synthesis).
MATERIAL_ORDER: tuple[str, ...] = tuple(MATERIALS)


@dataclass(frozen=True)
class ObjectSpec:
    """One free object. size: MuJoCo geom size (box: half extents; cylinder/capsule: radius, half length;
    sphere: radius). Capsules lie on their side (they roll when pushed)."""

    shape: str
    material: str
    size: tuple[float, ...]
    pos: tuple[float, float]
    yaw: float
    mass: float
    friction: float
    rgba: tuple[float, float, float, float]

    @property
    def half_height(self) -> float:
        if self.shape == "box":
            return self.size[2]
        if self.shape == "cylinder":
            return self.size[1]
        return self.size[0]  # sphere radius, lying capsule radius

    @property
    def footprint_radius(self) -> float:
        """Radius of a circle around the object's xy footprint (m)."""
        if self.shape == "box":
            return math.hypot(self.size[0], self.size[1])
        if self.shape == "capsule":
            return self.size[0] + self.size[1]
        return self.size[0]


@dataclass(frozen=True)
class CameraSpec:
    pos: tuple[float, float, float]
    target: tuple[float, float, float]
    fovy_deg: float


@dataclass(frozen=True)
class SceneSpec:
    objects: tuple[ObjectSpec, ...]
    camera: CameraSpec
    light_pos: tuple[float, float, float]
    light_diffuse: float
    finger_start: tuple[float, float, float]
    table_rgba: tuple[float, float, float, float] = MATERIALS["table"].rgba
    extras: dict[str, float] = field(default_factory=dict)


def _volume(shape: str, size: tuple[float, ...]) -> float:
    if shape == "box":
        return 8.0 * size[0] * size[1] * size[2]
    if shape == "cylinder":
        return math.pi * size[0] ** 2 * 2.0 * size[1]
    if shape == "sphere":
        return 4.0 / 3.0 * math.pi * size[0] ** 3
    if shape == "capsule":
        return math.pi * size[0] ** 2 * 2.0 * size[1] + 4.0 / 3.0 * math.pi * size[0] ** 3
    raise ConfigError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _default_objects() -> list[tuple[str, str, tuple[float, ...]]]:
    return [
        ("box", "wood", (0.025, 0.02, 0.02)),
        ("cylinder", "metal", (0.018, 0.02)),
        ("sphere", "rubber", (0.02,)),
        ("capsule", "plastic", (0.015, 0.025)),
    ]


#: Hidden-physics appearance: object colours are drawn from this palette independently of the material,
#: so a pixel cannot tell wood from metal; how the object slides and sounds still depends on it.
HIDDEN_PHYSICS_PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.55, 0.55, 0.58), (0.20, 0.60, 0.35), (0.75, 0.65, 0.20), (0.45, 0.30, 0.65),
)
#: Hidden-physics mass multiplier range (log-uniform) and friction range (uniform, any material).
HIDDEN_MASS_RANGE = (0.25, 4.0)
HIDDEN_FRICTION_RANGE = (0.15, 1.1)


def sample_scene(rng: np.random.Generator, randomize: bool = True, hidden_physics: bool = False) -> SceneSpec:
    """Draw one episode's scene. With ``randomize=False`` the scene is a fixed reference layout
    (the rng is not consumed), so episodes differ only through the policy.

    ``hidden_physics``: an object's colour no longer reveals its material (colours from
    ``HIDDEN_PHYSICS_PALETTE``, drawn from their own generator), masses span a 16x wider range and
    friction is drawn independently of the material, so how far a pushed object slides and how it
    sounds carry information the pixels do not."""
    if hidden_physics and not randomize:
        raise ValueError("hidden_physics needs a randomized scene")
    if not randomize:
        fixed_pos = [(-0.06, 0.05), (0.07, 0.06), (0.06, -0.06), (-0.07, -0.05)]
        objects = []
        for (shape, mat_name, fixed_size), pos in zip(_default_objects(), fixed_pos):
            mat = MATERIALS[mat_name]
            objects.append(
                ObjectSpec(
                    shape,
                    mat_name,
                    fixed_size,
                    pos,
                    0.0,
                    mat.density * _volume(shape, fixed_size),
                    mat.friction,
                    mat.rgba,
                )
            )
        return SceneSpec(
            tuple(objects),
            CameraSpec((0.0, -CAMERA_BACK, CAMERA_HEIGHT), (0.0, 0.0, 0.0), 45.0),
            (0.3, -0.3, 1.2),
            0.7,
            (0.0, -0.15, 0.12),
        )

    # Appearance has its own stream, spawned before any physics draw: colour is independent of material.
    look_rng = np.random.default_rng(rng.integers(0, 2**63)) if hidden_physics else rng
    n = int(rng.integers(3, 7))
    objects = []
    placed: list[tuple[float, float, float]] = []
    for _ in range(n):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        mat_name = OBJECT_MATERIALS[int(rng.integers(len(OBJECT_MATERIALS)))]
        mat = MATERIALS[mat_name]
        if shape == "box":
            size: tuple[float, ...] = tuple(float(v) for v in rng.uniform(0.014, 0.03, 3))
        elif shape == "cylinder":
            size = (float(rng.uniform(0.013, 0.025)), float(rng.uniform(0.012, 0.03)))
        elif shape == "sphere":
            size = (float(rng.uniform(0.013, 0.025)),)
        else:
            size = (float(rng.uniform(0.011, 0.018)), float(rng.uniform(0.015, 0.03)))
        spec_r = ObjectSpec(shape, mat_name, size, (0.0, 0.0), 0.0, 1.0, 1.0, mat.rgba).footprint_radius
        # Rejection sampling for non-overlapping footprints; give up on this object if crowded.
        for _attempt in range(50):
            xy = rng.uniform(-SPAWN_HALF, SPAWN_HALF, 2)
            if all(math.hypot(xy[0] - px, xy[1] - py) > spec_r + pr + 0.015 for px, py, pr in placed):
                break
        else:
            continue
        placed.append((float(xy[0]), float(xy[1]), spec_r))
        if hidden_physics:
            lo, hi = HIDDEN_MASS_RANGE
            mass = mat.density * _volume(shape, size) * float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            friction = float(rng.uniform(*HIDDEN_FRICTION_RANGE))
            base = HIDDEN_PHYSICS_PALETTE[int(look_rng.integers(len(HIDDEN_PHYSICS_PALETTE)))]
            rgb = np.clip(np.asarray(base) + look_rng.uniform(-0.08, 0.08, 3), 0.0, 1.0)
        else:
            mass = mat.density * _volume(shape, size) * float(rng.uniform(0.7, 1.3))
            friction = mat.friction * float(rng.uniform(0.8, 1.2))
            rgb = np.clip(np.asarray(mat.rgba[:3]) + rng.uniform(-0.12, 0.12, 3), 0.0, 1.0)
        objects.append(
            ObjectSpec(
                shape,
                mat_name,
                size,
                (float(xy[0]), float(xy[1])),
                float(rng.uniform(-math.pi, math.pi)),
                mass,
                friction,
                (float(rgb[0]), float(rgb[1]), float(rgb[2]), 1.0),
            )
        )
    jitter = rng.uniform(-0.02, 0.02, 3)
    cam = CameraSpec(
        (float(jitter[0]), float(-CAMERA_BACK + jitter[1]), float(CAMERA_HEIGHT + jitter[2])),
        tuple(float(v) for v in np.append(rng.uniform(-0.01, 0.01, 2), 0.0)),  # type: ignore[arg-type]
        float(rng.uniform(43.0, 47.0)),
    )
    light = (float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.5, 0.5)), float(rng.uniform(0.9, 1.5)))
    table_rgb = np.clip(np.asarray(MATERIALS["table"].rgba[:3]) + rng.uniform(-0.1, 0.1, 3), 0.0, 1.0)
    start = (float(rng.uniform(-0.1, 0.1)), float(rng.uniform(-0.17, -0.12)), float(rng.uniform(0.08, 0.14)))
    return SceneSpec(
        tuple(objects),
        cam,
        light,
        float(rng.uniform(0.45, 0.9)),
        start,
        (float(table_rgb[0]), float(table_rgb[1]), float(table_rgb[2]), 1.0),
    )


def camera_axes(cam: CameraSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MuJoCo camera x (right), y (up) and forward unit vectors in world coordinates."""
    fwd = np.subtract(cam.target, cam.pos).astype(float)
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    return right, up, fwd


def _f(*vals: float) -> str:
    return " ".join(f"{v:.6g}" for v in vals)


def build_mjcf(spec: SceneSpec, res: int) -> str:
    """MJCF text for ``spec`` with an offscreen buffer of ``res`` x ``res``."""
    right, up, _ = camera_axes(spec.camera)
    obj_xml = []
    for k, obj in enumerate(spec.objects):
        if obj.shape == "capsule":
            # Lying capsule: the geom's z axis (capsule axis) along the body's x axis.
            geom_orient = 'euler="0 90 0"'
        else:
            geom_orient = ""
        roll = obj.shape in ("sphere", "capsule", "cylinder")
        # Rolling shapes get rolling friction so they come to rest instead of rolling forever.
        contact = 'condim="6"' if roll else 'condim="4"'
        fr = _f(obj.friction, 0.005, 0.0005 if roll else 0.0001)
        z = obj.half_height + 0.0005
        yaw = math.degrees(obj.yaw)
        obj_xml.append(
            f'<body name="obj{k}" pos="{_f(obj.pos[0], obj.pos[1], z)}" euler="0 0 {yaw:.6g}">'
            f'<freejoint name="obj{k}_free"/>'
            f'<geom name="obj{k}" type="{obj.shape}" size="{_f(*obj.size)}" {geom_orient} '
            f'mass="{obj.mass:.6g}" friction="{fr}" {contact} rgba="{_f(*obj.rgba)}"/></body>'
        )
    # Taxel sites: a 5x5 grid tiling the tip's xy footprint, from slightly below the sphere's bottom
    # to a little above its equator so side contacts of a push are captured by the edge taxels.
    cell = 2.0 * TIP_RADIUS * 1.05 / TAXEL_COLS
    zlo, zhi = -1.3 * TIP_RADIUS, 0.3 * TIP_RADIUS
    sites, sensors = [], []
    for i in range(TAXEL_ROWS):
        for j in range(TAXEL_COLS):
            x = -TIP_RADIUS * 1.05 + (j + 0.5) * cell
            y = TIP_RADIUS * 1.05 - (i + 0.5) * cell
            sites.append(
                f'<site name="taxel_{i}_{j}" type="box" pos="{_f(x, y, (zlo + zhi) / 2)}" '
                f'size="{_f(cell / 2, cell / 2, (zhi - zlo) / 2)}" rgba="0 0 0 0" group="4"/>'
            )
            sensors.append(f'<touch name="touch_{i}_{j}" site="taxel_{i}_{j}"/>')
    acts = []
    for name in JOINT_NAMES:
        lo, hi = JOINT_RANGE[name]
        acts.append(
            f'<position name="act_{name}" joint="{name}" kp="{ACTUATOR_KP}" kv="{ACTUATOR_KV}" '
            f'ctrlrange="{_f(lo, hi)}" forcerange="-25 25"/>'
        )
    t = spec.table_rgba
    return f"""<mujoco model="embodied_wm_tabletop">
  <compiler angle="degree" autolimits="true"/>
  <option timestep="{PHYSICS_DT}" integrator="implicitfast" cone="elliptic"/>
  <visual>
    <global offwidth="{max(res, 64)}" offheight="{max(res, 64)}"/>
    <quality shadowsize="256" offsamples="0"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.2 0.2 0.2" specular="0 0 0"/>
    <map znear="0.05" zfar="4"/>
  </visual>
  <worldbody>
    <light name="key" pos="{_f(*spec.light_pos)}" dir="{_f(*(-np.asarray(spec.light_pos)))}"
           diffuse="{_f(spec.light_diffuse, spec.light_diffuse, spec.light_diffuse)}" castshadow="true"/>
    <geom name="table" type="box" pos="0 0 -0.02" size="0.75 0.75 0.02" rgba="{_f(*t)}"
          friction="{MATERIALS["table"].friction} 0.005 0.0001"/>
    <camera name="cam" pos="{_f(*spec.camera.pos)}" xyaxes="{_f(*right, *up)}"
            fovy="{spec.camera.fovy_deg:.6g}"/>
    <body name="finger" pos="0 0 0" gravcomp="1">
      <joint name="finger_x" type="slide" axis="1 0 0" range="{_f(*JOINT_RANGE["finger_x"])}" damping="2"/>
      <joint name="finger_y" type="slide" axis="0 1 0" range="{_f(*JOINT_RANGE["finger_y"])}" damping="2"/>
      <joint name="finger_z" type="slide" axis="0 0 1" range="{_f(*JOINT_RANGE["finger_z"])}" damping="2"/>
      <inertial pos="0 0 0.06" mass="0.2" diaginertia="1e-4 1e-4 1e-4"/>
      <geom name="shaft" type="capsule" fromto="0 0 {TIP_RADIUS + 0.004} 0 0 0.16" size="0.006"
            rgba="0.5 0.5 0.55 1" mass="0"/>
      <body name="fingertip" pos="0 0 0" gravcomp="1">
        <geom name="tip" type="sphere" size="{TIP_RADIUS}" rgba="{_f(*MATERIALS["finger"].rgba)}"
              friction="{MATERIALS["finger"].friction} 0.005 0.0001" condim="4" mass="0.02"/>
        <site name="wrist" pos="0 0 0" size="0.002" group="4"/>
        {"".join(sites)}
      </body>
    </body>
    {"".join(obj_xml)}
  </worldbody>
  <actuator>{"".join(acts)}</actuator>
  <sensor>
    {"".join(sensors)}
    <force name="wrist_force" site="wrist"/>
    <torque name="wrist_torque" site="wrist"/>
  </sensor>
</mujoco>
"""


def intrinsics(res: int, fovy_deg: float) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in pixels of a square ``res`` image with vertical field of view ``fovy_deg``.
    ROS puts integer pixel coordinates at pixel centres, so the principal point is (res - 1) / 2."""
    f = (res / 2.0) / math.tan(math.radians(fovy_deg) / 2.0)
    c = (res - 1) / 2.0
    return f, f, c, c


class TabletopSim:
    """A compiled scene plus the finger's velocity-to-position-target interface and sensor readout."""

    def __init__(self, spec: SceneSpec, res: int) -> None:
        if res < 8:
            raise ConfigError(f"resolution must be >= 8 px, got {res}")
        self.spec = spec
        self.res = res
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(spec, res))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.joint_qpos = np.array([m.jnt_qposadr[m.joint(n).id] for n in JOINT_NAMES])
        self.joint_dof = np.array([m.jnt_dofadr[m.joint(n).id] for n in JOINT_NAMES])
        self.lo = np.array([JOINT_RANGE[n][0] for n in JOINT_NAMES])
        self.hi = np.array([JOINT_RANGE[n][1] for n in JOINT_NAMES])
        self.tip_geom = m.geom("tip").id
        self.tip_body = m.body("fingertip").id
        self.finger_body = m.body("finger").id
        self.cam_id = m.camera("cam").id
        touch0 = m.sensor("touch_0_0").id
        self.touch_adr = np.array([m.sensor_adr[touch0 + k] for k in range(TAXEL_ROWS * TAXEL_COLS)])
        self.force_adr = m.sensor_adr[m.sensor("wrist_force").id]
        self.torque_adr = m.sensor_adr[m.sensor("wrist_torque").id]
        self.obj_bodies = np.array([m.body(f"obj{k}").id for k in range(len(spec.objects))], dtype=int)
        self.obj_qpos = np.array(
            [m.jnt_qposadr[m.joint(f"obj{k}_free").id] for k in range(len(spec.objects))], dtype=int
        )
        # Per-geom lookup tables: segmentation label and acoustic material index.
        self.geom_label = np.zeros(m.ngeom, np.uint8)
        self.geom_material = np.zeros(m.ngeom, np.int64)
        mat_idx = {name: i for i, name in enumerate(MATERIAL_ORDER)}
        for g in range(m.ngeom):
            body = int(m.geom_bodyid[g])
            if g == m.geom("table").id:
                self.geom_label[g], self.geom_material[g] = LABEL_TABLE, mat_idx["table"]
            elif body in (self.finger_body, self.tip_body):
                self.geom_label[g], self.geom_material[g] = LABEL_FINGER, mat_idx["finger"]
        for k, obj in enumerate(spec.objects):
            g = m.geom(f"obj{k}").id
            self.geom_label[g] = FIRST_OBJECT_LABEL + k
            self.geom_material[g] = mat_idx[obj.material]
        self.target = np.zeros(3)
        self.reset()
        self._renderer: mujoco.Renderer | None = None

    # -- state -------------------------------------------------------------------------------
    def reset(self) -> None:
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self.joint_qpos] = self.spec.finger_start
        self.target = np.asarray(self.spec.finger_start, dtype=float).copy()
        self.data.ctrl[:] = self.target
        mujoco.mj_forward(self.model, self.data)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """The physics state (MuJoCo's integration state: time, qpos, qvel, actuator and warm-start
        state, controls) and the finger's position target: what ``restore`` needs to replay the same
        future bit for bit (MuJoCo is deterministic). Sensors outside MuJoCo (audio) are not included."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, state, spec)
        return state, self.target.copy()

    def restore(self, snap: tuple[np.ndarray, np.ndarray]) -> None:
        state, target = snap
        mujoco.mj_setState(self.model, self.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
        self.target = target.copy()
        mujoco.mj_forward(self.model, self.data)

    @property
    def time(self) -> float:
        return float(self.data.time)

    def finger_pos(self) -> np.ndarray:
        return self.data.qpos[self.joint_qpos].copy()

    def finger_vel(self) -> np.ndarray:
        return self.data.qvel[self.joint_dof].copy()

    def finger_effort(self) -> np.ndarray:
        return self.data.actuator_force[:3].copy()

    def tactile(self) -> np.ndarray:
        """rows x cols float32 normal force per taxel (N)."""
        return self.data.sensordata[self.touch_adr].astype(np.float32).reshape(TAXEL_ROWS, TAXEL_COLS)

    def wrist_wrench(self) -> tuple[np.ndarray, np.ndarray]:
        d = self.data.sensordata
        return d[self.force_adr : self.force_adr + 3].copy(), d[self.torque_adr : self.torque_adr + 3].copy()

    def object_poses(self) -> np.ndarray:
        """n x 7 (x, y, z, qw, qx, qy, qz) of the free objects."""
        if len(self.obj_qpos) == 0:
            return np.zeros((0, 7))
        return self.data.qpos[self.obj_qpos[:, None] + np.arange(7)].copy()

    # -- control -----------------------------------------------------------------------------
    def step(self, velocity: np.ndarray) -> None:
        """One physics step with fingertip velocity command ``velocity`` (m/s, world xyz).

        The command moves the position actuators' targets (integrated here), so a held-still finger
        stays put and the same twist command gives the same motion whatever the load.
        """
        self.target = self.target + np.asarray(velocity, float) * PHYSICS_DT
        q = self.data.qpos[self.joint_qpos]
        self.target = np.clip(self.target, q - MAX_TARGET_LEAD, q + MAX_TARGET_LEAD)
        self.target = np.clip(self.target, self.lo, self.hi)
        self.data.ctrl[:3] = self.target
        mujoco.mj_step(self.model, self.data)

    # -- contacts ----------------------------------------------------------------------------
    def contacts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Active contacts: (geom pairs n x 2, positions n x 3, normal forces n, slip speeds n).

        Vectorized over contacts (no per-contact Python calls): with the elliptic cone the first
        efc row of a contact is its normal force; slip is the tangential relative velocity of the
        two bodies at the contact point, from the com-based body velocities ``cvel``.
        """
        d, m = self.data, self.model
        n = d.ncon
        if n == 0:
            z = np.zeros(0)
            return np.zeros((0, 2), int), np.zeros((0, 3)), z, z
        con = d.contact
        adr = con.efc_address[:n]
        ok = adr >= 0
        geom = con.geom[:n][ok]
        pos = con.pos[:n][ok]
        normal = con.frame[:n][ok][:, :3]
        fn = np.maximum(d.efc_force[adr[ok]], 0.0)
        bodies = m.geom_bodyid[geom]
        com = d.subtree_com[m.body_rootid[bodies]]
        cvel = d.cvel[bodies]
        w, r = cvel[..., :3], pos[:, None, :] - com
        # w x r written out: np.cross costs ~40 us per call in its axis handling, this runs 50x per frame.
        v = cvel[..., 3:] + np.stack(
            [
                w[..., 1] * r[..., 2] - w[..., 2] * r[..., 1],
                w[..., 2] * r[..., 0] - w[..., 0] * r[..., 2],
                w[..., 0] * r[..., 1] - w[..., 1] * r[..., 0],
            ],
            axis=-1,
        )
        rel = v[:, 1] - v[:, 0]
        rel_t = rel - np.sum(rel * normal, axis=1, keepdims=True) * normal
        return geom, pos, fn, np.linalg.norm(rel_t, axis=1)

    # -- rendering ---------------------------------------------------------------------------
    @property
    def renderer(self) -> mujoco.Renderer:
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.res, self.res)
        return self._renderer

    def render(self, ground_truth: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """RGB (H x W x 3 uint8), and if asked segmentation labels (H x W uint8) and depth (H x W
        float32 metres along the optical axis; +inf where nothing is hit, as REP 118 says)."""
        r = self.renderer
        r.update_scene(self.data, camera=self.cam_id)
        rgb = r.render().copy()
        if not ground_truth:
            return rgb, None, None
        r.enable_segmentation_rendering()
        try:
            r.update_scene(self.data, camera=self.cam_id)
            seg_raw = r.render()
        finally:
            r.disable_segmentation_rendering()
        ids, types = seg_raw[..., 0], seg_raw[..., 1]
        is_geom = (ids >= 0) & (types == int(mujoco.mjtObj.mjOBJ_GEOM))
        seg = np.where(is_geom, self.geom_label[np.clip(ids, 0, None)], LABEL_BACKGROUND).astype(np.uint8)
        r.enable_depth_rendering()
        try:
            r.update_scene(self.data, camera=self.cam_id)
            depth = r.render().astype(np.float32)
        finally:
            r.disable_depth_rendering()
        depth[seg == LABEL_BACKGROUND] = np.inf
        return rgb, seg, depth

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # -- camera ------------------------------------------------------------------------------
    def camera_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """World position and 3x3 rotation whose columns are the optical frame's axes in world."""
        pos = self.data.cam_xpos[self.cam_id].copy()
        xmat = self.data.cam_xmat[self.cam_id].reshape(3, 3)
        # MuJoCo camera axes are the columns of cam_xmat: x right, y up, z backward.
        rot = np.stack([xmat[:, 0], -xmat[:, 1], -xmat[:, 2]], axis=1)
        return pos, rot

    def intrinsics(self) -> tuple[float, float, float, float]:
        return intrinsics(self.res, float(self.model.cam_fovy[self.cam_id]))

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points (n x 3) to pixel coordinates (n x 2, u right, v down) and depths (n)."""
        pos, rot = self.camera_pose()
        pc = (np.asarray(points, float).reshape(-1, 3) - pos) @ rot
        fx, fy, cx, cy = self.intrinsics()
        z = pc[:, 2]
        zs = np.where(z > 1e-6, z, np.nan)
        uv = np.stack([fx * pc[:, 0] / zs + cx, fy * pc[:, 1] / zs + cy], axis=1)
        return uv, z
