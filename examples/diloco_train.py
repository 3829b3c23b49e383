"""DiLoCo training of a digit classifier with pccl: peers join late, crash, and agree bit for bit.

    pip install ".[examples]"
    pccl-run -n 3 --spawn-later 15 --kill 1@30 examples/diloco_train.py --plot diloco_loss.png

Data: scikit-learn's bundled handwritten digits (1797 8x8 images, no download). A fixed
20 % is held out; the rest is cut into --shards shards and peer i trains on shard
i % shards only. Model: an MLP (64 -> hidden -> hidden -> 10); training images are shifted by up to a
pixel at random. Each outer step is
--inner-steps AdamW steps on the peer's own shard, then a DiLoCo outer step
(pccl.diloco.DiLoCo): the pseudo-gradients are averaged over all peers with a pccl
all-reduce and an outer SGD with Nesterov momentum moves the shared outer model, which
every peer then holds bit-identically. Every peer prints, per outer step, its mean inner
training loss, the held-out loss and accuracy of the outer model, the run's world size and
the bytes it sent and received; peer 0 draws the curves to --plot (matplotlib, Agg).

Under pccl-run (PCCL_MASTER_ADDR, PCCL_PEER_INDEX, PCCL_WORLD_SIZE set by the launcher)
the first PCCL_WORLD_SIZE peers wait for each other and start together; a peer started
later (--spawn-later) joins the running run: it is admitted at the end of an outer step,
receives the outer model and momentum buffers, and trains from there. A peer killed with
--kill makes the others' next collective fail; they retry on the survivors and go on.
Everyone stops at outer step --outer-steps (the shared-state revision, which a joiner
adopts), so a joiner runs fewer steps.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pccl
import torch
from pccl.diloco import DiLoCo
from sklearn.datasets import load_digits


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--outer-steps", type=int, default=300, help="outer steps of the run")
    p.add_argument("--inner-steps", type=int, default=40, help="AdamW steps per outer step (H)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--inner-lr", type=float, default=1e-4)
    p.add_argument("--outer-lr", type=float, default=None,
                   help="outer SGD learning rate (default 0.7; 0.3 with --async)")
    p.add_argument("--outer-momentum", type=float, default=0.9, help="outer Nesterov momentum")
    p.add_argument("--shards", type=int, default=4, help="training shards; peer i uses i %% shards")
    p.add_argument("--async", dest="asynchronous", action="store_true",
                   help="async DiLoCo: each all-reduce overlaps the next inner phase")
    p.add_argument("--quantize", action="store_true",
                   help="send pseudo-gradients as uint8 (MIN_MAX) instead of float32")
    p.add_argument("--plot", default="diloco_loss.png", help="loss-curve PNG (peer 0 writes it)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def load_shard(index: int, shards: int, seed: int) -> tuple[torch.Tensor, ...]:
    """(train x, train y) of this peer's shard and the held-out (x, y) everyone shares."""
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = len(x) // 5
    test, train = order[:n_test], order[n_test:]
    mine = train[index % shards::shards]
    return x[mine], y[mine], x[test], y[test]


def build_model(hidden: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, 10))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shifts each 8x8 image by up to one pixel in each direction (zero fill)."""
    images = torch.nn.functional.pad(x.view(-1, 1, 8, 8), (1, 1, 1, 1))
    dy, dx = torch.randint(0, 3, (2,), generator=gen).tolist()
    return images[:, :, dy:dy + 8, dx:dx + 8].reshape(-1, 64)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y).item()
    return loss, (logits.argmax(1) == y).float().mean().item()


def plot(path: str, history: list[dict[str, float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(steps, [h["train_loss"] for h in history], label="train loss (mean over inner steps)")
    top.plot(steps, [h["test_loss"] for h in history], label="held-out loss (outer model)")
    top.set_yscale("log")
    top.set_ylabel("cross-entropy")
    top.legend()
    top.set_title(title)
    bottom.plot(steps, [100 * h["test_acc"] for h in history], color="tab:green",
                label="held-out accuracy (%)")
    bottom.set_ylabel("accuracy (%)")
    bottom.set_xlabel("outer step")
    world = bottom.twinx()
    world.step(steps, [h["world"] for h in history], where="post", color="tab:gray",
               label="peers in the run")
    world.set_ylabel("peers")
    world.set_ylim(0, max(h["world"] for h in history) + 1)
    lines = bottom.get_legend_handles_labels()[0] + world.get_legend_handles_labels()[0]
    bottom.legend(lines, [str(line.get_label()) for line in lines], loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    if args.outer_lr is None:
        # One step late, an update feeds back into the next pseudo-gradient (it is measured
        # from the updated outer model); with momentum, 0.7 oscillates on this task.
        args.outer_lr = 0.3 if args.asynchronous else 0.7
    torch.set_num_threads(1)
    index = int(os.environ.get("PCCL_PEER_INDEX", "0"))
    founders = int(os.environ.get("PCCL_WORLD_SIZE", "1"))
    address = os.environ.get("PCCL_MASTER_ADDR", "127.0.0.1:48148")
    x_train, y_train, x_test, y_test = load_shard(index, args.shards, args.seed)
    torch.manual_seed(args.seed + index)  # the founders' election keeps peer 0's weights
    model = build_model(args.hidden)
    inner = torch.optim.AdamW(model.parameters(), lr=args.inner_lr)
    quantization = (pccl.QuantizationOptions(pccl.DataType.UINT8, pccl.QuantizationAlgorithm.MIN_MAX)
                    if args.quantize else None)

    comm = pccl.Communicator(address, p2p_connection_pool_size=2)
    comm.connect(n_attempts=10)
    if index < founders:
        comm.wait_for_world(founders, timeout=120)
    diloco = DiLoCo(model, inner, comm, asynchronous=args.asynchronous,
                    outer_optimizer=lambda params: torch.optim.SGD(
                        params, lr=args.outer_lr, momentum=args.outer_momentum, nesterov=True,
                        foreach=False),
                    quantization=quantization)
    joined = diloco.start()
    print(f"peer {index}: {'joined at' if index >= founders else 'starts at'} outer step "
          f"{diloco.step}, received {joined.sync_rx_bytes / 1e6:.2f} MB of outer state; "
          f"shard {index % args.shards}: {len(x_train)} images", flush=True)

    gen = torch.Generator().manual_seed(args.seed * 1000 + index)
    history: list[dict[str, float]] = []
    sent = received = 0
    started = time.monotonic()
    while diloco.step < args.outer_steps:
        losses = []
        for _ in range(args.inner_steps):
            batch = torch.randint(len(x_train), (args.batch,), generator=gen)
            x = augment(x_train[batch], gen)
            loss = torch.nn.functional.cross_entropy(model(x), y_train[batch])
            inner.zero_grad()
            loss.backward()
            inner.step()
            losses.append(loss.item())
        info = diloco.outer_step()
        test_loss, test_acc = evaluate(model, x_test, y_test)  # model == outer model now
        sent += info.tx_bytes
        received += info.rx_bytes
        world = comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE)
        history.append({"step": info.step, "train_loss": float(np.mean(losses)),
                        "test_loss": test_loss, "test_acc": test_acc, "world": world})
        print(f"step {info.step:3d}  world {world}  train loss {np.mean(losses):.4f}  "
              f"held-out loss {test_loss:.4f} acc {100 * test_acc:5.1f}%  "
              f"sent {info.tx_bytes / 1e3:7.1f} kB recv {info.rx_bytes / 1e3:7.1f} kB  "
              f"(averaged over {info.world}){'  admitted new peers' if info.admitted else ''}",
              flush=True)
    diloco.close()
    elapsed = time.monotonic() - started
    print(f"peer {index}: done at outer step {diloco.step} in {elapsed:.0f} s; held-out "
          f"accuracy {100 * history[-1]['test_acc']:.1f}%; sent {sent / 1e6:.2f} MB, received "
          f"{received / 1e6:.2f} MB; outer state hash {hash(diloco.state_hashes()) & 0xffffffff:08x}",
          flush=True)
    if index == 0 and args.plot:
        mode = "async DiLoCo" if args.asynchronous else "DiLoCo"
        plot(args.plot, history, f"{mode} on sklearn digits, H={args.inner_steps}, pccl")
        print(f"peer 0: wrote {args.plot}", flush=True)
    comm.close()


if __name__ == "__main__":
    main()
