"""Scripted teachers: a controller per environment that reads the simulator and acts through the env.

A teacher sees what a human teleoperator would (joint angles, where the handle or the ball is, the
arm's Jacobian) but changes the world only through `env.step(action)` with an action inside
`env.action_space`: replaying its recorded actions in a fresh env from the same reset gives the same
states (tests/test_teachers.py). No agent ever sees what it reads.

  KitchenTeacher    franka_kitchen: reach the microwave handle, close the fingers on it, pull it
                    along the door's arc to the goal angle, let go and back away (the door stays).
  RelocateTeacher   adroit_relocate: reach above the ball, wrap the fingers around it, lift it,
                    carry it to the target and hold it there.

`teacher_agent(envs)` gives the (view, policy) pair that the evaluation protocol's own episode loop
(`visgoal.evaluation.run_episodes`) steps, so a teacher is scored on exactly the protocol's episodes.
"""

from __future__ import annotations

import mujoco
import numpy as np

from visgoal.agents.views import StateView
from visgoal.evaluation import run_episodes


def _id(model: mujoco.MjModel, kind: mujoco.mjtObj, name: str) -> int:
    index = mujoco.mj_name2id(model, kind, name)
    if index < 0:
        raise ValueError(f"the model has no {kind.name[6:].lower()} '{name}'")
    return index


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """The rotation vector (world frame) that turns orientation `current` into `target` (3x3 each)."""
    quat, vel = np.empty(4), np.empty(3)
    mujoco.mju_mat2Quat(quat, (target @ current.T).ravel())
    mujoco.mju_quat2Vel(vel, quat, 1.0)
    return vel


def rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def clip_norm(x: np.ndarray, limit: float) -> np.ndarray:
    norm = np.linalg.norm(x)
    return x if norm <= limit else x * (limit / norm)


def damped_least_squares(jac: np.ndarray, dx: np.ndarray, q: np.ndarray, low: np.ndarray, high: np.ndarray,
                         damping: float = 0.05, push: float = 0.02, rest: np.ndarray | None = None,
                         rest_gain: float = 0.0) -> np.ndarray:
    """A joint step dq with jac @ dq close to dx that never drives a joint past its limits.

    Damped least squares (Wampler 1986): dq = J^T (J J^T + damping^2 I)^-1 dx. A joint outside
    [low, high] (the Franka's joint 2 starts there) is moved back in by up to `push` a step, and a
    joint that would cross a limit is held; the other joints solve for what is left of dx. A plain
    DLS keeps pushing a joint into its limit, which stops it, and the arm stalls. `rest` adds a
    posture pull in the task's null space."""
    n = len(q)
    dq_fixed = np.clip(low - q, 0.0, push) + np.clip(high - q, -push, 0.0)
    free = dq_fixed == 0
    for _ in range(n):
        j = jac * free
        inverse = j.T @ np.linalg.inv(j @ j.T + damping**2 * np.eye(len(dx)))
        dq = dq_fixed + inverse @ (dx - jac @ dq_fixed)
        if rest is not None and rest_gain > 0:
            dq += (np.eye(n) - inverse @ j) @ (rest_gain * (rest - q) * free)
        blocked = free & (((q + dq < low) & (dq < 0)) | ((q + dq > high) & (dq > 0)))
        if not blocked.any():
            return dq
        free &= ~blocked
    return dq_fixed


class Teacher:
    """One environment's scripted controller. `reset()` at each episode's start (after `env.reset`),
    then `action()` before each step: an action inside `env.action_space`, read off the simulator.
    `phase` names what it is doing; `failure()` says how a failed episode went wrong."""

    def __init__(self, env):
        self.env, self.model, self.data = env, env.model, env.data
        self.phase = ""

    def reset(self) -> None:
        raise NotImplementedError

    def action(self) -> np.ndarray:
        """The next env action, read off the simulator as it stands after the last step."""
        raise NotImplementedError

    def failure(self) -> str:
        raise NotImplementedError


class KitchenTeacher(Teacher):
    """franka_kitchen, the microwave: reach the handle, grasp it, pull it along the door's arc.

    The env's action is a joint velocity in [-1, 1] (x 2 rad/s) that it turns into a position target,
    the observed joint angles + velocity x dt (dt = 0.08 s), for position servos that have no gravity
    compensation. So each step the teacher picks the joint angles it wants next (damped least squares
    on the end effector's pose error, through MuJoCo's site Jacobian), adds the sag the servo will
    settle at (gravity and the other bias forces over its gain), and sends the velocity that makes
    that the target.

    The grasp: the gripper points into the door, its fingers either side of the vertical handle bar.
    Once they close, the hand's position relative to the door is kept and the door's angle is led
    `lead` ahead of where it is, so the hand pulls along the arc; the hand keeps its orientation and
    the fingers turn about the bar (turning the hand with the door takes the arm out of its reach
    near -0.6 rad, where the grasp slips). At `release_angle` (or once the door stops moving past
    `stall_angle`) the fingers open and the hand backs away: the door's hinge has friction and no
    spring, so it stays open until the episode ends (the goal is -0.75 rad, success within 0.3; the
    arm reaches about -0.75 at full stretch, and a grasp held there slowly slides off the bar). A
    hand that loses the handle before `stall_angle` goes back for it.
    """

    arm = 7  # the arm's joints come first in qpos, qvel and the actions; then the two fingers

    def __init__(self, env, release_angle: float = -0.72, stall_angle: float = -0.6, lead: float = 0.12,
                 approach_offset: float = 0.12, max_move: float = 0.04, max_turn: float = 0.15,
                 rest_gain: float = 0.05):
        super().__init__(env)
        self.release_angle, self.stall_angle = release_angle, stall_angle
        self.lead, self.approach_offset = lead, approach_offset
        self.max_move, self.max_turn, self.rest_gain = max_move, max_turn, rest_gain
        m = self.model
        self.robot = env.unwrapped.robot_env
        self.hand = _id(m, mujoco.mjtObj.mjOBJ_SITE, "end_effector")
        self.handle = _id(m, mujoco.mjtObj.mjOBJ_SITE, "microhandle_site")
        self.hinge = _id(m, mujoco.mjtObj.mjOBJ_JOINT, "microwave")
        self.hinge_q = int(m.jnt_qposadr[self.hinge])
        self.gain = m.actuator_gainprm[: self.arm, 0].copy()  # the servos' kp (their bias term is -kp q)
        self.step_scale = self.robot.act_rng[: self.arm] * self.robot.dt  # action 1 moves the target this far (rad)
        margin = 0.05
        self.low = m.jnt_range[: self.arm, 0] + margin
        self.high = m.jnt_range[: self.arm, 1] - margin
        self.jacp, self.jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        # The gripper's z axis into the door (world +y, the closed door's inward normal), its fingers'
        # y axis along the door's face (world x), its x axis up.
        self.grasp_rotation = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
        self.reset()

    def reset(self) -> None:
        self.phase, self.phase_steps = "approach", 0
        self.rest = self.data.qpos[: self.arm].copy()  # the null space's posture: the reset pose
        self.held = None  # (door angle, hand position, hand rotation) when the fingers closed
        self.released = None  # (hand position, hand rotation) when the fingers let go
        self.progress: list[float] = []  # the door's angle at each step of the pull
        self.grasps = self.slips = 0

    # --- what the teacher reads -------------------------------------------------------------
    def door_angle(self) -> float:
        return float(self.data.qpos[self.hinge_q])

    def hand_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.site_xpos[self.hand].copy(), self.data.site_xmat[self.hand].reshape(3, 3).copy()

    def handle_gap(self) -> float:
        """How far the handle bar is from between the fingers (m)."""
        return float(np.linalg.norm(self.data.site_xpos[self.handle] - self.data.site_xpos[self.hand]))

    def grasp_pose(self, back: float) -> tuple[np.ndarray, np.ndarray]:
        """The hand's pose around the handle bar, `back` metres out along the gripper's -z. On a door
        already open (a grasp lost on the way) the hand comes at the bar turned half the door's angle,
        a pose the arm can still reach."""
        rotation = rotation_z(0.5 * self.door_angle()) @ self.grasp_rotation
        return self.data.site_xpos[self.handle] - back * rotation[:, 2], rotation

    def go(self, phase: str) -> None:
        self.phase, self.phase_steps = phase, 0

    # --- acting -----------------------------------------------------------------------------
    def action(self) -> np.ndarray:
        self.advance()
        if self.phase == "approach":
            return self.command(*self.grasp_pose(self.approach_offset), fingers=1.0)
        if self.phase in ("insert", "close"):
            return self.command(*self.grasp_pose(0.0), fingers=1.0 if self.phase == "insert" else -1.0)
        if self.phase == "pull":
            angle, held_position, held_rotation = self.held
            wanted = max(self.door_angle() - self.lead, self.release_angle - self.lead)
            anchor = self.data.xanchor[self.hinge]
            return self.command(anchor + rotation_z(wanted - angle) @ (held_position - anchor), held_rotation,
                                fingers=-1.0)
        # release: the fingers open where they are, then the hand backs away from the handle and stays
        position, rotation = self.released
        back = 0.0 if self.phase_steps <= 3 else self.approach_offset
        return self.command(position - back * rotation[:, 2], rotation, fingers=1.0)

    def advance(self) -> None:
        """The phase this step acts in."""
        self.phase_steps += 1
        position, rotation = self.hand_pose()
        if self.phase in ("approach", "insert"):
            target, target_rotation = self.grasp_pose(self.approach_offset if self.phase == "approach" else 0.0)
            error = np.linalg.norm(target - position)
            turn = np.linalg.norm(rotation_error(target_rotation, rotation))
            # The servos settle a few millimetres short of a target the arm can barely reach: a
            # phase that has stopped making progress moves on.
            if self.phase == "approach" and ((error < 0.02 and turn < 0.1) or self.phase_steps > 60):
                self.go("insert")
            elif self.phase == "insert" and (error < 0.012 or self.phase_steps > 20):
                self.go("close")
        elif self.phase == "close" and self.phase_steps > 3:  # three steps close the fingers on the bar
            self.held, self.progress = (self.door_angle(), position, rotation), []
            self.grasps += 1
            self.go("pull")
        elif self.phase == "pull":
            self.progress.append(self.door_angle())
            stalled = len(self.progress) > 10 and self.progress[-11] - self.progress[-1] < 0.005
            if self.door_angle() <= self.release_angle or (stalled and self.door_angle() <= self.stall_angle):
                self.released = (position, rotation)
                self.go("release")
            elif self.handle_gap() > 0.06:  # the handle slipped out of the fingers
                self.slips += 1
                if self.door_angle() <= self.stall_angle:  # far enough: leave it open
                    self.released = (position, rotation)
                    self.go("release")
                else:  # go back for it
                    self.go("approach")

    def failure(self) -> str:
        """How a failed episode went wrong, from where the teacher stands at its end."""
        if self.grasps == 0:
            return "never closed the fingers on the handle"
        if self.phase == "pull":
            return "still pulling at the end"
        if self.phase == "release":
            return "let go of the door short of the goal"
        return "lost the handle and had not got it back"

    def command(self, target: np.ndarray, target_rotation: np.ndarray, fingers: float) -> np.ndarray:
        """The env action that moves the hand toward the target pose, and the fingers' action
        (1 opens them, -1 closes them)."""
        m, d = self.model, self.data
        position, rotation = self.hand_pose()
        dx = np.concatenate([clip_norm(target - position, self.max_move),
                             clip_norm(rotation_error(target_rotation, rotation), self.max_turn)])
        mujoco.mj_jacSite(m, d, self.jacp, self.jacr, self.hand)
        jac = np.vstack([self.jacp[:, : self.arm], self.jacr[:, : self.arm]])
        q = d.qpos[: self.arm]
        dq = damped_least_squares(jac, dx, q, self.low, self.high, rest=self.rest, rest_gain=self.rest_gain)
        # The servo settles where its pull kp (target - q) balances gravity and the other bias forces.
        servo_target = q + dq + d.qfrc_bias[: self.arm] / self.gain
        observed = self.robot._last_robot_qpos[: self.arm]  # what the env adds the velocity to
        arm = np.clip((servo_target - observed) / self.step_scale, -1.0, 1.0)
        return np.concatenate([arm, [fingers, fingers]])


class RelocateTeacher(Teacher):
    """adroit_relocate: reach above the ball, come down on it, close the hand, lift it to the target.

    The arm's six actuators and the wrist's two are position servos with an affine bias (force =
    gain ctrl - kb q: the arm's settle at q = 2.5 ctrl) and no gravity compensation; the vertical
    slide carries a 4.9 kg forearm. Each step the teacher solves the inverse kinematics of the grasp
    site `S_grasp` toward a commanded point (damped least squares on a scratch copy of the
    simulator's state, the palm kept level) and drives the arm there by computed torque: the torque
    M (w^2 (q* - q) - 2 w v) + bias (critically damped at `omega` rad/s), sent as the control that
    makes the actuator give it. The commanded point moves toward each phase's goal at `speed` m a
    step, so the hand follows a straight path whatever the servos do.

    The grasp: the ball under the grasp site, `grasp_offset` from its centre, the palm coming down
    on it; the fingers flex fully at the knuckle and less at the two outer joints, and the thumb
    closes across. The env sets the fingers' servo gain to 1, and how far they curl decides whether
    the ball stays in the hand when the arm shakes (docs/experiments/2026-12-07-scripted-teachers.md).
    Then the hand rises
    `clearance` above the table, carries the ball until the ball (not the hand) is at the target,
    and holds it there.
    """

    arm = 8  # ARTx, ARTy, ARTz, ARRx, ARRy, ARRz, WRJ1, WRJ0: then the fingers and the thumb
    fingers = (slice(8, 12), slice(12, 16), slice(16, 20), slice(21, 25))  # FF, MF, RF, LF: J3..J0
    thumb = slice(25, 30)  # THJ4..THJ0

    def __init__(self, env, grasp_offset=(0.008, -0.003, 0.005), hover: float = 0.08, clearance: float = 0.1,
                 speed: float = 0.015, omega: float = 20.0, close_steps: int = 20,
                 finger_pose=(0.0, 1.6, 1.2, 0.8), thumb_pose=(0.0, 1.2, 0.0, 0.3, -0.5)):
        super().__init__(env)
        m = self.model
        self.grasp_offset, self.hover, self.clearance = np.asarray(grasp_offset, dtype=float), hover, clearance
        self.speed, self.omega, self.close_steps = speed, omega, close_steps
        self.finger_pose, self.thumb_pose = np.asarray(finger_pose, dtype=float), np.asarray(thumb_pose, dtype=float)
        self.site = _id(m, mujoco.mjtObj.mjOBJ_SITE, "S_grasp")
        self.ball = _id(m, mujoco.mjtObj.mjOBJ_BODY, "Object")
        joints, order = m.actuator_trnid[:, 0], np.arange(m.nu)
        if not (np.array_equal(m.jnt_qposadr[joints], order) and np.array_equal(m.jnt_dofadr[joints], order)):
            raise ValueError("adroit_relocate: expected actuator i to drive qpos[i] and qvel[i]")
        self.gain = m.actuator_gainprm[:, 0].copy()
        self.stiffness = -m.actuator_biasprm[:, 1].copy()  # kb: the servo's pull back toward q = 0
        self.mean, self.scale = env.unwrapped.act_mean, env.unwrapped.act_rng  # action = (ctrl - mean) / scale
        self.low, self.high = m.jnt_range[: self.arm, 0], m.jnt_range[: self.arm, 1]
        self.scratch = mujoco.MjData(m)
        self.jacp, self.jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        self.mass = np.zeros((m.nv, m.nv))
        self.reset()

    def reset(self) -> None:
        self.phase, self.phase_steps = "above", 0
        self.level = self.data.site_xmat[self.site].reshape(3, 3).copy()  # the palm's pose at reset: level
        self.command_point = self.data.site_xpos[self.site].copy()
        self.anchor = None  # where the ball was when the hand came down on it
        self.lost_in = ""  # the phase in which the ball left the hand, if it did

    # --- what the teacher reads -------------------------------------------------------------
    def ball_position(self) -> np.ndarray:
        return self.data.xpos[self.ball].copy()

    def hand_position(self) -> np.ndarray:
        return self.data.site_xpos[self.site].copy()

    def holding(self) -> bool:
        """Whether the ball is in the hand: within 6 cm of the grasp site (its radius is 3.5 cm)."""
        return bool(np.linalg.norm(self.ball_position() - self.hand_position()) < 0.06)

    def go(self, phase: str) -> None:
        self.phase, self.phase_steps = phase, 0

    # --- acting -----------------------------------------------------------------------------
    def action(self) -> np.ndarray:
        goal = self.advance()
        self.command_point = self.command_point + clip_norm(goal - self.command_point, self.speed)
        target = np.zeros(self.model.nu)
        target[: self.arm] = self.inverse_kinematics(self.command_point)
        if self.phase in ("close", "lift", "carry"):
            for finger in self.fingers:
                target[finger] = self.finger_pose
            target[self.thumb] = self.thumb_pose
        return self.command(target)

    def advance(self) -> np.ndarray:
        """The phase this step acts in, and where it wants the grasp site."""
        self.phase_steps += 1
        ball, hand = self.ball_position(), self.hand_position()
        if self.phase == "above":
            goal = ball + self.grasp_offset + [0.0, 0.0, self.hover]
            if np.linalg.norm(hand - goal) < 0.015 or self.phase_steps > 80:
                self.anchor = ball
                self.go("down")
        if self.phase == "down":
            goal = self.anchor + self.grasp_offset
            if np.linalg.norm(hand - goal) < 0.012 or self.phase_steps > 40:
                self.go("close")
        if self.phase == "close":
            goal = self.command_point
            if self.phase_steps > self.close_steps:
                if not self.holding():
                    self.lost_in = "close"
                self.go("lift")
        if self.phase == "lift":  # straight up first, so the ball does not drag over the table
            goal = hand.copy()  # toward the ball's underside `clearance` above the table (its radius 3.5 cm)
            goal[2] = max(hand[2], self.clearance + self.grasp_offset[2] + 0.035)
            if hand[2] > self.clearance or self.phase_steps > 30:
                self.go("carry")
        if self.phase == "carry":  # the ball (not the hand) to the target
            goal = hand + (self.env.goal - ball)
        if self.phase in ("lift", "carry") and not self.lost_in and not self.holding():
            self.lost_in = self.phase
        return goal

    def failure(self) -> str:
        """How a failed episode went wrong, from where the teacher stands at its end."""
        if self.phase in ("above", "down"):
            return "never reached the ball"
        if self.lost_in == "close":
            return "pushed the ball out while closing the hand"
        if self.lost_in:
            return f"dropped the ball while {'lifting' if self.lost_in == 'lift' else 'carrying'} it"
        if self.phase in ("close", "lift"):
            return "still lifting at the end"
        return "held the ball off the target"

    def inverse_kinematics(self, point: np.ndarray, iterations: int = 50) -> np.ndarray:
        """The arm's joint angles that put the grasp site at `point` with the palm level, solved on
        a scratch copy of the state from the arm's current angles (damped least squares; the palm's
        orientation weighted 0.3 against metres)."""
        m, s, weight = self.model, self.scratch, 0.3
        s.qpos[:] = self.data.qpos
        for _ in range(iterations):
            mujoco.mj_kinematics(m, s)
            mujoco.mj_comPos(m, s)
            error = np.concatenate([point - s.site_xpos[self.site],
                                    weight * rotation_error(self.level, s.site_xmat[self.site].reshape(3, 3))])
            if np.linalg.norm(error) < 1e-4:
                break
            mujoco.mj_jacSite(m, s, self.jacp, self.jacr, self.site)
            jac = np.vstack([self.jacp[:, : self.arm], weight * self.jacr[:, : self.arm]])
            step = jac.T @ np.linalg.solve(jac @ jac.T + 1e-4 * np.eye(6), error)
            s.qpos[: self.arm] = np.clip(s.qpos[: self.arm] + step, self.low, self.high)
        return s.qpos[: self.arm].copy()

    def command(self, target: np.ndarray) -> np.ndarray:
        """The env action for joint targets: computed torque on the arm and wrist, the fingers' and
        thumb's targets as their servos' controls."""
        m, d, n = self.model, self.data, self.arm
        mujoco.mj_fullM(m, self.mass, d.qM)
        q, v = d.qpos[:n], d.qvel[:n]
        torque = self.mass[:n, :n] @ (self.omega**2 * (target[:n] - q) - 2 * self.omega * v) + d.qfrc_bias[:n]
        ctrl = target.copy()
        ctrl[:n] = (torque + self.stiffness[:n] * q) / self.gain[:n]  # the actuator gives gain ctrl - kb q
        return np.clip((ctrl - self.mean) / self.scale, -1.0, 1.0)


TEACHERS: dict[str, type[Teacher]] = {
    "franka_kitchen": KitchenTeacher,
    "adroit_relocate": RelocateTeacher,
}


def make_teacher(env, **options) -> Teacher:
    """The scripted teacher of an `ImageGoalEnv` (by its spec's name); `options`: its keyword
    arguments, where they differ from its defaults."""
    name = env.spec.name
    if name not in TEACHERS:
        raise ValueError(f"no scripted teacher for '{name}' (there is one for {', '.join(sorted(TEACHERS))})")
    return TEACHERS[name](env, **options)


# --- the evaluation protocol's episodes --------------------------------------------------------
class TeacherView(StateView):
    """What the protocol's loop hands a teacher: the index of its env, as the observation.

    `run_episodes(envs, view, policy, seeds)` makes one view per episode (`for_episode`), in the
    order of `envs`, before it resets the policy; each takes the next env's index. The teacher reads
    that env's simulator itself, so the observation only says which env a row of the batch is.
    Its reward is the state oracle's, -distance."""

    def __init__(self, teachers: list[Teacher]):
        super().__init__(goal_conditioned=True, obs_dim=1, goal_dim=0)  # sizes nothing: no network is built
        self.teachers, self.index, self.handed_out = teachers, None, 0

    def for_episode(self) -> "TeacherView":
        if self.handed_out >= len(self.teachers):
            raise ValueError(f"more episodes than the {len(self.teachers)} envs the teachers were made for")
        view = super().for_episode()
        view.index, self.handed_out = self.handed_out, self.handed_out + 1
        return view

    def observe(self, step, code=None) -> tuple[np.ndarray, np.ndarray]:
        env = self.teachers[self.index].env
        if not np.array_equal(step.achieved_goal, env.task.achieved_goal()):
            raise RuntimeError(f"episode {self.index}'s step is not its env's: run_episodes must make the views "
                               f"in the order of its envs")
        return np.array([self.index], dtype=np.float32), step.achieved_goal


class TeacherPolicy:
    """The protocol's policy interface (`reset`, `act`, `env_action`) over one teacher per env:
    each row of `act`'s batch is the env whose index the row's observation holds."""

    def __init__(self, teachers: list[Teacher], view: TeacherView):
        self.teachers, self.view, self.started = teachers, view, set()

    def reset(self, seed: "int | list[int] | None" = None) -> None:
        """A new batch of episodes: the views are handed out again from the first env."""
        self.view.handed_out, self.started = 0, set()

    def act(self, obs: np.ndarray, goals: np.ndarray) -> np.ndarray:
        actions = []
        for row in obs:
            k = int(row[0])
            if k not in self.started:  # the episode's first action: its env has just been reset
                self.teachers[k].reset()
                self.started.add(k)
            actions.append(self.teachers[k].action())
        return np.stack(actions)

    def env_action(self, action: np.ndarray) -> np.ndarray:
        """A teacher's action is the env's action already."""
        return action


def teacher_agent(envs: list, **options) -> tuple[TeacherView, TeacherPolicy]:
    """The (view, policy) pair that `visgoal.evaluation.run_episodes(envs, view, policy, seeds)`
    steps: each env's scripted teacher (made with `options`), acting on the protocol's own episodes."""
    teachers = [make_teacher(env, **options) for env in envs]
    view = TeacherView(teachers)
    return view, TeacherPolicy(teachers, view)


def run_teacher_episodes(envs: list, seeds: list[int], frames=(), watch=None, **options) -> list[dict]:
    """The teacher's episodes from the resets `seeds` (one env each), through the protocol's own
    loop: the same result rows as any policy's (`run_episodes`)."""
    view, policy = teacher_agent(envs, **options)
    return run_episodes(envs, view, policy, seeds, frames=frames, watch=watch)
