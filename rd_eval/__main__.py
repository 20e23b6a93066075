"""`python -m rd_eval ...` is the `rd-eval` command."""

from rd_eval.commands.main import main

raise SystemExit(main())
