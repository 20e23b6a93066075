"""`rd-eval organism`: train the model organism (a small Qwen3-VL-MoE) and measure it on its splits.

    rd-eval organism train --out DIR [--seed N] [--steps N] [--threads N]
    rd-eval organism eval --model DIR [--split heldout] [--n 200]

`train` is resumable: run it again with the same settings and it continues from the last checkpoint in DIR.
torch is imported only when a subcommand runs (the command line builds its parser before any work).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from rd_eval.organism.problems import SPLIT_NAMES, ProblemError
from rd_eval.organism.spec import OrganismSpec, OrganismSpecError
from rd_eval.organism.train import OrganismTrainingError

EXIT_BAD_INPUT = 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `organism train` and `organism eval` under the rd-eval command line."""
    p = subparsers.add_parser("organism", help="train and measure the model organism (a small MoE VLM)")
    sub = p.add_subparsers(dest="organism_command", required=True, metavar="{train,eval}")
    defaults = OrganismSpec()

    t = sub.add_parser("train", help="train the organism into DIR (resumes from DIR's last checkpoint)")
    t.add_argument("--out", required=True, metavar="DIR", help="folder for the model and its training checkpoint")
    t.add_argument("--seed", type=int, default=defaults.seed, help=f"weights and data seed (default {defaults.seed})")
    t.add_argument("--steps", type=int, default=defaults.steps, help=f"training steps (default {defaults.steps})")
    t.add_argument("--threads", type=int, default=defaults.threads,
                   help=f"torch threads, recorded: another count may change the weights (default {defaults.threads})")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=run)

    e = sub.add_parser("eval", help="accuracy per form (text, transcription, image) on a split, greedy decoding")
    e.add_argument("--model", required=True, metavar="DIR", help="a trained organism folder")
    e.add_argument("--split", choices=SPLIT_NAMES, default="heldout", help="which split (default heldout)")
    e.add_argument("--n", type=int, default=None, help="only the first N problems of the split")
    e.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="weights' precision (lmms-eval's Qwen3-VL class loads bfloat16; default float32)")
    e.set_defaults(func=run)


def _train(args: argparse.Namespace) -> int:
    from rd_eval.organism.train import train

    spec = replace(OrganismSpec(), seed=args.seed, steps=args.steps, threads=args.threads)
    result = train(spec, Path(args.out), progress=not args.no_progress,
                   log=lambda line: print(line, file=sys.stderr))
    print(f"organism: {result.steps} steps in {args.out} ({result.wall_s:.0f} s this run, "
          f"resumed from step {result.resumed_from})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rd_eval.organism.evaluate import score_forms
    from rd_eval.organism.problems import make_splits
    from rd_eval.organism.train import CARD_FILE

    folder = Path(args.model)
    card = folder / CARD_FILE
    if not card.is_file():
        raise OrganismSpecError(f"{folder} holds no trained organism ({CARD_FILE} is missing)")
    spec = OrganismSpec.from_json(json.loads(card.read_text(encoding="utf-8"))["spec"])
    torch.set_num_threads(spec.threads)
    model = AutoModelForImageTextToText.from_pretrained(folder, use_kernels=False,
                                                        dtype=getattr(torch, args.dtype)).eval()
    processor = AutoProcessor.from_pretrained(folder)
    problems = make_splits(spec.kinds, spec.seed, n_heldout=spec.n_heldout, n_validation=spec.n_validation)
    chosen = problems.named(args.split)[: args.n]
    scores = score_forms(model, processor, chosen)
    print(json.dumps({"split": args.split, "n": len(chosen), "dtype": args.dtype,
                      **{form: round(score.accuracy, 4) for form, score in scores.items()}}))
    return 0


def run(args: argparse.Namespace) -> int:
    """The handler of both subcommands: bad input is one line on stderr and exit code 2."""
    try:
        return _train(args) if args.organism_command == "train" else _eval(args)
    except (OrganismSpecError, OrganismTrainingError, ProblemError) as exc:
        print(f"rd-eval organism: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
