import sys

from visgoal.gl import backend_problem

if __name__ == "__main__":  # not when a worker process (evaluate's) imports this module
    # Before visgoal.cli imports mujoco, which would fail on a bad $MUJOCO_GL with a traceback.
    if problem := backend_problem():
        print(f"visgoal: error: {problem}", file=sys.stderr)
        raise SystemExit(2)

    from visgoal.cli import main

    raise SystemExit(main())
