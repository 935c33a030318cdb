"""A character-level recurrent network on shipped text: tuned RMSProp vs tuned SGD (and Adam).

A one-layer GRU (embedding 32, hidden 64) predicts the next character of Shakespeare's Hamlet
(public domain; ``rmsprop/data/hamlet.txt``, see the data README): the first 90% for training,
then 5% for validation and the last 5% for test, sequences of 32 characters, batches of 32,
gradient norm clipped at 5 (as in char-rnn) for every optimizer. ``rmsprop.torch.RMSprop``
(rho 0.9, eps 1e-8), ``torch.optim.SGD`` and ``torch.optim.Adam``, each on its own grid, chosen
by the final validation loss; the judged figure is the test loss at that lr (so the choice of lr
does not flatter the figure). Per seed the same initial weights and batches for every optimizer
and lr.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
import torch
from torch import nn

from ._base import Table, new_figure
from ._plots import best_lr_bands, lr_sweep
from ._protocol import Config, Criterion, Measurement, Spec, interval, log_grid, tune
from .digits import COLORS, MAKE  # the same three optimizers, as made for the digits MLP

SEQ, BATCH, HIDDEN, EMBED = 32, 32, 64, 32
VAL_SEQS = 64
EVAL_EVERY = 25
CLIP = 5.0
SPEC = Spec(
    name="rnn",
    summary="character-level GRU on Hamlet: tuned RMSProp vs tuned SGD (and Adam), validation loss",
    section="Overview",
    claim="This per-parameter rescaling helps the optimizer make rapid progress on shallow "
          "directions of the loss landscape without diverging on steep ones, and it has "
          "historically been the default optimizer for recurrent neural networks before the "
          "rise of Adam.",
    hypothesis="On a character-level GRU, RMSProp at its best lr (by validation loss) reaches "
               "a lower test loss than SGD at its best lr within the same budget: SGD / RMSProp "
               "test loss, paired per seed, > 1.",
    criteria=(Criterion("sgd_over_rmsprop_test_loss", ">", 1.0,
                        "a recurrent-network default must beat tuned SGD; 1 is a tie"),),
    optimizers={"RMSProp": log_grid(2e-3, 2e-2, 3), "Adam": log_grid(2e-3, 2e-2, 3),
                "SGD": log_grid(1.0, 10.0, 3)},
    n_seeds=5, quick_seeds=2, default_steps=1000, min_steps=50, quick_steps=50,
    heavy=True,
)


@functools.lru_cache(maxsize=1)
def corpus() -> tuple[str, torch.Tensor]:
    """The alphabet and the text as indices."""
    text = resources.files("rmsprop").joinpath("data/hamlet.txt").read_text(encoding="utf-8")
    alphabet = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(alphabet)}
    return alphabet, torch.tensor([index[c] for c in text], dtype=torch.long)


class CharGRU(nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, EMBED)
        self.gru = nn.GRU(EMBED, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(self.embed(x))[0])


def _windows(data: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    offsets = torch.arange(SEQ + 1)
    chunk = data[starts[:, None] + offsets]
    return chunk[:, :-1], chunk[:, 1:]


def simulate(cfg: Config, progress):
    alphabet, data = corpus()
    vocab = len(alphabet)
    train_end, val_end = int(len(data) * 0.9), int(len(data) * 0.95)
    train = data[:train_end]
    held_out = {name: _windows(part, torch.linspace(0, len(part) - SEQ - 2, VAL_SEQS).long())
                for name, part in (("val", data[train_end:val_end]), ("test", data[val_end:]))}
    loss_fn = nn.functional.cross_entropy
    evals = list(range(0, cfg.steps + 1, EVAL_EVERY))
    if evals[-1] != cfg.steps:
        evals.append(cfg.steps)
    curves = {split: {o: np.zeros((len(SPEC.optimizers[o]), len(cfg.seeds), len(evals)))
                      for o in MAKE} for split in held_out}
    total = sum(len(g) for g in SPEC.optimizers.values()) * len(cfg.seeds)
    done = 0
    for j, seed in enumerate(cfg.seeds):
        torch.manual_seed(seed)
        init = CharGRU(vocab).state_dict()
        gen = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, len(train) - SEQ - 1, (cfg.steps, BATCH), generator=gen)
        for oname, make in MAKE.items():
            for i, lr in enumerate(SPEC.optimizers[oname]):
                model = CharGRU(vocab)
                model.load_state_dict(init)
                opt = make(model.parameters(), lr)
                k = 0
                for t in range(cfg.steps + 1):
                    if t == evals[k]:
                        for split, (hx, hy) in held_out.items():
                            with torch.no_grad():
                                v = loss_fn(model(hx).reshape(-1, vocab), hy.reshape(-1)).item()
                            curves[split][oname][i, j, k] = v if np.isfinite(v) else np.inf
                        k += 1
                    if t == cfg.steps:
                        break
                    x, y = _windows(train, starts[t])
                    opt.zero_grad()
                    loss_fn(model(x).reshape(-1, vocab), y.reshape(-1)).backward()
                    nn.utils.clip_grad_norm_(model.parameters(), CLIP)
                    opt.step()
                done += 1
                progress(done / total)
    return {"curves": curves, "evals": evals, "uniform": float(np.log(vocab))}


def measure(raw, cfg: Config) -> Measurement:
    tuned, best, rows = {}, {}, []
    for oname in MAKE:
        val, test = raw["curves"]["val"][oname], raw["curves"]["test"][oname]
        t = tune(SPEC.optimizers[oname], val[:, :, -1], "validation loss at the end (nats/char)")
        tuned[oname] = t
        best[oname] = test[t.best_index, :, -1]
        late = test[t.best_index, :, -2] - best[oname]
        rows.append([oname, f"{t.best_lr:.3g}" + (" (edge)" if t.best_lr_on_edge else ""),
                     interval(val[t.best_index, :, -1]).text(".3f"),
                     interval(best[oname]).text(".3f"), interval(late).text(".3f")])
    figures = {"sgd_over_rmsprop_test_loss": interval(best["SGD"] / best["RMSProp"]),
               "adam_over_rmsprop_test_loss": interval(best["Adam"] / best["RMSProp"])}
    table = Table(["optimizer", "best lr (by validation)", "validation loss (nats/char)",
                   "test loss (nats/char)",
                   f"test-loss drop over the last {EVAL_EVERY} steps (still falling if > 0)"],
                  rows,
                  title=f"char GRU on Hamlet, {cfg.steps} steps (uniform guess "
                        f"{raw['uniform']:.2f} nats)")
    notes = [f"Adam / RMSProp test loss: {figures['adam_over_rmsprop_test_loss'].text()} "
             "(shown, not judged)",
             "curves still falling at the end mean the budget, not the optimizer, limits the loss"]
    return Measurement(figures=figures, tuned=tuned, tables=[table], notes=notes)


def plot(raw, m: Measurement, cfg: Config):
    fig, axes = new_figure(1, 2, width=6.4, height=4.6,
                           title="Character-level GRU on Hamlet, each optimizer at its best lr")
    ax, ax_lr = axes[0]
    best_lr_bands(ax, raw["evals"], m.tuned, COLORS, MAKE,
                  lambda o, b: raw["curves"]["test"][o][b])
    ax.axhline(raw["uniform"], color="0.5", ls=":", lw=1, label="uniform guess over the alphabet")
    ax.set_xlabel(f"optimizer step (batch {BATCH} x {SEQ} characters)")
    ax.set_ylabel("test loss (nats per character)")
    ax.set_title("test loss at each one's best lr (chosen by validation loss)", fontsize=10)
    ax.legend(fontsize=7)
    lr_sweep(ax_lr, m.tuned, COLORS, "final validation loss (nats/char)", log_y=False)
    ax_lr.set_title("final validation loss vs lr", fontsize=10)
    return fig
