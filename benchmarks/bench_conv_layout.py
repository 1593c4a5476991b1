"""Time each 3x3 convolution shape of the paper-size networks in NCHW and in channels-last memory.

flexvid runs its U-Net in channels-last memory; this checks, shape by shape, whether NCHW would be
faster anywhere (a layout that helps only some shapes would be chosen per shape). Forward without
gradients, float32, the two layouts interleaved, minimum over rounds of the median of --repeats runs:

    python benchmarks/bench_conv_layout.py --threads 2
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

# (frames, input channels, height and width, output channels): the 64x64 model's levels (128 to 512
# channels at 64 to 8 pixels), the inputs of its output blocks (skip connections concatenated), and
# the 64-channel configurations.
SHAPES = (
    (20, 128, 64, 128),
    (20, 256, 64, 128),
    (20, 128, 32, 256),
    (20, 256, 32, 256),
    (20, 512, 32, 256),
    (20, 384, 16, 384),
    (20, 512, 8, 512),
    (20, 64, 64, 64),
    (20, 64, 32, 64),
    (20, 128, 32, 128),
)


def median_ms(run: Callable[[], torch.Tensor], repeats: int) -> float:
    """Median wall milliseconds of `repeats` runs after one warm-up run."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per layout and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds alternating the two layouts")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, forward without gradients\n")
    print("| frames x channels x size -> channels | NCHW (ms) | channels-last (ms) | NCHW / channels-last |")
    print("|---|---:|---:|---:|")
    gen = torch.Generator().manual_seed(0)
    for frames, c_in, size, c_out in SHAPES:
        x = torch.randn(frames, c_in, size, size, generator=gen)
        weight = torch.randn(c_out, c_in, 3, 3, generator=gen) * 0.01
        bias = torch.zeros(c_out)
        inputs = {"nchw": x, "channels_last": x.contiguous(memory_format=torch.channels_last)}
        best = dict.fromkeys(inputs, float("inf"))
        with torch.no_grad():
            for _ in range(args.rounds):
                for layout, data in inputs.items():
                    run = functools.partial(F.conv2d, data, weight, bias, padding=1)
                    best[layout] = min(best[layout], median_ms(run, args.repeats))
        print(
            f"| {frames} x {c_in} x {size}x{size} -> {c_out} | {best['nchw']:.1f} | {best['channels_last']:.1f} "
            f"| {best['nchw'] / best['channels_last']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
