"""Where does one PWM iteration spend its time? ``torch.profiler`` on both paths of update_step.py.

Builds one configuration exactly as ``benchmarks/update_step.py`` does (same networks, data and
optimisers for ``ours`` and ``plain``), runs one warm-up iteration per path, then profiles one
iteration per path and prints the operators with the largest self CPU time (and self CUDA time
on a GPU), plus each path's total number of operator calls: the TensorDict/TorchRL overhead
shows up as extra calls and as Python-side time between kernels; scalar reads
(``aten::_local_scalar_dense``: ``item``, ``float``, ``bool`` of a tensor) are host syncs on a GPU.
It also counts the Python function calls of one iteration per path (``sys.setprofile``): the
wrapper overhead that the operator profiler does not see, and that a launch-bound GPU iteration
waits for. Unlike a time, the count does not depend on what else the machine runs.

Usage:
    python benchmarks/profile_update_step.py --config mlp --device cuda
    python benchmarks/profile_update_step.py --config flow-actor --size small --rows 20
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile
from update_step import (
    CONFIGS,
    SIZES,
    OursIteration,
    PlainIteration,
    build_models,
    make_data,
    make_optimizers,
)


def python_calls(function: Callable[[], object]) -> int:
    """Python and C function calls made while ``function()`` runs."""
    count = 0

    def tracer(frame, event, arg) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(tracer)
    try:
        function()
    finally:
        sys.setprofile(None)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="mlp", choices=list(CONFIGS))
    parser.add_argument("--size", default="5M", choices=list(SIZES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, default=15, help="operators listed per path")
    parser.add_argument(
        "--sort", default="self_cpu_time_total", choices=["self_cpu_time_total", "count"]
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = SIZES[args.size]
    ours_models = build_models(args.config, size, args.device)
    plain_models = copy.deepcopy(ours_models)
    data = make_data(size, args.device)
    paths = {
        "ours": OursIteration(*ours_models, make_optimizers(*ours_models), data, size),
        "plain": PlainIteration(*plain_models, make_optimizers(*plain_models), data, size),
    }
    activities = [ProfilerActivity.CPU]
    if args.device.startswith("cuda"):
        activities.append(ProfilerActivity.CUDA)
    for name, iteration in paths.items():
        iteration()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        with profile(activities=activities) as prof:
            iteration()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
        events = prof.key_averages()
        calls = sum(event.count for event in events)
        # Every scalar read (item, float, bool, tolist of a CUDA tensor) waits for the GPU.
        syncs = sum(event.count for event in events if event.key == "aten::_local_scalar_dense")
        print(
            f"=== {args.config} ({args.size}, {args.device}) — {name}: {calls:,} operator calls, "
            f"{syncs:,} scalar reads, {python_calls(iteration):,} Python function calls"
        )
        print(events.table(sort_by=args.sort, row_limit=args.rows, max_name_column_width=48))


if __name__ == "__main__":
    main()
