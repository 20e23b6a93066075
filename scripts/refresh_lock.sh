#!/usr/bin/env bash
# Regenerate constraints.txt, the exact tested set of every package rd-eval installs (the README's two set-up
# commands and .ci/run install with `-c constraints.txt`). Resolved by pip-tools from pyproject.toml's ranges, for
# Python 3.11 on Linux x86_64; torch / torchvision are held at the builds we test with. After refreshing, run the full
# suite (`bash .ci/run`) before committing the new lock.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${RD_EVAL_TOOLS_VENV:-.venv-tools}"
[ -x "$TOOLS/bin/pip-compile" ] || { python3 -m venv "$TOOLS" && "$TOOLS/bin/pip" install -q "pip-tools>=7.4"; }
CUSTOM_COMPILE_COMMAND="scripts/refresh_lock.sh" "$TOOLS/bin/pip-compile" --quiet --allow-unsafe --extra test --strip-extras --no-emit-index-url --no-emit-find-links \
  --no-emit-trusted-host --upgrade --upgrade-package "torch==2.14.1" --upgrade-package "torchvision==0.29.1" \
  --output-file constraints.txt pyproject.toml
echo "constraints.txt: $(grep -cE '^[A-Za-z]' constraints.txt) packages pinned"
