"""Train a digit model and save it as a checkpoint; with no options it rebuilds a shipped one.

    python -m vision_core.train lenet                 # the shipped recipe, seeded: rebuilds checkpoints/lenet.*
    python -m vision_core.train vit --epochs 5 --name vit-short --out checkpoints/runs

It prints the events of ``vision_core.training.fine_tune``, the same generator the app uses.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from vision_core.checkpoints import CHECKPOINT_DIR, save_checkpoint
from vision_core.registry import get_spec, list_models
from vision_core.training import RunFinished, TrainConfig, fine_tune, recipe_for, run_card


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vision_core.train", description=__doc__.split("\n")[0])
    parser.add_argument("model", choices=list_models(task="digits"), help="which digit model to train")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", help="auto (default), cpu or cuda")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--name", help="checkpoint name (default: the model's name, which replaces the shipped one)")
    parser.add_argument("--out", type=Path, default=CHECKPOINT_DIR, help=f"output folder (default {CHECKPOINT_DIR})")
    parser.add_argument("--print-every", type=int, default=50, help="print a step line every N steps")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg: TrainConfig = recipe_for(
        args.model, epochs=args.epochs, max_steps=args.max_steps, lr=args.lr, batch_size=args.batch_size,
        train_size=args.train_size, seed=args.seed, device=args.device,
    )  # fmt: skip
    print(f"training {args.model} with {cfg}", flush=True)
    for event in fine_tune(cfg):
        if isinstance(event, RunFinished):
            finished = event
        elif event.kind == "step" and event.step % args.print_every == 0:
            print(
                f"  step {event.step:6d}  epoch {event.epoch:3d}  loss {event.loss:.4f}  lr {event.lr:.2e}  {event.samples_per_s:,.0f} img/s",
                flush=True,
            )
        elif event.kind == "epoch":
            print(
                f"epoch {event.epoch:3d} {event.split:5s}  loss {event.loss:.4f}  acc {event.accuracy:.4%}  ({event.elapsed:.0f} s)",
                flush=True,
            )

    name = args.name or args.model
    card = run_card(cfg, finished, name)  # the same card the Fine-tune page saves
    if name == args.model:  # a rebuilt shipped checkpoint keeps its plain title
        card = dataclasses.replace(card, title=get_spec(args.model).title)
    path = save_checkpoint(finished.model.cpu(), card, args.out)
    print(
        f"test accuracy {finished.accuracy:.4%}  macro-F1 {finished.f1_macro:.4f}  loss {finished.loss:.4f}  "
        f"trained in {finished.train_seconds:.0f} s on {finished.device}; saved {path}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
