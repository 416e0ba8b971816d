"""GPU search and RBM training: deephash_ext's CUDA kernels against torch, same data, one run.

Usage (on the GPU machine, with nvcc and a CUDA build of torch)::

    pip install --no-build-isolation .
    python benchmarks/bench_cuda.py              # the full grid (several minutes)
    python benchmarks/bench_cuda.py --quick      # n = 200,000, nq = 1000: a smoke run
    python benchmarks/bench_cuda.py --no-rbm     # search only

Without a usable GPU the script prints why and exits with status 0.

Copy bandwidth: a device-to-device ``dst.copy_(src)`` of a 2 GiB uint8 tensor, best of 10,
reported as bytes read plus bytes written per second (2 x 2 GiB / time).

Search: for each width in --bits, n uniformly random codes and nq random queries
(``np.random.default_rng(0)``); the codes are uploaded once into ``deephash_ext.GpuCodes``
(timed apart), then for each k the wall time of ``GpuCodes.search(queries, k)`` (it returns
host arrays, so it has synchronised), the best of --repeats after one small warm-up call.
GB/s is the logical bytes compared, nq * n * code_bytes / time, also given as a percentage
of the copy bandwidth: the kernel reads the codes once per tile of queries and compares
them from on-chip memory, so this can exceed 100 % (one stream of the codes per query
would be 100 %, counted with the copy's read+write convention). The first 20 queries are
checked against the CPU ``deephash_ext.search``: distances and indices must be identical.

Peer: plain torch on the same GPU. Codes are viewed as int64 words, XORed with a batch of
queries (batches of at most 2e9 bytes of XOR output), popcounted with the SWAR bit trick,
summed over words, then ``torch.topk(largest=False, sorted=True)``. It runs on the first
--peer-queries queries only; its time is scaled to nq. topk does not order ties by index,
so only the distance rows are compared with ours.

CD-1 (--rbm, the default): one epoch 20,000 x 4096 -> 1024, batch 100, learning rate 0.01,
momentum 0.9, weight decay 1e-4, as in bench_rbm.py: ``RBM(device="cuda").fit`` (input checks,
upload of V, the epoch and the offsets pass), the epoch kernel alone (``_cuda.rbm_cd_train``),
and bench_rbm.py's torch CD-1 loop run on the GPU (V already there). float32 throughout, no
TF32 on either side. GFLOP/s counts 10 * B * d * h per minibatch, next to torch's sgemm rate.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import deephash_ext as dh
import numpy as np
from _common import best_time, cpu_model  # run as a script: benchmarks/ is on sys.path
from bench_rbm import torch_cd1_epoch

CHECK_QUERIES = 20  # queries checked against the CPU search
PEER_BATCH_BYTES = 2e9  # bytes of XOR output per peer batch
# SWAR popcount masks; each has bit 63 clear, so the arithmetic right shifts of torch's int64
# bring nothing into the kept bits, and the byte sum of the multiply (<= 64) stays positive.
M1, M2, M4, H01 = 0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F, 0x0101010101010101


class TorchOnDevice:
    """The torch module with Generator and randperm on one device, so that bench_rbm's CD-1
    loop (written for the CPU) runs unchanged on the GPU."""

    def __init__(self, torch, device: str) -> None:
        self._torch, self._device = torch, device

    def __getattr__(self, name: str):
        return getattr(self._torch, name)

    def Generator(self):
        return self._torch.Generator(device=self._device)

    def randperm(self, n: int, generator=None):
        return self._torch.randperm(n, generator=generator, device=self._device)


class TorchPeer:
    """Exact top-k Hamming distances in plain torch: XOR, SWAR popcount, sum, topk."""

    def __init__(self, torch, codes: np.ndarray, device: str = "cuda") -> None:
        self.torch, self.device = torch, device
        self.db = torch.from_numpy(codes).to(device).view(torch.int64)  # (n, words)
        self.batch = max(1, int(PEER_BATCH_BYTES // codes.nbytes))

    def distances(self, q):
        """(len(q), n) int32 distances for int64-word queries q (on the device)."""
        x = self.db[None] ^ q[:, None]
        x.sub_((x >> 1).bitwise_and_(M1))
        x = (x & M2).add_((x >> 2).bitwise_and_(M2))
        x.add_(x >> 4).bitwise_and_(M4)  # each byte holds its own popcount
        x.mul_(H01).bitwise_right_shift_(56)  # top byte: the sum of the 8 bytes
        return x.sum(-1, dtype=self.torch.int32)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Sorted top-k distances (nq, k) as a host array."""
        torch = self.torch
        q = torch.from_numpy(queries).to(self.device).view(torch.int64)
        rows = [
            torch.topk(
                self.distances(q[s : s + self.batch]), k, dim=1, largest=False, sorted=True
            ).values
            for s in range(0, len(q), self.batch)
        ]
        return torch.cat(rows).cpu().numpy()


def copy_bandwidth(torch, gib: float = 2.0, repeats: int = 10) -> float:
    """Device-to-device copy rate, (bytes read + bytes written) / time."""
    src = torch.randint(0, 256, (int(gib * (1 << 30)),), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)

    def copy():
        dst.copy_(src)
        torch.cuda.synchronize()

    copy()
    return 2 * src.numel() / best_time(copy, repeats)[0]


def gpu_sync_time(torch, fn, repeats: int) -> float:
    """Best wall time of fn() followed by a device synchronisation (one untimed warm-up)."""

    def run():
        fn()
        torch.cuda.synchronize()

    run()
    return best_time(run, repeats)[0]


def sgemm_rate(torch, size: int, repeats: int) -> float:
    """torch float32 matrix product on the GPU, flops per second."""
    a = torch.rand(size, size, device="cuda")
    b = torch.rand(size, size, device="cuda")
    return 2.0 * size**3 / gpu_sync_time(torch, lambda: a @ b.T, repeats)


def search_width(torch, args, bits: int, copy_bw: float, emit) -> tuple[int, int, int, float]:
    """The table rows of one code width; returns (bits, host bytes, GPU bytes, upload s)."""
    code_bytes = bits // 8
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (args.n, code_bytes), dtype=np.uint8)
    queries = rng.integers(0, 256, (args.nq, code_bytes), dtype=np.uint8)
    t0 = time.perf_counter()
    gpu = dh.GpuCodes(codes)
    t_upload = time.perf_counter() - t0
    peer = TorchPeer(torch, codes)
    peer_q = queries[: args.peer_queries]
    m = min(CHECK_QUERIES, args.nq)
    # The CPU orders ties by index, so its top-k for a smaller k is a prefix of this one.
    ref_d, ref_i = dh.search(codes, queries[:m], max(args.k))
    for k in args.k:
        gpu.search(queries[:8], k)  # warm-up
        t_ours, (od, oi) = best_time(lambda: gpu.search(queries, k), args.repeats)
        exact = np.array_equal(od[:m], ref_d[:, :k]) and np.array_equal(oi[:m], ref_i[:, :k])
        peer.search(peer_q[:1], k)  # warm-up
        t_peer, pd = best_time(lambda: peer.search(peer_q, k), args.repeats)
        t_peer *= args.nq / len(peer_q)
        scanned = args.nq * args.n * code_bytes / t_ours
        emit(
            f"| {bits} | {k} | {t_ours:.4f} | {scanned / 1e9:,.0f} | "
            f"{100 * scanned / copy_bw:,.0f} % | {t_peer:.3f} | {t_peer / t_ours:.1f}x | "
            f"{'OK' if exact else 'MISMATCH'} | "
            f"{'yes' if np.array_equal(pd, od[: len(peer_q)]) else 'NO'} |"
        )
    return bits, codes.nbytes, gpu.nbytes, t_upload


def search_section(torch, args, copy_bw: float, emit) -> None:
    emit(f"\n## Exact top-k search: n = {args.n:,}, nq = {args.nq:,}")
    emit(
        f"GpuCodes.search (best of {args.repeats}); torch peer timed on the first "
        f"{min(args.peer_queries, args.nq)} queries (batches of at most "
        f"{PEER_BATCH_BYTES / 1e9:.0f} GB of XOR output), seconds scaled to nq = {args.nq:,}; "
        f"% of copy BW against {copy_bw / 1e9:.0f} GB/s; exact = the first "
        f"{min(CHECK_QUERIES, args.nq)} queries' distances and indices equal the CPU search's; "
        "the peer is compared on distances only (torch.topk does not order ties by index)."
    )
    emit()
    emit(
        "| bits | k | ours s | ours GB/s | % of copy BW | torch peer s (scaled to nq) "
        "| speed-up | exact vs CPU | peer distances = ours |"
    )
    emit("|---:|---:|---:|---:|---:|---:|---:|:---:|:---:|")
    uploads = []
    for bits in args.bits:
        uploads.append(search_width(torch, args, bits, copy_bw, emit))
        torch.cuda.empty_cache()  # the peer's database and batches
    emit("\nUpload into GpuCodes (host to device, once per database):")
    emit()
    emit("| bits | codes (host) GB | on GPU GB | upload s | GB/s |")
    emit("|---:|---:|---:|---:|---:|")
    for bits, host_bytes, gpu_bytes, t in uploads:
        emit(
            f"| {bits} | {host_bytes / 1e9:.2f} | {gpu_bytes / 1e9:.2f} | {t:.3f} | "
            f"{host_bytes / t / 1e9:.1f} |"
        )


def rbm_section(torch, args, emit) -> None:
    from deephash_ext._gpu import cuda_module, ensure_cublas

    n, d, h = (2000, 512, 256) if args.quick else (20_000, 4096, 1024)
    batch, lr, momentum, wd = 100, 0.01, 0.9, 1e-4
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.5, d).astype(np.float32)
    V = (rng.random((n, d), dtype=np.float32) < p).astype(np.float32)
    flops = 10.0 * n * d * h

    size = 2048 if args.quick else 8192
    sgemm = sgemm_rate(torch, size, args.repeats)

    def make_rbm():
        return dh.RBM(
            n_hidden=h,
            learning_rate=lr,
            momentum=momentum,
            weight_decay=wd,
            batch_size=batch,
            n_epochs=1,
            cd_k=1,
            random_state=0,
            device="cuda",
        )

    make_rbm().fit(V[:1000])  # warm-up: context, cuBLAS
    ensure_cublas()
    t_fit = best_time(lambda: make_rbm().fit(V), args.repeats)[0]

    def kernel_epoch() -> float:
        init = np.random.default_rng(1)
        state = [
            init.normal(0, 0.01, (h, d)).astype(np.float32),
            np.zeros(h, np.float32),
            np.zeros(d, np.float32),
        ]
        state += [np.zeros_like(x) for x in state]  # the three velocities
        order = init.permutation(n).astype(np.int64)
        t0 = time.perf_counter()
        cuda_module().rbm_cd_train(
            *state,
            V,
            order,
            batch_size=batch,
            learning_rate=lr,
            momentum=momentum,
            weight_decay=wd,
            hashing_reg=0.0,
            cd_k=1,
            seed=7,
            first_step=0,
            device=0,
        )
        return time.perf_counter() - t0

    t_kernel = min(kernel_epoch() for _ in range(args.repeats))

    t0 = time.perf_counter()
    Vt = torch.from_numpy(V).cuda()
    torch.cuda.synchronize()
    t_upload = time.perf_counter() - t0
    on_gpu = TorchOnDevice(torch, "cuda")

    def torch_epoch(rows) -> float:
        W = torch.from_numpy(rng.normal(0, 0.01, (h, d)).astype(np.float32)).cuda()
        hb, vb = torch.zeros(h, device="cuda"), torch.zeros(d, device="cuda")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch_cd1_epoch(on_gpu, rows, W, hb, vb, batch, lr, momentum, wd, 0)
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    torch_epoch(Vt[:1000])  # warm-up
    t_torch = min(torch_epoch(Vt) for _ in range(args.repeats))

    emit(f"\n## One CD-1 epoch: {n:,} x {d} -> {h}, batch {batch} ({flops / 1e9:.0f} GFLOP)")
    emit(
        f"torch sgemm {size} x {size}, float32: {sgemm / 1e9:,.0f} GFLOP/s; "
        f"cuBLAS loaded by deephash_ext: {dh.build_info().get('cublas')}; "
        f"upload of V to torch (not in its row): {t_upload:.3f} s"
    )
    emit()
    emit("| implementation | seconds | GFLOP/s | % of torch sgemm | time vs kernel |")
    emit("|---|---:|---:|---:|---:|")
    for name, t in [
        ("deephash_ext RBM(device='cuda').fit (checks, upload, offsets pass)", t_fit),
        ("deephash_ext _cuda.rbm_cd_train (the epoch, upload of V inside)", t_kernel),
        ("torch CD-1 loop of bench_rbm.py on the GPU (V already there)", t_torch),
    ]:
        emit(
            f"| {name} | {t:.3f} | {flops / t / 1e9:,.0f} | {100 * flops / t / sgemm:.0f} % | "
            f"{t / t_kernel:.2f}x |"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="database size")
    parser.add_argument("--nq", type=int, default=10_000, help="queries")
    parser.add_argument("--bits", default="64,256,1024", help="code widths, multiples of 64")
    parser.add_argument("--k", default="10,100,1000,5000", help="neighbour counts")
    parser.add_argument(
        "--peer-queries",
        type=int,
        default=100,
        help="queries the torch peer runs (its time is scaled to nq)",
    )
    parser.add_argument(
        "--rbm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include the CD-1 epoch comparison",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per timing (best kept)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "bench_cuda.md",
        help="markdown file for the tables",
    )
    parser.add_argument("--quick", action="store_true", help="n = 200,000, nq = 1000")
    args = parser.parse_args()
    if args.quick:
        args.n, args.nq = 200_000, 1000
    args.bits = [int(b) for b in args.bits.split(",")]
    ks = [int(k) for k in args.k.split(",")]
    args.k = [k for k in ks if k <= args.n]
    if len(args.k) < len(ks):
        print(f"bench_cuda: skipping k > n = {args.n:,}: {sorted(set(ks) - set(args.k))}")
    if any(b <= 0 or b % 64 for b in args.bits):
        parser.error("--bits must be positive multiples of 64 (the torch peer uses int64 words)")
    if not args.k or args.nq < 1 or args.peer_queries < 1:
        parser.error("need nq >= 1, --peer-queries >= 1 and at least one k <= n")
    return args


def main() -> None:
    args = parse_args()
    if not dh.cuda_available():
        print(f"bench_cuda: CUDA is not available ({dh.cuda_unavailable_reason()}); nothing to do")
        return
    try:
        import torch
    except ImportError:
        sys.exit("bench_cuda: the peer needs torch with CUDA (pip install torch)")
    if not torch.cuda.is_available():
        sys.exit("bench_cuda: torch cannot use the GPU (a CPU-only torch build?)")
    torch.set_float32_matmul_precision("highest")  # no TF32, as deephash_ext's cuBLAS

    lines: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    info = dh.build_info()
    props = torch.cuda.get_device_properties(0)
    emit(
        f"GPU: {torch.cuda.get_device_name(0)}, {props.total_memory / 2**30:.0f} GiB "
        f"| CPU: {cpu_model()}, {os.cpu_count()} CPUs | {platform.system()} "
        f"{platform.machine()} | python {platform.python_version()}"
    )
    emit(
        f"deephash_ext {info['version']}: cuda_compiled {info['cuda_compiled']}, "
        f"architectures {info['cuda_architectures']}, device {info['cuda_device']!r}; "
        f"CPU side SIMD {dh.simd_level()}, threads {dh.get_num_threads()}"
    )
    emit(f"torch {torch.__version__} (CUDA {torch.version.cuda}), TF32 matmul off")
    copy_bw = copy_bandwidth(torch)
    emit(
        f"device-to-device copy (2 GiB, best of 10): {copy_bw / 1e9:,.0f} GB/s "
        "(bytes read + bytes written per second)"
    )

    search_section(torch, args, copy_bw, emit)
    if args.rbm:
        rbm_section(torch, args, emit)

    command = "python " + shlex.join(sys.argv)
    header = [
        f"# bench_cuda.py ({datetime.date.today().isoformat()})",
        "",
        f"Command: `{command}`",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + lines) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
