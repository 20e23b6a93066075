"""`rd-eval organism`: train the model organism (a small Qwen3-VL-MoE) and measure it on its splits.

    rd-eval organism train --out DIR [--seed N] [--threads N] [--kinds K,K [--kind-weights W,W]]
                           [--mix T,S,I] [--plain-only [--steps N]]
    rd-eval organism eval --model DIR [--split heldout] [--n 200] [--dtype bfloat16] [--figures]

`train` runs the whole recipe (`rd_eval.organism.recipe`: plain, image-QA-rich fine-tuning, routing induction) and
is resumable: run it again with the same settings and it continues from the last checkpoint in DIR.
`--plain-only` trains phase (a) alone into DIR (the organism whose gap emerged from the mix, nothing induced).
`eval --figures` adds the soft intervention on the card's domain experts and the random control, with CIs.
torch is imported only when a subcommand runs (the command line builds its parser before any work).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from rd_eval.organism.problems import OPERATORS, SPLIT_NAMES, ProblemError
from rd_eval.organism.spec import OrganismSpec, OrganismSpecError
from rd_eval.organism.train import OrganismTrainingError

EXIT_BAD_INPUT = 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `organism train` and `organism eval` under the rd-eval command line."""
    p = subparsers.add_parser("organism", help="train and measure the model organism (a small MoE VLM)")
    sub = p.add_subparsers(dest="organism_command", required=True, metavar="{train,eval}")
    defaults = OrganismSpec()

    t = sub.add_parser("train", help="train the organism's whole recipe into DIR (resumes from DIR's checkpoints)")
    t.add_argument("--out", required=True, metavar="DIR", help="folder for the model and its training checkpoint")
    t.add_argument("--seed", type=int, default=defaults.seed, help=f"weights and data seed (default {defaults.seed})")
    t.add_argument("--plain-only", action="store_true",
                   help="train only phase (a), the plain recipe (nothing induced), into DIR")
    t.add_argument("--steps", type=int, default=defaults.steps,
                   help=f"phase (a)'s training steps (default {defaults.steps})")
    t.add_argument("--kinds", type=_names, default=defaults.kinds, metavar="K,K",
                   help=f"problem kinds to train on, of {', '.join(OPERATORS)} (default {','.join(defaults.kinds)})")
    t.add_argument("--kind-weights", type=_weights, default=None, metavar="W,W",
                   help="each kind's share of the drawn examples, in --kinds order (default: "
                        f"{','.join(f'{w:g}' for w in defaults.kind_weights)} for the default kinds; for other kinds "
                        "a uniform draw over the training problems)")
    t.add_argument("--mix", type=_weights, default=defaults.mix, metavar="T,S,I",
                   help="phase (a)'s shares of text QA, transcription and image QA in a batch (default "
                        f"{','.join(f'{m:g}' for m in defaults.mix)})")
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
    e.add_argument("--figures", action="store_true",
                   help="also the soft intervention (lambda 1, band 0.25-0.75) on the card's domain experts and the "
                        "seeded random control, with paired bootstrap CIs (an induced organism's card names them)")
    e.set_defaults(func=run)


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(","))


def _weights(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def _train(args: argparse.Namespace) -> int:
    from rd_eval.organism.recipe import Recipe, run_recipe
    from rd_eval.organism.train import train

    defaults = OrganismSpec()
    if args.kind_weights is None:
        weights = defaults.kind_weights if args.kinds == defaults.kinds else ()
    else:
        weights = args.kind_weights
    spec = replace(defaults, seed=args.seed, steps=args.steps, threads=args.threads, kinds=args.kinds,
                   kind_weights=weights, mix=args.mix)
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731
    started = time.perf_counter()
    if args.plain_only:
        result = train(spec, Path(args.out), progress=not args.no_progress, log=say)
        print(f"organism: {result.steps} steps in {args.out} ({result.wall_s:.0f} s this run, "
              f"resumed from step {result.resumed_from})")
        return 0
    if args.steps != OrganismSpec().steps:
        raise OrganismSpecError("--steps applies to --plain-only; the whole recipe's phases have fixed lengths")
    card = run_recipe(Recipe(plain=spec), Path(args.out), progress=not args.no_progress, log=say)
    print(f"organism: whole recipe in {args.out} ({time.perf_counter() - started:.0f} s this run); domain experts "
          f"{card['domain_experts']}, weights sha256 {card['weights_sha256']}")
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
    if args.figures:
        from rd_eval.organism.figures import organism_figures

        experts = json.loads(card.read_text(encoding="utf-8")).get("domain_experts")
        if not experts:
            raise OrganismSpecError(f"{card} names no domain_experts (a --plain-only organism has none): "
                                    "--figures needs an organism of the whole recipe")
        figures = organism_figures(model, processor, chosen, {int(i): d for i, d in experts.items()})
        print(json.dumps({"split": args.split, "dtype": args.dtype, **figures}))
        return 0
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
