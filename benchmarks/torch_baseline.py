"""Plain-PyTorch reference timings for the paper's MNIST CNN.

This is the yardstick the JAX implementation is compared against: the same
network (SPEC §2, 14,970 parameters) written the way PyTorch active-learning
libraries usually write it, timed on the same machine.

Two benchmarks, each printed as one JSON object per line:

* ``torch_mc_sweep``: MC-dropout forwards/s over a pool of random 28x28
  images. This is the common PyTorch baseline: ``model.train()`` so dropout
  stays on, ``torch.no_grad()``, each chunk of the pool replicated T times
  into one ``[T*B, 1, 28, 28]`` batch, softmax, mean over T. The value is
  the median over ``repeats`` full passes of ``pool_size * T / seconds``
  (the probabilities stay on the device, as the JAX sweep's statistics do;
  one synchronisation per pass).
* ``torch_train_step``: training samples/s at a fixed batch size with
  Adam(1e-3), cross-entropy plus an L2 penalty of 1e-3 * sum(w**2) on the
  conv and dense kernels (what Keras' ``kernel_regularizer=l2(1e-3)`` adds to
  the loss), dropout on. ``repeats`` timed blocks of steps; the median block
  is reported.

Warm-up iterations are run first and excluded from all timings.

The script needs only torch and numpy (no absl), so it runs from a separate
venv::

  path/to/torch_venv/bin/python benchmarks/torch_baseline.py

Other scripts can ``from benchmarks.torch_baseline import run`` when torch is
installed.
"""

import argparse
import json
import os
import statistics
import sys
import time
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# SPEC §2: 4 convs (160 + 3 * 2,320) + dense 784 -> 10 (7,850).
EXPECTED_PARAMS = 14_970
NUM_CLASSES = 10
DROPOUT_RATE = 0.33
# The paper uses slope 0.1, not the 0.01 that is PyTorch's default too.
LEAKY_SLOPE = 0.1
WEIGHT_DECAY = 1e-3
LEARNING_RATE = 1e-3

# Warm-up counts: enough for oneDNN/cuDNN to pick kernels and for the
# allocator to reach steady state, small enough to stay inside the time budget.
MC_WARMUP_CHUNKS = 1
TRAIN_WARMUP_STEPS = 3
# ~1 s per timed block on the 2-core CPU at batch 256.
TRAIN_STEPS_PER_REPEAT = 8


class MnistCnn(nn.Module):
  """The paper's MNIST CNN; returns logits (softmax is applied by callers)."""

  def __init__(self):
    super().__init__()

    def block(in_channels):
      return [
          nn.Conv2d(in_channels, 16, kernel_size=3, padding='same'),
          nn.LeakyReLU(LEAKY_SLOPE),
          nn.Dropout(DROPOUT_RATE),
      ]

    self.net = nn.Sequential(
        *block(1),
        *block(16),
        nn.MaxPool2d(2),  # 28x28 -> 14x14.
        *block(16),
        *block(16),
        nn.MaxPool2d(2),  # 14x14 -> 7x7, so 7 * 7 * 16 = 784 features.
        nn.Flatten(),
        nn.Linear(7 * 7 * 16, NUM_CLASSES),
    )
    # Keras defaults (Glorot-uniform kernels, zero biases), to match the
    # original code; irrelevant to speed but keeps the reference faithful.
    for module in self.modules():
      if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)

  def forward(self, x):
    return self.net(x)

  def kernels(self):
    """Conv and dense weights (not biases): what Keras regularises."""
    return [
        m.weight for m in self.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]


def _sync(device: torch.device) -> None:
  # CUDA launches are asynchronous; without this the clock stops early.
  if device.type == 'cuda':
    torch.cuda.synchronize(device)


def _common_fields(device: torch.device) -> dict:
  if device.type == 'cuda':
    device_name = f'cuda ({torch.cuda.get_device_name(device)})'
  else:
    device_name = 'cpu'
  return {
      'device': device_name,
      'torch_version': torch.__version__,
      'threads': torch.get_num_threads(),
  }


def mc_predict(model: MnistCnn, x: torch.Tensor, T: int) -> torch.Tensor:
  """MC-dropout mean softmax for one chunk, the usual PyTorch way.

  Args:
    model: network in train mode (dropout on).
    x: [B, 1, 28, 28] images.
    T: number of MC samples.

  Returns:
    [B, 10] mean predictive probabilities.
  """
  batch = x.shape[0]
  # repeat is T-major: rows [t*B, (t+1)*B) are MC sample t for the chunk.
  logits = model(x.repeat(T, 1, 1, 1))
  probs = F.softmax(logits, dim=-1).view(T, batch, NUM_CLASSES)
  return probs.mean(dim=0)


def bench_mc_sweep(model: MnistCnn, pool_size: int, T: int, chunk: int,
                   device: torch.device, seed: int = 0,
                   repeats: int = 3) -> dict:
  """Times MC-dropout passes over a random pool; see the module docstring.

  `repeats` full passes over the pool, the median reported (as the JAX
  sweeps are); the probabilities stay on the device, synchronised once per
  pass, as the JAX sweep's statistics do.
  """
  gen = np.random.default_rng(seed)
  # Pixels in [0, 1) as in the data pipeline; values do not affect speed.
  pool = torch.from_numpy(
      gen.random((pool_size, 1, 28, 28), dtype=np.float32)).to(device)
  model.train()  # Dropout stays on: that is what makes it MC dropout.

  pass_seconds = []
  with torch.no_grad():
    for _ in range(MC_WARMUP_CHUNKS):
      mc_predict(model, pool[:chunk], T)
    _sync(device)
    for _ in range(repeats):
      t0 = time.perf_counter()
      for start in range(0, pool_size, chunk):
        mc_predict(model, pool[start:start + chunk], T)
      _sync(device)
      pass_seconds.append(time.perf_counter() - t0)

  rates = [pool_size * T / s for s in pass_seconds]
  return {
      'benchmark': 'torch_mc_sweep',
      'value': statistics.median(rates),
      'unit': 'forwards/s',
      'stat': f'median of {repeats} full passes over the pool',
      **_common_fields(device),
      'pool_size': pool_size,
      'T': T,
      'chunk': chunk,
      'samples': rates,
      'num_chunks': -(-pool_size // chunk),
  }


def bench_train_step(model: MnistCnn, batch_size: int, repeats: int,
                     device: torch.device, seed: int = 0) -> dict:
  """Times Adam training steps with dropout on; see the module docstring."""
  gen = np.random.default_rng(seed + 1)
  # A few distinct batches so the timing does not hinge on one cached input.
  num_batches = 4
  xs = torch.from_numpy(
      gen.random((num_batches, batch_size, 1, 28, 28),
                 dtype=np.float32)).to(device)
  ys = torch.from_numpy(
      gen.integers(0, NUM_CLASSES, (num_batches, batch_size))).to(device)

  model.train()
  optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
  kernels = model.kernels()

  def step(i):
    optimizer.zero_grad(set_to_none=True)
    logits = model(xs[i % num_batches])
    # Cross-entropy plus a Keras-style L2 term in the loss, rather than
    # Adam's weight_decay, which would decay biases too and scale differently.
    loss = F.cross_entropy(logits, ys[i % num_batches])
    loss = loss + WEIGHT_DECAY * sum(w.pow(2).sum() for w in kernels)
    loss.backward()
    optimizer.step()

  for i in range(TRAIN_WARMUP_STEPS):
    step(i)
  _sync(device)

  block_rates = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for i in range(TRAIN_STEPS_PER_REPEAT):
      step(i)
    _sync(device)
    seconds = time.perf_counter() - t0
    block_rates.append(TRAIN_STEPS_PER_REPEAT * batch_size / seconds)

  return {
      'benchmark': 'torch_train_step',
      'value': statistics.median(block_rates),
      'unit': 'samples/s',
      'stat': (f'median of {repeats} blocks of '
               f'{TRAIN_STEPS_PER_REPEAT} steps'),
      **_common_fields(device),
      'batch_size': batch_size,
      'best': max(block_rates),
  }


def run(pool_size: int = 6000,
        T: int = 10,
        chunk: int = 500,
        batch_size: int = 256,
        repeats: int = 5,
        device: str = 'cpu',
        threads: Optional[int] = None,
        seed: int = 0) -> list[dict]:
  """Runs both benchmarks and returns their result dicts.

  Args:
    pool_size: images in the MC-dropout pool.
    T: MC-dropout samples per image.
    chunk: images per MC forward call (the batch is chunk * T).
    batch_size: training batch size.
    repeats: timed blocks for the training benchmark and timed passes over
      the pool for the MC sweep.
    device: 'cpu' or 'cuda'.
    threads: intra-op CPU threads; None means os.cpu_count().
    seed: seed for the random pool, labels and weights.

  Returns:
    One dict per benchmark, in the format printed by main().
  """
  torch.set_num_threads(threads or os.cpu_count() or 1)
  torch.manual_seed(seed)
  dev = torch.device(device)
  if dev.type == 'cuda' and not torch.cuda.is_available():
    raise RuntimeError('device=cuda requested but torch has no CUDA device.')

  model = MnistCnn().to(dev)
  num_params = sum(p.numel() for p in model.parameters())
  assert num_params == EXPECTED_PARAMS, (
      f'MNIST CNN has {num_params} parameters, expected {EXPECTED_PARAMS}.')

  results = [bench_mc_sweep(model, pool_size, T, chunk, dev, seed,
                            max(repeats, 1))]
  # A fresh model so the training numbers do not depend on the sweep.
  model = MnistCnn().to(dev)
  results.append(bench_train_step(model, batch_size, repeats, dev, seed))
  return results


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--pool_size', type=int, default=6000)
  parser.add_argument('--T', type=int, default=10)
  parser.add_argument('--chunk', type=int, default=500)
  parser.add_argument('--batch_size', type=int, default=256)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
  parser.add_argument('--threads', type=int, default=None,
                      help='intra-op threads (default: os.cpu_count())')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  for name in ('pool_size', 'T', 'chunk', 'batch_size', 'repeats'):
    if getattr(args, name) < 1:
      parser.error(f'--{name} must be >= 1')

  for result in run(args.pool_size, args.T, args.chunk, args.batch_size,
                    args.repeats, args.device, args.threads, args.seed):
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
  main(sys.argv[1:])
