"""rd-eval performance benchmarks: `python perf/run.py [--quick] --json OUT.json` (see docs/performance.md)."""
