import sys

from visgoal.gl import backend_problem

# Before visgoal.cli imports mujoco, which would fail on a bad $MUJOCO_GL with a traceback.
if problem := backend_problem():
    print(f"visgoal: error: {problem}", file=sys.stderr)
    raise SystemExit(2)

from visgoal.cli import main  # noqa: E402

raise SystemExit(main())
