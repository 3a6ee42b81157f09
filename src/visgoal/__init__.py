"""visgoal: visual goal-conditioned RL from pixels."""

from visgoal.gl import select_backend as _select_gl_backend

# MuJoCo reads MUJOCO_GL at its first import; choose a headless backend before that can happen.
_select_gl_backend()
