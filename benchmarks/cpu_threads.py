"""Why a CPU training result depends on the thread count: one demo training step (forward, losses, backward) at 1
and at N intra-op threads, compared bit for bit, with oneDNN (mkldnn) on and off.

Prints, for each setting, whether the step repeats at the same thread count, the first modules (in call order)
whose outputs differ between 1 and N threads, and how many parameter gradients differ. Dropout and drop-path are
off, so that only arithmetic can differ.

    .venv/bin/python benchmarks/cpu_threads.py [--threads 2] [--data-root data/demo]
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch


def one_step(model: torch.nn.Module, batch: dict, threads: int) -> tuple[dict, dict, float]:
    """Module outputs (by name, call order), parameter gradients and the loss of one step on a copy of ``model``."""
    torch.set_num_threads(threads)
    model = copy.deepcopy(model)  # the loss normaliser is state: every step starts from the same one
    outputs: dict[str, torch.Tensor] = {}
    hooks = [module.register_forward_hook(
        lambda mod, args, out, name=name: outputs.__setitem__(name, out.detach().clone())
        if torch.is_tensor(out) else None) for name, module in model.named_modules() if name]
    out = model(batch["feats"], batch["mask"])
    losses = model.losses(out, batch["segments"], batch["labels"])
    losses["final_loss"].backward()
    for hook in hooks:
        hook.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return outputs, grads, float(losses["final_loss"].detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-root", default=None, help="demo data (default data/demo, generated when missing)")
    args = parser.parse_args()
    from tal_kit.config import REPO_ROOT, load_config
    from tal_kit.data.dataset import TALDataset, collate_videos
    from tal_kit.model import ActionFormer
    from tal_kit.data.demo import ensure_demo_data

    root = Path(args.data_root) if args.data_root else REPO_ROOT / "data" / "demo"
    ensure_demo_data(root)
    cfg = load_config("demo", ["train_cfg.dropout=0.0", "train_cfg.droppath=0.0"])
    dataset = TALDataset(cfg, root, split=cfg.train_split, is_training=True)
    torch.manual_seed(0)
    batch = collate_videos([dataset[i] for i in range(cfg.loader.batch_size)], cfg.dataset.max_seq_len, 1, True)
    torch.manual_seed(1)
    model = ActionFormer(cfg).train()
    print(f"torch {torch.__version__}; one demo step, batch {list(batch['feats'].shape)}; 1 vs {args.threads} threads")
    for mkldnn in (True, False):
        torch.backends.mkldnn.enabled = mkldnn
        out_1, grad_1, loss_1 = one_step(model, batch, 1)
        out_1b, grad_1b, _ = one_step(model, batch, 1)
        out_n, grad_n, loss_n = one_step(model, batch, args.threads)
        repeats = all(torch.equal(grad_1[k], grad_1b[k]) for k in grad_1)
        differing = [n for n in out_1 if n in out_n and not torch.equal(out_1[n], out_n[n])]
        grads = sum(not torch.equal(grad_1[k], grad_n[k]) for k in grad_1)
        print(f"\noneDNN {'on ' if mkldnn else 'off'}: same step twice at 1 thread identical: {repeats}; "
              f"loss {loss_1!r} vs {loss_n!r}")
        print(f"  modules whose output differs: {len(differing)} of {len(out_1)}; first: {differing[:3]}")
        if differing:
            first = out_1[differing[0]]
            share = float((first != out_n[differing[0]]).float().mean())
            print(f"  {differing[0]}: {100 * share:.0f} % of its {first.numel()} outputs differ, by at most "
                  f"{float((first - out_n[differing[0]]).abs().max()):.2e}")
        print(f"  parameter gradients that differ: {grads} of {len(grad_1)}")
    torch.backends.mkldnn.enabled = True


if __name__ == "__main__":
    main()
