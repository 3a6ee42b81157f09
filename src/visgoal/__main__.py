from visgoal.cli import main

raise SystemExit(main())
