"""Renderer benchmark: fast numpy renderer vs the matplotlib reference, and one night to a dataset.

    python benchmarks/render.py --out outputs/bench_render
    python benchmarks/render.py --out outputs/bench_render --minutes 60 --skip-build   # quick look

Part 1 renders the same 30-s epochs (the 12 ISRUC channels at 200 Hz of a synthetic night written in
ISRUC's on-disk format and read back through the real reader) with both renderers and prints their
epochs/s, the ratio, and their agreement (mean absolute pixel difference, SSIM); it writes
``side_by_side.png`` (fast | reference | |difference| inverted, so white = identical) to --out.
Part 2 runs the real build command (``python -m psgvlm.render --format isruc ... --num-proc N
--split none --quiet``) on that whole night in a fresh process, as a user would: wall time of the whole
process (start-up and imports included), CPU seconds of the process and its workers (getrusage of
children), ``build_s`` from the dataset's meta.json, peak memory (PSS and RSS summed over the process
tree, sampled) and the load average. It then runs the same command again under ``python -m cProfile``
for the time of each build phase (read, cut, render, write...): main-process cumulative seconds under
the profiler (workers are not profiled; the profiler slows the build, so its total is shown beside).
Part 3 builds --growth-nights nights and compares peak memory with one night. The benchmark talks to
the render stage only through the command and the files it writes (STYLE.md, "Layering"). Figures
are plain lines, then one JSON line (also written to --out/benchmark_render.json with provenance).
Timings on a shared machine are pessimistic: read them beside the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

# Build phases reported in part 2: functions the build calls, read from a cProfile run of the command and
# matched by name in a file directly under render/ or psgvlm/ (main-process cumulative time; render_images
# includes waiting for the workers and for the background import of ``datasets``).
PHASES = ("discover_recordings", "read_for_dataset", "cut_recording", "render_images", "write_shard",
          "write_dataset", "provenance", "finish")
PHASE_DIRS = ("render", "psgvlm")


def _timed(fn, xs, settings) -> tuple[list[np.ndarray], float, float]:
    """Render every epoch; returns (images, wall s, CPU s of this process)."""
    t0, c0 = time.perf_counter(), time.process_time()
    imgs = [fn(x, settings) for x in xs]
    return imgs, time.perf_counter() - t0, time.process_time() - c0


def _peak_tree_memory(proc: subprocess.Popen, interval_s: float = 0.1) -> tuple[int, int, float]:
    """Poll ``proc`` and its children until it exits; returns the peaks of (summed RSS, summed PSS) and
    the CPU seconds of ``proc`` itself at its last sample (up to ``interval_s`` short of its end).

    RSS counts pages shared between processes (the night's epochs that forked workers read) once
    per process, so its sum overstates; PSS splits shared pages between their users (Linux only;
    0 where unavailable).
    """
    import psutil

    peak_rss = peak_pss = 0
    cpu_root = 0.0
    try:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            rss = pss = 0
            for p in [root, *root.children(recursive=True)]:
                try:
                    info = p.memory_full_info()
                    rss += info.rss
                    pss += getattr(info, "pss", 0)
                    if p is root:
                        t = p.cpu_times()
                        cpu_root = t.user + t.system
                except psutil.Error:
                    pass
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            time.sleep(interval_s)
    except psutil.Error:
        pass
    proc.wait()
    return peak_rss, peak_pss, cpu_root


# ------------------------------------------------------------------------------------------------
# Parts 2 and 3: the build as the real command, in a fresh process
# ------------------------------------------------------------------------------------------------
def _render_command(src: Path, out: Path, num_proc: int, profile: Path | None = None) -> list[str]:
    """``python [-m cProfile -o PROFILE] -m psgvlm.render ...`` for one build of ``src`` into ``out``."""
    prof = ["-m", "cProfile", "-o", str(profile)] if profile is not None else []
    return [sys.executable, *prof, "-m", "psgvlm.render", "--format", "isruc", "--input", str(src),
            "--out", str(out), "--num-proc", str(num_proc), "--split", "none", "--quiet"]


def _run_build(src: Path, out: Path, num_proc: int, profile: Path | None = None) -> dict:
    """Run the build command in a fresh process; its wall time, CPU, memory, build_s (or the failure).

    CPU seconds are getrusage(RUSAGE_CHILDREN) before/after: the process plus its workers (they are
    waited for, so they count); the process's own share is sampled with its memory.
    """
    cmd = _render_command(src, out, num_proc, profile)
    with tempfile.TemporaryFile("w+") as log:
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
        peak_rss, peak_pss, cpu_main = _peak_tree_memory(proc)
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        log.seek(0)
        output = log.read()
    meta_path = out / "meta.json"
    # under cProfile the command's exit status is lost (the profiler swallows SystemExit): meta.json decides
    if proc.returncode != 0 or not meta_path.exists() or (profile is not None and not profile.exists()):
        return {"failed": output[-2000:] or "(no output)", "returncode": proc.returncode, "command": cmd}
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    build_s = json.loads(meta_path.read_text())["build_s"]
    return {"wall_s": round(wall, 2), "build_s": build_s, "outside_build_s": round(wall - build_s, 2),
            "cpu_s": round(cpu, 2), "cpu_main_s": round(cpu_main, 2), "cpu_workers_s": round(cpu - cpu_main, 2),
            "peak_rss_tree_gib": round(peak_rss / 2**30, 3), "peak_pss_tree_gib": round(peak_pss / 2**30, 3),
            "load_average": round(os.getloadavg()[0], 2)}


def _phase_seconds(profile: Path) -> dict[str, float]:
    """Cumulative seconds of each function of PHASES in a cProfile file, in PHASES order.

    A function counts where its name is in PHASES and its file lies directly under a folder named in
    PHASE_DIRS (render/ or psgvlm/); the same name in several such files is summed.
    """
    import pstats

    found: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, _tt, cumulative, _callers) in pstats.Stats(str(profile)).stats.items():
        if name in PHASES and Path(filename).parent.name in PHASE_DIRS:
            found[name] = found.get(name, 0.0) + cumulative
    return {name: round(found[name], 3) for name in PHASES if name in found}


# ------------------------------------------------------------------------------------------------
# Parts
# ------------------------------------------------------------------------------------------------
def make_night(src: Path, minutes: float, seed: int, res: dict):
    """One synthetic ISRUC night on disk and its scaled epochs read back through the real reader."""
    from psgvlm.io.channels import DATASET_CHANNELS
    from psgvlm.io.readers import find_recordings, read_recording
    from psgvlm.signal.epochs import epochs_from_recording, minmax_scale
    from psgvlm.synth.layouts import synth_dataset

    t0 = time.perf_counter()
    synth_dataset("isruc", src, subjects=1, minutes=minutes, seed=seed, progress=False)
    t_synth = time.perf_counter() - t0
    rec = read_recording("isruc", **find_recordings("isruc", src)[0])
    channels = [c for c in DATASET_CHANNELS["isruc"] if c in rec.ch_names]
    sfreq = 200.0
    t0 = time.perf_counter()
    x_raw, stages, _ = epochs_from_recording(rec, channels, sfreq)
    x = minmax_scale(x_raw)
    t_prep = time.perf_counter() - t0
    print(f"night: {len(x)} epochs x {len(channels)} channels at {sfreq:g} Hz "
          f"({', '.join(channels)}); synth {t_synth:.1f} s, resample+epoch+scale {t_prep:.2f} s")
    res["night"] = {"epochs": len(x), "channels": channels, "sfreq": sfreq, "synth_s": round(t_synth, 2),
                    "epochs_and_scale_s": round(t_prep, 3)}
    return x, stages


def part1_renderers(x: np.ndarray, stages, out: Path, *, fast_epochs: int, ref_epochs: int) -> dict:
    """Fast renderer vs the matplotlib reference on the same epochs: speed, agreement, a picture."""
    from psgvlm.image.renderer import RenderSettings, image_agreement, render_epoch, render_epoch_reference

    settings = RenderSettings()
    n_ep = len(x)
    idx = np.linspace(0, n_ep - 1, min(fast_epochs, n_ep)).round().astype(int)
    ref_idx = idx[np.linspace(0, len(idx) - 1, min(ref_epochs, len(idx))).round().astype(int)]
    render_epoch(x[0], settings)  # warm the per-layout plan (once per process, as in a build)
    render_epoch_reference(x[0], settings)  # matplotlib imports and font cache
    fast_imgs, fast_wall, fast_cpu = _timed(render_epoch, [x[i] for i in idx], settings)
    ref_imgs, ref_wall, ref_cpu = _timed(render_epoch_reference, [x[i] for i in ref_idx], settings)
    s1 = RenderSettings(supersample=1)  # matplotlib straight at the output size: its cheapest honest setting
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
    res = {
        "settings": settings.as_dict(),
        "fast_epochs_per_s": round(fast_eps, 2), "fast_epochs_per_cpu_s": round(fast_eps_cpu, 2),
        "reference_epochs_per_s": round(ref_eps, 3), "reference_epochs_per_cpu_s": round(ref_eps_cpu, 3),
        "reference_straight_epochs_per_s": round(5 / ref1_wall, 3),
        "ratio_wall": round(fast_eps / ref_eps, 2), "ratio_cpu": round(fast_eps_cpu / ref_eps_cpu, 2),
        "ratio_vs_reference_straight": round(fast_eps / (5 / ref1_wall), 2),
        "mad": round(agree["mad"], 3), "ssim": round(agree["ssim"], 4), "ssim_min": round(min(per_img), 4),
        "n_fast": int(len(idx)), "n_reference": int(len(ref_idx)),
    }
    # full night, fast renderer, one process (the builder splits this over workers)
    t0 = time.perf_counter()
    for i in range(n_ep):
        render_epoch(x[i], settings)
    t_night = time.perf_counter() - t0
    print(f"whole night with the fast renderer, 1 process: {t_night:.2f} s ({n_ep / t_night:.0f} epochs/s)")
    res["night_fast_render_s"] = round(t_night, 3)
    res["side_by_side"] = _side_by_side(fast_by_idx, dict(zip(ref_idx.tolist(), ref_imgs)), stages,
                                        out / "side_by_side.png")
    return res


def _side_by_side(fast: dict, ref: dict, stages, png: Path) -> str:
    """fast | reference | |difference| inverted for a wake-ish and a deep-sleep epoch (or two spread ones)."""
    from PIL import Image

    ref_idx = list(ref)
    picks = []
    if stages is not None:
        for code in (0, 3):
            picks += [i for i in ref_idx if stages[i] == code][:1]
    picks = list(dict.fromkeys(picks + ref_idx[len(ref_idx) // 2:]))[:2]
    rows = []
    for i in picks:
        a, b = fast[i], ref[i]
        diff = 255 - np.abs(a.astype(int) - b.astype(int)).max(axis=-1).astype(np.uint8)
        gap = np.full((a.shape[0], 8, 3), 200, np.uint8)
        rows.append(np.concatenate([a, gap, b, gap, np.repeat(diff[..., None], 3, -1)], axis=1))
    sheet = np.concatenate([np.concatenate([r, np.full((8, r.shape[1], 3), 200, np.uint8)]) for r in rows])
    Image.fromarray(sheet).save(png)
    print(f"wrote {png} (fast | reference | |difference| inverted), epochs {picks}")
    return str(png)


def part2_build(src: Path, out: Path, num_proc: int) -> dict:
    """The whole night to a dataset by the build command in a fresh process: wall, CPU, memory; then
    the same command under cProfile for the phases."""
    import datasets

    res = _run_build(src, out, num_proc)
    if "failed" in res:
        print(f"dataset build FAILED (exit {res['returncode']}):\n{res['failed']}")
        return res
    res["images"] = sum(len(d) for d in datasets.load_from_disk(str(out)).values())
    res["num_proc"] = num_proc
    print(f"dataset build, {num_proc} workers: {res['wall_s']:.1f} s wall for the whole process (start-up, "
          f"imports and exit {res['outside_build_s']:.2f} s, build_dataset {res['build_s']:.1f} s), "
          f"{res['images']} images; CPU {res['cpu_s']:.1f} s: ~{res['cpu_main_s']:.1f} s in the process "
          f"(sampled) + ~{res['cpu_workers_s']:.1f} s in its workers "
          f"(load average {res['load_average']:.1f} on {os.cpu_count()} cores)")
    print(f"peak memory: {res['peak_pss_tree_gib']:.2f} GiB PSS / {res['peak_rss_tree_gib']:.2f} GiB RSS summed "
          f"over the process tree (sampled every 0.1 s)")
    profile = out.parent / "build.prof"
    prof = _run_build(src, out.parent / f"{out.name}_profiled", num_proc, profile=profile)
    shutil.rmtree(out.parent / f"{out.name}_profiled", ignore_errors=True)
    if "failed" in prof:
        print(f"profiled build FAILED (exit {prof['returncode']}):\n{prof['failed']}")
        res["phases_failed"] = prof["failed"]
        return res
    res["phases_s"] = _phase_seconds(profile)
    res["profiled_wall_s"], res["profiled_build_s"] = prof["wall_s"], prof["build_s"]
    print(f"phases (main-process cumulative seconds under the profiler; profiled build_dataset "
          f"{prof['build_s']:.1f} s, {prof['wall_s']:.1f} s wall): "
          + ", ".join(f"{k} {v:.2f}" for k, v in res["phases_s"].items()))
    return res


def part3_growth(tmp: Path, nights: int, minutes: float, seed: int, num_proc: int, one_pss_gib: float) -> dict:
    """Peak memory of ``nights`` nights against one night's: it must stay flat."""
    from psgvlm.synth.layouts import synth_dataset

    src = tmp / "isruc_n"
    synth_dataset("isruc", src, subjects=nights, minutes=minutes, seed=seed, progress=False)
    res = _run_build(src, tmp / "dataset_n", num_proc)
    if "failed" in res:
        print(f"{nights}-night build FAILED:\n{res['failed']}")
        return res
    res["nights"] = nights
    res["pss_ratio_vs_one_night"] = round(res["peak_pss_tree_gib"] / one_pss_gib, 3)
    print(f"{nights} nights: {res['wall_s']:.1f} s wall, peak {res['peak_pss_tree_gib']:.2f} GiB PSS "
          f"(1 night: {one_pss_gib:.2f} GiB; ratio {res['pss_ratio_vs_one_night']:.2f})")
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for side_by_side.png and benchmark_render.json")
    p.add_argument("--minutes", type=float, default=480.0, help="synthetic night length (default 8 h)")
    p.add_argument("--fast-epochs", type=int, default=200, help="epochs timed with the fast renderer")
    p.add_argument("--ref-epochs", type=int, default=20, help="epochs timed with the reference (slow)")
    p.add_argument("--num-proc", type=int, default=2, help="workers for the dataset build")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-build", action="store_true", help="only part 1")
    p.add_argument("--skip-renderers", action="store_true", help="skip part 1 (renderer speed and agreement)")
    p.add_argument("--growth-nights", type=int, default=3,
                   help="part 3: build this many nights and compare peak memory with one night (1 = skip)")
    args = p.parse_args(argv)
    if args.ref_epochs < 1 or args.fast_epochs < args.ref_epochs:
        p.error(f"need 1 <= --ref-epochs ({args.ref_epochs}) <= --fast-epochs ({args.fast_epochs})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"config": vars(args)}

    with tempfile.TemporaryDirectory(prefix="psgvlm-bench-") as tmp:
        tmp = Path(tmp)
        src = tmp / "isruc"
        x, stages = make_night(src, args.minutes, args.seed, res)
        if not args.skip_renderers:
            res["part1"] = part1_renderers(x, stages, out, fast_epochs=args.fast_epochs, ref_epochs=args.ref_epochs)
        del x
        if not args.skip_build:
            res["part2"] = part2_build(src, tmp / "dataset", args.num_proc)
            if args.growth_nights > 1 and "failed" not in res["part2"]:
                res["part3"] = part3_growth(tmp, args.growth_nights, args.minutes, args.seed + 1, args.num_proc,
                                            res["part2"]["peak_pss_tree_gib"])

    from psgvlm.provenance import provenance, write_json_atomic

    res["provenance"] = provenance()
    write_json_atomic(out / "benchmark_render.json", res)
    print(json.dumps({k: v for k, v in res.items() if k != "provenance"}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
