"""math-verify as an independent reference, run by the reference interpreter (its own venv: math-verify needs
antlr4 >= 4.9.3, which lmms-eval's latex2sympy2 pin of 4.7.2 rules out in rd-eval's environment).

Reads JSON lines ``{"gold": ..., "response": ...}`` on stdin and writes one JSON line per input,
``{"verdict": true | false | null, "error": ...}``; null when math-verify failed or ran out of time (its own
per-parse and per-verify limit, ``sys.argv[1]`` seconds). Imports nothing from rd-eval.
"""

import json
import sys


def main() -> int:
    from math_verify import parse, verify

    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    for line in sys.stdin:
        job = json.loads(line)
        try:
            gold = parse(job["gold"], parsing_timeout=limit, raise_on_error=True)
            pred = parse(job["response"], parsing_timeout=limit, raise_on_error=True)
            verdict = bool(gold) and bool(pred) and verify(gold, pred, timeout_seconds=limit, raise_on_error=True)
            out = {"verdict": bool(verdict), "error": None}
        except Exception as err:  # a timeout or a parse failure: no verdict, reported as such
            out = {"verdict": None, "error": f"{type(err).__name__}: {err}"[:200]}
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
