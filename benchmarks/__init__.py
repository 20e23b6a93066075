"""rd-eval performance benchmarks: `python benchmarks/run.py [--quick] --json OUT.json` (see docs/performance.md)."""
