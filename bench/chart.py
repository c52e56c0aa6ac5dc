#!/usr/bin/env python3
"""Bar chart of hyperfine results: python3 bench/chart.py RESULTS_DIR -> RESULTS_DIR/chart.png.

One panel per hyperfine JSON file in the directory (host/vm, warm/cold), mean with the
standard deviation as error bar, du -bs highlighted.
"""
import json
import pathlib
import sys

try:
    import matplotlib
except ImportError:
    import subprocess
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"])
    import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out = pathlib.Path(sys.argv[1])
files = [p for p in ["host-warm.json", "host-cold.json", "vm-warm.json", "vm-cold.json"] if (out / p).exists()]
if not files:
    sys.exit("no hyperfine JSON in " + str(out))
fig, axes = plt.subplots(len(files), 1, figsize=(9, 3.2 * len(files)), squeeze=False)
for ax, name in zip(axes[:, 0], files):
    results = json.loads((out / name).read_text())["results"]
    labels = [r["command"] for r in results]
    means = [r["mean"] * 1000 for r in results]
    errs = [(r.get("stddev") or 0) * 1000 for r in results]
    colors = ["#c0392b" if l == "du -bs" else "#2e86c1" if "traverse" in l else "#95a5a6" for l in labels]
    ax.barh(labels, means, xerr=errs, color=colors)
    ax.invert_yaxis()
    ax.set_xlabel("ms (mean of runs, lower is better)")
    ax.set_title(name.replace(".json", "").replace("-", ", "))
    for y, m in enumerate(means):
        ax.text(m, y, f" {m:.0f}", va="center", fontsize=8)
fig.tight_layout()
fig.savefig(out / "chart.png", dpi=110)
print("wrote", out / "chart.png")
