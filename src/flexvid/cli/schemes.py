"""`flexvid schemes`: list the sampling schemes, or show one's stages as text/JSON and a PNG picture."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flexvid.schemes import get_scheme, is_scheme_file, plan_stages, render_scheme_png, scheme_class, scheme_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="list the registered schemes (the default)")
    show = actions.add_parser("show", help="print a scheme's stages (and draw them to a PNG with --out)")
    show.add_argument("name", help="registered scheme name or a scheme .yaml file")
    show.add_argument("--T", type=int, default=None, help="video length (default 300; a YAML file may set it)")
    show.add_argument("--n_obs", type=int, default=None, help="frames observed at the start (default 36)")
    show.add_argument("--max_frames", type=int, default=None, help="K, frames per network call (default 20)")
    show.add_argument("--max_latent_frames", type=int, default=None,
                      help="frames generated per stage (default max_frames // 2)")
    show.add_argument("--schedule", default=None, help="schedule file (.pt or .json) for the optimized scheme")
    show.add_argument("--base", default=None, help="base scheme of the optimized scheme (default autoreg)")
    show.add_argument("--json", action="store_true", help="print the stages as JSON: [{\"obs\": [...], \"latent\": [...]}]")
    show.add_argument("--out", default=None, help="also draw the stages to this PNG file")


def run(args: argparse.Namespace) -> int:
    if args.action == "show":
        return _show(args)
    for name in scheme_names():
        print(f"{name:14} {scheme_class(name).description}")
    print("Also: a .yaml scheme file (explicit stages, or 'scheme:' with parameters); see `flexvid schemes show -h`.")
    return 0


def _show(args: argparse.Namespace) -> int:
    values = {"video_length": args.T, "num_observed_frames": args.n_obs,
              "max_frames": args.max_frames, "step_size": args.max_latent_frames}
    options = {key: value for key, value in (("schedule", args.schedule), ("base", args.base)) if value is not None}
    if not is_scheme_file(args.name):
        defaults = {"video_length": 300, "num_observed_frames": 36, "max_frames": 20}
        values = {key: defaults[key] if value is None and key in defaults else value for key, value in values.items()}
        if values["step_size"] is None:
            values["step_size"] = values["max_frames"] // 2
    scheme = get_scheme(args.name, **values, **options)
    stages = plan_stages(scheme)
    if args.json:
        print(json.dumps([stage.to_dict() for stage in stages]))
    else:
        print(f"{scheme.describe()}: {len(stages)} stages")
        for number, stage in enumerate(stages):
            print(f"stage {number:3d}: observe {list(stage.obs)} -> generate {list(stage.latent)}")
    if args.out:
        render_scheme_png(stages, scheme.video_length, Path(args.out))
        print(f"Wrote the scheme picture to {args.out}", file=sys.stderr if args.json else sys.stdout)
    return 0
