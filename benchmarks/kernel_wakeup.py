"""The notebook-06 hang, reproduced: how often nbclient misses the execute_reply of a cell that writes into an
ipywidgets Output widget, with nbclient's stock kernel client and with tal_kit's (tal_kit/kernels.py).

Each run executes a two-cell notebook with papermill and a per-cell timeout of ``--timeout`` seconds. The first cell
builds a few widgets and draws ``--draws`` times into an Output widget (as the explorer does); nbclient answers every
captured output with a comm_msg on the shell socket. A run whose first cell took about the timeout although it
finishes in milliseconds missed the reply's wake-up: without a timeout (papermill's default) it would wait forever.

    .venv/bin/python benchmarks/kernel_wakeup.py [--runs 8] [--draws 40] [--timeout 20]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

CELL = """
import ipywidgets as w
from IPython.display import display, clear_output
controls = [w.FloatSlider(description=f"s{i}") for i in range(12)] + [w.Dropdown(options=list("abc")) for _ in range(4)]
out = w.Output()
display(w.VBox([w.HBox(controls[:8]), w.HBox(controls[8:]), out]))
for k in range(DRAWS):
    with out:
        clear_output(wait=True)
        display({"text/plain": "x" * 2000, "text/html": "<b>" + "y" * 5000 + "</b>"}, raw=True)
print("end of cell")
"""


def run_once(folder: Path, draws: int, timeout: int, manager: type | None) -> float:
    """Seconds the widget cell took, from papermill's own cell timing."""
    import nbformat
    import papermill

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CELL.replace("DRAWS", str(draws))), nbformat.v4.new_code_cell("print(1)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source, target = folder / "in.ipynb", folder / "out.ipynb"
    nbformat.write(nb, str(source))
    extra = {"kernel_manager_class": manager} if manager is not None else {}
    papermill.execute_notebook(str(source), str(target), progress_bar=False, execution_timeout=timeout, **extra)
    return float(nbformat.read(str(target), as_version=4).cells[0].metadata["papermill"]["duration"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--draws", type=int, default=40)
    parser.add_argument("--timeout", type=int, default=20)
    args = parser.parse_args()
    from tal_kit.kernels import kernel_manager_class

    with tempfile.TemporaryDirectory() as tmp:
        for name, manager in (("nbclient's stock client", None), ("tal_kit.kernels", kernel_manager_class())):
            started = time.perf_counter()
            durations = [run_once(Path(tmp), args.draws, args.timeout, manager) for _ in range(args.runs)]
            missed = sum(d > 0.75 * args.timeout for d in durations)
            print(f"{name:24s}: {missed}/{args.runs} runs missed the reply until the {args.timeout} s timeout "
                  f"(widget cell: {' '.join(f'{d:.1f}' for d in durations)} s; {time.perf_counter() - started:.0f} s "
                  "in all)", flush=True)


if __name__ == "__main__":
    main()
