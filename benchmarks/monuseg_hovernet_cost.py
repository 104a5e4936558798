"""What would MONAI's HoVerNet cost to train here, against the shipped monuseg U-Net? One training step each.

Issue 17 names HoVerNet (Graham et al. 2019, Med Image Anal 58:101563, doi:10.1016/j.media.2019.101563) from
``monai.networks.nets`` as one way to segment nuclei; breastdx ships a U-Net (``UNET_ARGS`` of
``breastdx.tasks.monuseg``: 5 levels, 16-256 channels, 1 residual unit) with a boundary class and a watershed. This
times, in the same process on the same CPU threads, a training step (forward, a loss on every output, backward, an
Adam step) of each on the shipped recipe's batch (8 random RGB patches) at the patch size each network takes:

* the U-Net at 128² (the shipped recipe: 400 patches an epoch, 100 epochs = 5,000 steps);
* HoVerNet in ``fast`` mode at 256² (its output is 164² there: MONAI's valid-padding decoder crops 46 px a side,
  so it needs larger patches than the U-Net to cover the same output), with its three branches (nucleus pixels,
  horizontal-vertical distances, no type branch) as ``monai.apps.pathology`` trains it.

It prints the machine, parameters, median seconds per step over ``--steps`` timed steps (after 1 untimed; the two
networks' steps alternate, so that a shared machine's noise falls on both alike), and what 5,000 steps would take. No data are read; no weights are downloaded (no ImageNet encoder).

Usage::

    python benchmarks/monuseg_hovernet_cost.py [--threads 2] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from _machine import machine_line

STEPS_SHIPPED = 5_000  # 400 patches an epoch / batch 8 x 100 epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    from monai.networks.nets import HoVerNet

    from breastdx.models.networks import unet
    from breastdx.tasks.monuseg import UNET_ARGS

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(machine_line(), flush=True)

    def unet_step(net, x):
        out = net(x)  # (B, 3, H, W): background, interior, boundary
        return torch.nn.functional.cross_entropy(out, torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.long))

    def hovernet_step(net, x):
        out = net(x)  # {"nucleus_prediction": (B, 2, h, w), "horizontal_vertical": (B, 2, h, w)}
        np_out, hv_out = out["nucleus_prediction"], out["horizontal_vertical"]
        target = torch.zeros(np_out.shape[0], *np_out.shape[2:], dtype=torch.long)
        return torch.nn.functional.cross_entropy(np_out, target) + hv_out.pow(2).mean()

    arms = [("unet (shipped)", unet(3, 3, **UNET_ARGS), 128, unet_step),
            ("hovernet fast", HoVerNet(mode="fast", in_channels=3, np_out_channels=2, out_classes=0), 256,
             hovernet_step)]
    state = []
    for name, net, size, step in arms:
        net.train()
        state.append((torch.optim.Adam(net.parameters(), lr=1e-4), torch.rand(args.batch, 3, size, size), []))
    for i in range(args.steps + 1):  # the arms' steps in turn
        for (_, net, _, step), (opt, x, times) in zip(arms, state):
            start = time.perf_counter()
            opt.zero_grad()
            step(net, x).backward()
            opt.step()
            if i >= 1:
                times.append(time.perf_counter() - start)
    results = {}
    for (name, net, size, _), (_, _, times) in zip(arms, state):
        median = statistics.median(times)
        results[name] = median
        print(json.dumps({"network": name, "patch": size, "batch": args.batch,
                          "parameters": sum(p.numel() for p in net.parameters()),
                          "seconds_per_step_median": round(median, 3), "min": round(min(times), 3),
                          "max": round(max(times), 3),
                          "hours_for_5000_steps": round(median * STEPS_SHIPPED / 3600, 2)}),
              flush=True)
    print(json.dumps({"hovernet_over_unet": round(results["hovernet fast"] / results["unet (shipped)"], 1)}))


if __name__ == "__main__":
    main()
