"""`flexvid schemes`: list the sampling schemes, show one's stages as text/JSON and a PNG picture, or
compute an optimised scheme's schedule for a checkpoint (`schemes optimize`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from flexvid.schemes import (
    LATENT_FRAMES_DEFAULT,
    AdaptiveScheme,
    get_scheme,
    is_scheme_file,
    latent_frames_per_stage,
    plan_stages,
    render_scheme_png,
    scheme_class,
    scheme_names,
)
from flexvid.schemes.optimize import OptimizeSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="list the registered schemes (the default)")
    show = actions.add_parser("show", help="print a scheme's stages (and draw them to a PNG with --out)")
    show.add_argument("name", help="registered scheme name or a scheme .yaml file")
    show.add_argument("--T", type=int, default=None, help="video length (default 300; a YAML file may set it)")
    show.add_argument("--n_obs", type=int, default=None, help="frames observed at the start (default 36)")
    show.add_argument("--max_frames", type=int, default=None, help="K, frames per network call (default 20)")
    show.add_argument(
        "--max_latent_frames",
        type=int,
        default=None,
        help=f"frames generated per stage (default {LATENT_FRAMES_DEFAULT})",
    )
    show.add_argument("--schedule", default=None, help="schedule file (.pt or .json) for the optimized scheme")
    show.add_argument("--base", default=None, help="base scheme of the optimized scheme (default autoreg)")
    show.add_argument("--json", action="store_true", help='print the stages as JSON: [{"obs": [...], "latent": [...]}]')
    show.add_argument("--out", default=None, help="also draw the stages to this PNG file")
    _add_optimize_arguments(
        actions.add_parser(
            "optimize",
            help="compute the observed frames of an optimised scheme for a checkpoint (greedy, on training videos)",
        )
    )


def _add_optimize_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = OptimizeSettings(base="", video_length=0, num_observed_frames=0, max_frames=0, step_size=0)
    parser.add_argument("checkpoint", help="checkpoint or training run directory (as for `flexvid sample`)")
    parser.add_argument(
        "--base", required=True, help="scheme whose latent frames are kept (the paper: autoreg or hierarchy-2)"
    )
    parser.add_argument("--T", type=int, required=True, help="video length")
    parser.add_argument("--n_obs", type=int, required=True, help="frames observed at the start")
    parser.add_argument("--max_frames", type=int, default=None, help="K, frames per network call (default: as trained)")
    parser.add_argument(
        "--max_latent_frames",
        type=int,
        default=None,
        help=f"frames generated per stage (default {LATENT_FRAMES_DEFAULT})",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="where to write the result: .pt or .json (a schedule for the optimized scheme), or .yaml "
        "(a scheme file: `flexvid sample CHECKPOINT --sampling_scheme FILE.yaml`)",
    )
    parser.add_argument(
        "--num_videos",
        type=int,
        default=defaults.num_videos,
        help=f"training videos the loss is estimated on (default {defaults.num_videos})",
    )
    parser.add_argument(
        "--num_timesteps",
        type=int,
        default=defaults.num_timesteps,
        help=f"evenly spaced diffusion steps, num_videos / num_timesteps videos each (default "
        f"{defaults.num_timesteps}: 999, 899, ..., 99)",
    )
    parser.add_argument(
        "--batch_size",
        type=int,
        default=defaults.batch_size,
        help=f"rows per network call (default {defaults.batch_size})",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the noise (default 0)")
    parser.add_argument("--data_dir", default=None, help="training data (default: as in the checkpoint's config)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")


def run(args: argparse.Namespace) -> int:
    if args.action == "show":
        return _show(args)
    if args.action == "optimize":
        return _optimize(args)
    width = max(len(name) for name in scheme_names()) + 2
    for name in scheme_names():
        print(f"{name:{width}}{scheme_class(name).description}")
    print("Also: a .yaml scheme file (explicit stages, or 'scheme:' with parameters); see `flexvid schemes show -h`.")
    print("Optimised schedules for a checkpoint: `flexvid schemes optimize -h`.")
    return 0


def _show(args: argparse.Namespace) -> int:
    values = {
        "video_length": args.T,
        "num_observed_frames": args.n_obs,
        "max_frames": args.max_frames,
        "step_size": args.max_latent_frames,
    }
    options = {key: value for key, value in (("schedule", args.schedule), ("base", args.base)) if value is not None}
    if not is_scheme_file(args.name):
        defaults = {"video_length": 300, "num_observed_frames": 36, "max_frames": 20}
        values = {key: defaults[key] if value is None and key in defaults else value for key, value in values.items()}
        values["step_size"] = latent_frames_per_stage(values["max_frames"], values["step_size"])
    scheme = get_scheme(args.name, **values, **options)
    if isinstance(scheme, AdaptiveScheme):
        return _show_adaptive(scheme, args)
    stages = plan_stages(scheme)
    if args.json:
        print(json.dumps([stage.to_dict() for stage in stages]))
    else:
        print(f"{scheme.describe()}: {len(stages)} stages")
        for number, stage in enumerate(stages):
            print(f"stage {number:3d}: observe {list(stage.obs)} -> generate {list(stage.latent)}")
    _draw(stages, scheme.video_length, args)
    return 0


def _show_adaptive(scheme: AdaptiveScheme, args: argparse.Namespace) -> int:
    """An adaptive scheme's stages: the frames known before sampling; the rest are chosen per video."""
    stages = scheme.stages()
    if args.json:
        print(json.dumps([stage.to_dict() for stage in stages]))
    else:
        print(
            f"{scheme.describe()}: {len(stages)} stages; each video also observes the done frames farthest "
            "apart in LPIPS, up to the stage's slots"
        )
        for number, stage in enumerate(stages):
            extra = stage.slots - len(stage.always)
            chosen = f" + {extra} chosen per video" if extra else ""
            print(f"stage {number:3d}: observe {sorted(stage.always)}{chosen} -> generate {list(stage.latent)}")
    _draw([stage.fixed_part() for stage in stages], scheme.video_length, args)
    return 0


def _draw(stages: list, video_length: int, args: argparse.Namespace) -> None:
    """The PNG picture, only when --out asks for one."""
    if args.out:
        render_scheme_png(stages, video_length, Path(args.out))
        print(f"Wrote the scheme picture to {args.out}", file=sys.stderr if args.json else sys.stdout)


def _optimize(args: argparse.Namespace) -> int:
    """Load the model and training videos, optimise stage by stage (resumable), write the result."""
    from flexvid.checkpoint import load_pretrained
    from flexvid.data.base import build_dataset
    from flexvid.diffusion import build_diffusion
    from flexvid.schemes.optimize import (
        base_stages,
        check_output,
        check_settings,
        load_training_videos,
        model_digest,
        optimize_schedule,
        partial_path,
        write_schedule,
    )

    out = check_output(args.out)
    pretrained = load_pretrained(args.checkpoint, device=args.device)
    config = pretrained.config
    data = config.data
    max_frames = args.max_frames or data.max_frames
    settings = OptimizeSettings(
        base=args.base,
        video_length=args.T,
        num_observed_frames=args.n_obs,
        max_frames=max_frames,
        step_size=latent_frames_per_stage(max_frames, args.max_latent_frames),
        num_videos=args.num_videos,
        num_timesteps=args.num_timesteps,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    check_settings(settings)
    base_stages(settings)  # a bad base scheme or parameters fail before the training videos load
    # The loss is estimated on the diffusion's own steps, whatever respacing the checkpoint samples with.
    diffusion_config = dataclasses.replace(config.diffusion, timestep_respacing="")
    data_dir = args.data_dir or data.data_dir
    dataset = build_dataset(data.dataset, "train", T=args.T, image_size=data.image_size, data_dir=data_dir)
    videos = load_training_videos(dataset, settings.num_videos, settings.seed)
    identity = {
        "model_sha256": model_digest(pretrained.model),
        "dataset": data.dataset,
        "data_dir": None if data_dir is None else str(data_dir),
    }
    partial = partial_path(out)
    if partial.is_file():
        print(f"Resuming from {partial}", file=sys.stderr)
    results = optimize_schedule(
        pretrained.model,
        build_diffusion(diffusion_config),
        videos,
        settings,
        device=args.device,
        partial=partial,
        identity=identity,
    )
    write_schedule(out, results, settings)
    partial.unlink(missing_ok=True)
    for number, result in results.items():
        print(
            f"stage {number:3d}: observe {list(result.observed)}  loss {result.loss:.5f} (base {result.base_loss:.5f})"
        )
    if results:
        mean, base = (sum(getattr(r, key) for r in results.values()) / len(results) for key in ("loss", "base_loss"))
        print(
            f"mean latent epsilon-MSE over {len(results)} stages: {mean:.5f} optimised, "
            f"{base:.5f} with {args.base}'s frames"
        )
    if out.suffix in (".yaml", ".yml"):
        print(f"Wrote {out}; sample with --sampling_scheme {out}.")
    else:
        print(f"Wrote {out}; use it as the schedule of the optimized scheme with base {args.base}.")
    return 0
