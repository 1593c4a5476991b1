"""`flexvid carla-regressor train DATA_DIR`: train the CARLA position classifier or regressor."""

from __future__ import annotations

import argparse

from flexvid.cli.options import Switch
from flexvid.eval.carla_train import TrainConfig, train_position_network


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = actions.add_parser("train", help="train on a CARLA directory's train split, keep the best test loss")
    defaults = TrainConfig()
    train.add_argument(
        "data_dir", help="CARLA directory: video_<i>.pt, coords_<i>.npy, video_train.csv, video_test.csv"
    )
    train.add_argument(
        "--kind",
        choices=("classifier", "regressor"),
        required=True,
        help="the 10x10 grid-cell classifier or the 100-head position regressor",
    )
    train.add_argument(
        "--out", default=None, help="where to save the best weights (default: carla-regressor/<kind>_checkpoint.pth)"
    )
    train.add_argument(
        "--arch",
        default=defaults.arch,
        choices=("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"),
        help="ResNet backbone",
    )
    train.add_argument(
        "--base_width", type=int, default=defaults.base_width, help="stem channels (64 = standard ResNet)"
    )
    train.add_argument(
        "--init",
        default=None,
        help="torchvision-format ResNet weights (e.g. ImageNet resnet152) to start the backbone from",
    )
    train.add_argument("--epochs", type=int, default=defaults.epochs, help="passes over the train split")
    train.add_argument("--batch_size", type=int, default=defaults.batch_size, help="frames per optimiser step")
    train.add_argument("--lr", type=float, default=defaults.lr, help="SGD learning rate")
    train.add_argument("--momentum", type=float, default=defaults.momentum, help="SGD momentum")
    train.add_argument(
        "--lr_step_epochs",
        type=int,
        default=defaults.lr_step_epochs,
        help="multiply the learning rate by --lr_gamma every this many epochs",
    )
    train.add_argument("--lr_gamma", type=float, default=defaults.lr_gamma, help="learning-rate decay factor")
    train.add_argument(
        "--augment",
        action=Switch,
        default=None,
        help="blur + colour-jitter augmentation (default: on for the classifier only)",
    )
    train.add_argument("--num_workers", type=int, default=defaults.num_workers, help="data-loading worker processes")
    train.add_argument("--device", default=defaults.device, help="cpu or cuda")
    train.add_argument("--seed", type=int, default=defaults.seed, help="random seed")


def run(args: argparse.Namespace) -> int:
    config = TrainConfig(
        kind=args.kind,
        arch=args.arch,
        base_width=args.base_width,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        lr_step_epochs=args.lr_step_epochs,
        lr_gamma=args.lr_gamma,
        augment=args.augment,
        init=args.init,
        num_workers=args.num_workers,
        device=args.device,
        seed=args.seed,
    )
    out = args.out or f"carla-regressor/{args.kind}_checkpoint.pth"
    history = train_position_network(args.data_dir, out, config)
    best = min(entry["test_loss"] for entry in history)
    print(f"saved the best {args.kind} (test loss {best:.5g}) to {out}")
    return 0
