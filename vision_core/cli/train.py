"""Train a model and save it as a checkpoint; with no options it rebuilds a shipped one with its family's recipe.

    python -m vision_core train lenet                 # the shipped recipe, seeded: rebuilds checkpoints/lenet.*
    python -m vision_core train vit --epochs 5 --name vit-short --out checkpoints/runs

It prints the events of ``vision_core.training.fine_tune``, the same generator the app's runs use.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from vision_core.checkpoints import CHECKPOINT_DIR, save_checkpoint
from vision_core.registry import get_spec, list_models
from vision_core.runs import TrainedWeights, run_card
from vision_core.training import RunFinished, TrainConfig, TrainEvent, build_for_training, fine_tune, recipe_for


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vision_core train", description=__doc__.split("\n")[0])
    parser.add_argument("model", choices=list_models(source="shipped"), help="which model to train")
    for flag, kind in (("--epochs", int), ("--max-steps", int), ("--lr", float), ("--batch-size", int), ("--train-size", int), ("--seed", int)):  # fmt: skip
        parser.add_argument(flag, type=kind)
    parser.add_argument("--device", help="auto (default), cpu or cuda")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--name", help="checkpoint name (default: the model's name, which replaces the shipped one)")
    parser.add_argument("--out", type=Path, default=CHECKPOINT_DIR, help=f"output folder (default {CHECKPOINT_DIR})")
    parser.add_argument("--print-every", type=int, default=50, help="print a step line every N steps")
    return parser.parse_args(argv)


def report(event: TrainEvent, print_every: int) -> None:
    if event.kind == "step" and event.step % print_every == 0:
        print(f"  step {event.step:6d}  epoch {event.epoch:3d}  loss {event.loss:.4f}  lr {event.lr:.2e}  {event.samples_per_s:,.0f} img/s", flush=True)  # fmt: skip
    elif event.kind == "epoch":
        print(f"epoch {event.epoch:3d} {event.split:5s}  loss {event.loss:.4f}  acc {event.accuracy:.4%}  ({event.elapsed:.0f} s)", flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    options = ("epochs", "max_steps", "lr", "batch_size", "train_size", "seed", "device")
    cfg: TrainConfig = recipe_for(args.model, **{key: getattr(args, key) for key in options})
    print(f"training {args.model} with {cfg}", flush=True)
    model = build_for_training(cfg)
    for event in fine_tune(cfg, model=model):
        report(event, args.print_every)
        finished = event
    if not isinstance(finished, RunFinished):
        return 1
    name = args.name or args.model
    weights = TrainedWeights({}, get_spec(args.model).architecture, dataclasses.asdict(model.config))
    card = run_card(cfg, finished, name, weights)  # the same card the app's saved runs carry
    if name == args.model:  # a rebuilt shipped checkpoint keeps its plain title
        card = dataclasses.replace(card, title=get_spec(args.model).title)
    path = save_checkpoint(model.cpu(), card, args.out)
    print(
        f"test accuracy {finished.accuracy:.4%}  macro-F1 {finished.f1_macro:.4f}  loss {finished.loss:.4f}  "
        f"trained in {finished.train_seconds:.0f} s on {finished.device}; saved {path}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
