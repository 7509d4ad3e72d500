"""Renderer benchmark: fast numpy renderer vs the matplotlib reference, and one night to a dataset.

    python benchmarks/render.py --out outputs/bench_render
    python benchmarks/render.py --out outputs/bench_render --minutes 60 --skip-build   # quick look

Part 1 renders the same 30-s epochs (the 12 ISRUC channels at 200 Hz of a synthetic night written in
ISRUC's on-disk format and read back through the real reader) with both renderers and prints their
epochs/s, the ratio, and their agreement (mean absolute pixel difference, SSIM); it writes
``side_by_side.png`` (fast | reference | |difference| inverted, so white = identical) to --out.
Part 2 times ``render.build.build_dataset`` on that whole night with --num-proc workers in a
child process: wall time and peak memory (PSS and RSS summed over the process tree, sampled, and
the largest single process's RSS from getrusage). Figures are plain lines, then one JSON line (also written
to --out/benchmark_render.json with provenance). Timings on a shared machine are pessimistic.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from PIL import Image  # noqa: E402

from psgvlm.image.renderer import (  # noqa: E402
    RenderSettings,
    image_agreement,
    render_epoch,
    render_epoch_reference,
)
from psgvlm.provenance import provenance, write_json_atomic  # noqa: E402
from psgvlm.signal.epochs import epochs_from_recording, minmax_scale  # noqa: E402


def _timed(fn, xs, settings) -> tuple[list[np.ndarray], float, float]:
    """Render every epoch; returns (images, wall s, CPU s of this process)."""
    t0, c0 = time.perf_counter(), time.process_time()
    imgs = [fn(x, settings) for x in xs]
    return imgs, time.perf_counter() - t0, time.process_time() - c0


def _peak_tree_memory(proc: subprocess.Popen, interval_s: float = 0.1) -> tuple[int, int]:
    """Poll ``proc`` and its children until it exits; returns the peaks of (summed RSS, summed PSS).

    RSS counts pages shared between processes (a memory-mapped epoch file read by two workers) once
    per process, so its sum overstates; PSS splits shared pages between their users (Linux only;
    0 where unavailable).
    """
    import psutil

    peak_rss = peak_pss = 0
    try:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            rss = pss = 0
            for p in [root, *root.children(recursive=True)]:
                try:
                    info = p.memory_full_info()
                    rss += info.rss
                    pss += getattr(info, "pss", 0)
                except psutil.Error:
                    pass
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            time.sleep(interval_s)
    except psutil.Error:
        pass
    proc.wait()
    return peak_rss, peak_pss


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for side_by_side.png and benchmark_render.json")
    p.add_argument("--minutes", type=float, default=480.0, help="synthetic night length (default 8 h)")
    p.add_argument("--fast-epochs", type=int, default=200, help="epochs timed with the fast renderer")
    p.add_argument("--ref-epochs", type=int, default=20, help="epochs timed with the reference (slow)")
    p.add_argument("--num-proc", type=int, default=2, help="workers for the dataset build")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-build", action="store_true", help="only part 1")
    p.add_argument("--growth-nights", type=int, default=3,
                   help="part 3: build this many nights and compare peak memory with one night (1 = skip)")
    args = p.parse_args(argv)
    if args.ref_epochs < 1 or args.fast_epochs < args.ref_epochs:
        p.error(f"need 1 <= --ref-epochs ({args.ref_epochs}) <= --fast-epochs ({args.fast_epochs})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"config": vars(args)}

    from psgvlm.io.channels import DATASET_CHANNELS
    from psgvlm.io.readers import find_recordings, read_recording
    from psgvlm.synth.layouts import synth_dataset

    with tempfile.TemporaryDirectory(prefix="psgvlm-bench-") as tmp:
        # ---- data: one synthetic ISRUC night, through the real reader -------------------------
        t0 = time.perf_counter()
        src = Path(tmp) / "isruc"
        synth_dataset("isruc", src, subjects=1, minutes=args.minutes, seed=args.seed, progress=False)
        t_synth = time.perf_counter() - t0
        rec = read_recording("isruc", **find_recordings("isruc", src)[0])
        channels = [c for c in DATASET_CHANNELS["isruc"] if c in rec.ch_names]
        sfreq = 200.0
        t0 = time.perf_counter()
        x_raw, stages, _ = epochs_from_recording(rec, channels, sfreq)
        x = minmax_scale(x_raw)
        t_prep = time.perf_counter() - t0
        del x_raw
        n_ep = len(x)
        print(f"night: {n_ep} epochs x {len(channels)} channels at {sfreq:g} Hz "
              f"({', '.join(channels)}); synth {t_synth:.1f} s, resample+epoch+scale {t_prep:.2f} s")
        res["night"] = {"epochs": n_ep, "channels": channels, "sfreq": sfreq, "synth_s": round(t_synth, 2),
                        "epochs_and_scale_s": round(t_prep, 3)}

        # ---- part 1: fast vs reference on the same epochs --------------------------------------
        settings = RenderSettings()
        idx = np.linspace(0, n_ep - 1, min(args.fast_epochs, n_ep)).round().astype(int)
        ref_idx = idx[np.linspace(0, len(idx) - 1, min(args.ref_epochs, len(idx))).round().astype(int)]
        render_epoch(x[0], settings)  # warm the per-layout plan (once per process, as in a build)
        render_epoch_reference(x[0], settings)  # matplotlib imports and font cache
        fast_imgs, fast_wall, fast_cpu = _timed(render_epoch, [x[i] for i in idx], settings)
        ref_imgs, ref_wall, ref_cpu = _timed(render_epoch_reference, [x[i] for i in ref_idx], settings)
        s1 = RenderSettings(supersample=1)  # matplotlib straight at 336 px: its cheapest honest setting
        _, ref1_wall, ref1_cpu = _timed(render_epoch_reference, [x[i] for i in ref_idx[:5]], s1)
        fast_by_idx = dict(zip(idx.tolist(), fast_imgs))
        fast_same = np.stack([fast_by_idx[i] for i in ref_idx.tolist()])
        ref_stack = np.stack(ref_imgs)
        agree = image_agreement(fast_same, ref_stack)
        per_img = [image_agreement(a, b)["ssim"] for a, b in zip(fast_same, ref_stack)]
        fast_eps, ref_eps = len(idx) / fast_wall, len(ref_idx) / ref_wall
        fast_eps_cpu, ref_eps_cpu = len(idx) / fast_cpu, len(ref_idx) / ref_cpu
        print(f"fast renderer:      {fast_eps:8.1f} epochs/s wall ({fast_eps_cpu:.1f} per CPU-s), "
              f"{len(idx)} epochs, {1000 / fast_eps:.2f} ms/epoch")
        print(f"matplotlib (x{settings.supersample} supersampled, same pipeline): {ref_eps:6.2f} epochs/s wall "
              f"({ref_eps_cpu:.2f} per CPU-s), {len(ref_idx)} epochs")
        print(f"matplotlib drawn straight at {settings.size} px: {5 / ref1_wall:6.2f} epochs/s wall "
              f"({5 / ref1_cpu:.2f} per CPU-s), 5 epochs")
        print(f"speed ratio fast/reference: {fast_eps / ref_eps:.1f}x wall, {fast_eps_cpu / ref_eps_cpu:.1f}x CPU "
              f"(vs matplotlib at {settings.size} px: {fast_eps / (5 / ref1_wall):.1f}x wall)")
        print(f"agreement on {len(ref_idx)} epochs: mean |diff| {agree['mad']:.2f} / 255, SSIM {agree['ssim']:.4f} "
              f"(min per image {min(per_img):.4f})")
        res["part1"] = {
            "settings": settings.as_dict(),
            "fast_epochs_per_s": round(fast_eps, 2), "fast_epochs_per_cpu_s": round(fast_eps_cpu, 2),
            "reference_epochs_per_s": round(ref_eps, 3), "reference_epochs_per_cpu_s": round(ref_eps_cpu, 3),
            "reference_336px_epochs_per_s": round(5 / ref1_wall, 3),
            "ratio_wall": round(fast_eps / ref_eps, 2), "ratio_cpu": round(fast_eps_cpu / ref_eps_cpu, 2),
            "ratio_vs_reference_336px": round(fast_eps / (5 / ref1_wall), 2),
            "mad": round(agree["mad"], 3), "ssim": round(agree["ssim"], 4), "ssim_min": round(min(per_img), 4),
            "n_fast": int(len(idx)), "n_reference": int(len(ref_idx)),
        }

        # full night, fast renderer, one process (the builder splits this over workers)
        t0 = time.perf_counter()
        for i in range(n_ep):
            render_epoch(x[i], settings)
        t_night = time.perf_counter() - t0
        print(f"whole night with the fast renderer, 1 process: {t_night:.2f} s ({n_ep / t_night:.0f} epochs/s)")
        res["part1"]["night_fast_render_s"] = round(t_night, 3)

        # side by side: a wake-ish and a deep-sleep epoch when labelled, else two spread epochs
        picks = []
        if stages is not None:
            for code in (0, 3):
                hits = [i for i in ref_idx.tolist() if stages[i] == code]
                picks += hits[:1]
        picks = list(dict.fromkeys(picks + ref_idx.tolist()[len(ref_idx) // 2:]))[:2]
        rows = []
        for i in picks:
            a, b = fast_by_idx[i], ref_imgs[ref_idx.tolist().index(i)]
            diff = 255 - np.abs(a.astype(int) - b.astype(int)).max(axis=-1).astype(np.uint8)
            gap = np.full((a.shape[0], 8, 3), 200, np.uint8)
            rows.append(np.concatenate([a, gap, b, gap, np.repeat(diff[..., None], 3, -1)], axis=1))
        sheet = np.concatenate([np.concatenate([r, np.full((8, r.shape[1], 3), 200, np.uint8)]) for r in rows])
        png = out / "side_by_side.png"
        Image.fromarray(sheet).save(png)
        print(f"wrote {png} (fast | reference | |difference| inverted), epochs {picks}")
        res["part1"]["side_by_side"] = str(png)
        del x, fast_imgs, ref_imgs

        # ---- part 2: the whole night to a dataset ----------------------------------------------
        try:
            import render.build  # noqa: F401
        except ImportError as err:
            print(f"dataset build: skipped, render.build not importable ({err})")
            res["part2"] = {"skipped": f"render.build not importable: {err}"}
            args.skip_build = True
        if not args.skip_build:
            ds_out = Path(tmp) / "dataset"
            code = ("import json, sys, time; t0 = time.perf_counter(); "
                    "from render.build import build_dataset; "
                    f"meta = build_dataset(fmt='isruc', input={str(src)!r}, out={str(ds_out)!r}, "
                    f"num_proc={args.num_proc}, split='none', progress=False); "
                    "print(json.dumps({'build_s': meta.get('build_s'), "
                    "'with_imports_s': time.perf_counter() - t0}))")
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            before = ru0.ru_maxrss
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-c", code], cwd=str(REPO), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            peak_tree, peak_pss = _peak_tree_memory(proc)
            wall = time.perf_counter() - t0
            stdout, stderr = proc.stdout.read(), proc.stderr.read()
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            max_single = ru1.ru_maxrss * 1024  # KiB on Linux
            # CPU of the build process and its workers: on an idle 2-core machine wall >= cpu / 2.
            cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
            if proc.returncode != 0:
                print(f"dataset build FAILED (exit {proc.returncode}):\n{stderr[-2000:]}")
                res["part2"] = {"failed": stderr[-2000:]}
            else:
                inner = json.loads(stdout.strip().splitlines()[-1])
                import datasets

                n_rows = sum(len(d) for d in datasets.load_from_disk(str(ds_out)).values())
                print(f"dataset build, {args.num_proc} workers: {wall:.1f} s wall for the process "
                      f"(build_dataset itself {inner['build_s']:.1f} s, with imports {inner['with_imports_s']:.1f} s), "
                      f"{n_rows} images; {cpu:.1f} CPU-s over all its processes (load average now "
                      f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
                print(f"peak memory: {peak_pss / 2**30:.2f} GiB PSS / {peak_tree / 2**30:.2f} GiB RSS summed over "
                      f"the process tree (sampled every 0.1 s), {max_single / 2**30:.2f} GiB RSS of the largest "
                      f"single process"
                      + ("" if before == 0 else " (getrusage max includes earlier children)"))
                res["part2"] = {"num_proc": args.num_proc, "wall_s": round(wall, 2),
                                "build_s": inner["build_s"], "with_imports_s": round(inner["with_imports_s"], 2), "cpu_s": round(cpu, 2),
                                "load_average": round(os.getloadavg()[0], 2),
                                "peak_rss_tree_gib": round(peak_tree / 2**30, 3), "peak_pss_tree_gib": round(peak_pss / 2**30, 3),
                                "peak_rss_single_gib": round(max_single / 2**30, 3), "images": n_rows}

        # ---- part 3: memory must not grow with the number of nights -----------------------------
        if not args.skip_build and args.growth_nights > 1:
            src_n = Path(tmp) / "isruc_n"
            synth_dataset("isruc", src_n, subjects=args.growth_nights, minutes=args.minutes, seed=args.seed + 1,
                          progress=False)
            code_n = code.replace(repr(str(src)), repr(str(src_n))).replace(repr(str(ds_out)),
                                                                            repr(str(Path(tmp) / "dataset_n")))
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-c", code_n], cwd=str(REPO), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            peak_tree_n, peak_pss_n = _peak_tree_memory(proc)
            wall_n = time.perf_counter() - t0
            if proc.returncode != 0:
                print(f"{args.growth_nights}-night build FAILED:\n{proc.stderr.read()[-2000:]}")
            else:
                one = res["part2"]["peak_pss_tree_gib"]
                print(f"{args.growth_nights} nights: {wall_n:.1f} s wall, peak {peak_pss_n / 2**30:.2f} GiB PSS "
                      f"(1 night: {one:.2f} GiB; ratio {peak_pss_n / 2**30 / one:.2f})")
                res["part3"] = {"nights": args.growth_nights, "wall_s": round(wall_n, 2),
                                "peak_pss_tree_gib": round(peak_pss_n / 2**30, 3),
                                "peak_rss_tree_gib": round(peak_tree_n / 2**30, 3),
                                "pss_ratio_vs_one_night": round(peak_pss_n / 2**30 / one, 3)}

    res["provenance"] = provenance()
    write_json_atomic(out / "benchmark_render.json", res)
    summary = {k: v for k, v in res.items() if k != "provenance"}
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
