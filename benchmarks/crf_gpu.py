"""The dense CRF and the CRF-RNN layer on a CUDA GPU, against the same code on the CPU, in one run.

``benchmarks/crf.py`` compares ``dense_crf`` with the reference C++ implementation (pydensecrf2) on
the CPU; the reference has no GPU version, so here the baseline is pixelwise's own CPU path on the
same machine (``--threads`` torch threads, default: all cores), measured in the same run, with
the same inputs (``benchmarks/crf.py``'s ``make_inputs``: a generated scene and a noisy unary over
``--labels`` classes). Each GPU timing covers the whole call, as a user sees it: probabilities and
image copied to the GPU, both lattices built there, the mean-field iterations on the GPU, the
result back on the host; ``torch.cuda.synchronize``
ends each timing. It also prints the share of pixels whose labels agree between the two devices
and, for the CRF-RNN layer (``CRFRNN``, 5 iterations, batch 1), forward + backward times.

    python benchmarks/crf_gpu.py [--repeats 5] [--threads N] [--sizes 500x375,1024x512,2048x1024]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from crf import PARAMS, make_inputs, parse_sizes  # noqa: E402

from pixelwise.classical import CRFRNN, dense_crf  # noqa: E402


def seconds(function, repeats: int) -> float:
    function()  # warm-up: CUDA context, kernels, allocator
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--sizes", default="500x375,1024x512,2048x1024")
    parser.add_argument("--labels", type=int, default=21)
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/crf_gpu.py needs a CUDA GPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.device("cuda")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"CPU baseline with {torch.get_num_threads()} threads")
    print(f"{'size':>10} {'CPU ms':>9} {'GPU ms':>9} {'GPU/CPU':>8} {'labels agree':>13}   "
          "CRF-RNN fwd+bwd CPU / GPU ms")
    for width, height in parse_sizes(args.sizes):
        probs, image = make_inputs(width, height, args.labels)
        probs_t, image_t = torch.from_numpy(probs), torch.from_numpy(image)

        def on_cpu():
            return dense_crf(probs_t, image_t, iterations=args.iterations, **PARAMS)

        def on_gpu():
            return dense_crf(probs_t.to(cuda), image_t.to(cuda), iterations=args.iterations, **PARAMS).cpu()

        agree = (on_cpu().argmax(0) == on_gpu().argmax(0)).float().mean().item()
        cpu, gpu = seconds(on_cpu, args.repeats), seconds(on_gpu, args.repeats)

        layer_times = []
        for device in ("cpu", cuda):
            layer = CRFRNN(args.labels, iterations=args.iterations, **PARAMS).to(device)
            logits = probs_t.log()[None].to(device).requires_grad_()
            picture = image_t.permute(2, 0, 1)[None].to(device)

            def step():
                layer(logits, picture).sum().backward()

            layer_times.append(seconds(step, max(1, args.repeats // 2)))
        print(f"{width}x{height:<5} {cpu * 1e3:9.1f} {gpu * 1e3:9.1f} {gpu / cpu:8.2f} {agree:13.5f}   "
              f"{layer_times[0] * 1e3:.1f} / {layer_times[1] * 1e3:.1f}", flush=True)


if __name__ == "__main__":
    main()
