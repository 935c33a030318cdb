"""The ``rmsprop`` command: the claims of the Marovi AI encyclopedia article "RMSProp" (the
source of this library's claims) as experiments you can run and look at.

    rmsprop demo                      a tour of a few experiments in under a minute
    rmsprop experiments               the list, one line each
    rmsprop flavors                   the flavours, one line each
    rmsprop run NAME [--out DIR] [--seed N] [--steps N]
    rmsprop report [--out DIR]        every experiment into one self-contained HTML page
    rmsprop bench [ARGS...]           the step-time benchmark (``rmsprop bench --help``)

Each claim gets a verdict: reproduced, contradicted or inconclusive (contradictions listed
first). Exit status: 0 when the command ran (a claim that is not reproduced is a finding, not an
error; add ``--strict`` to exit with 1 then), 2 for a bad name or argument.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from .extras import require

require("the rmsprop command", "lab", "typer", "rich", "torch", "matplotlib")

import typer
from rich.console import Console
from rich.progress import (BarColumn, Progress, SpinnerColumn, TaskID, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn)
from rich.table import Table as RichTable

from . import experiments
from .spec import FLAVORS, flavors
from .experiments import Result

__all__ = ["app", "main"]

DEMO = ("valley", "correlations", "graves-nesterov", "adam-beta1-zero", "warmup")

app = typer.Typer(
    name="rmsprop",
    help=("RMSProp, the claims of the Marovi AI encyclopedia article \"RMSProp\" as runnable "
          "experiments with plots and a report.\n\n"
          f"Experiments: {', '.join(experiments.names())}.\n\n"
          f"Flavours (flavor=...): {', '.join(FLAVORS)}."),
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console()
err = Console(stderr=True)

OutOption = typer.Option(Path("rmsprop-out"), "--out", "-o", help="Folder for the PNG, JSON and HTML files.",
                         file_okay=False)
SeedOption = typer.Option(0, "--seed", min=0, max=2**32 - 1,
                          help="Seed: the same seed gives the same numbers.")
StrictOption = typer.Option(False, "--strict",
                            help="Exit with status 1 if a claim is not reproduced.")
VERDICT_STYLE = {"reproduced": "green", "contradicted": "red", "inconclusive": "yellow"}


def _check_name(name: str) -> str:
    try:
        experiments.get(name)
    except experiments.UnknownExperimentError as error:  # the message has "did you mean"
        raise typer.BadParameter(str(error)) from error
    return name


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description:<16}"), BarColumn(),
                    TaskProgressColumn(), TimeElapsedColumn(), console=err, transient=False)


def _set_progress(bars: Progress, task: TaskID, fraction: float) -> None:
    bars.update(task, completed=fraction)


def _run_one(name: str, seed: int, steps: Optional[int], out_dir: Path, quick: bool) -> Result:
    """One experiment in a worker process (report --jobs)."""
    return experiments.run(name, seed=seed, steps=steps, out_dir=out_dir, quick=quick)


def _run_many(plan: Sequence[tuple[str, Optional[int]]], out_dir: Path, seed: int, *,
              quick: bool = False, jobs: int = 1) -> list[Result]:
    """Run each (name, steps) with one progress bar per experiment (``jobs`` > 1: in that many
    processes, each bar filled when its experiment ends)."""
    for name, steps in plan:  # refuse a bad length before anything runs
        minimum = experiments.get(name).SPEC.min_steps
        if steps is not None and steps < minimum:
            raise typer.BadParameter(f"steps for {name!r} must be >= {minimum}, got {steps}",
                                     param_hint="'--steps'")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise typer.BadParameter(f"cannot create the folder {str(out_dir)!r}: {exc.strerror}",
                                 param_hint="'--out'") from exc
    results = []
    with _progress() as bars:
        tasks = {name: bars.add_task(name, total=1.0, start=False) for name, _ in plan}

        def done(name: str, result: Optional[Result], error: Optional[BaseException]) -> None:
            task = tasks[name]
            if isinstance(error, OSError):  # the folder exists but cannot be written to
                raise typer.BadParameter(f"cannot write to {str(out_dir)!r}: {error}",
                                         param_hint="'--out'") from error
            if isinstance(error, ImportError):  # an optional dependency (gymnasium) is missing
                err.print(f"[yellow]skipped {name}:[/] {error}")
                bars.update(task, completed=1.0, description=f"{name} skipped")
                return
            if error is not None:
                raise error
            assert result is not None  # an experiment returns its result or raises
            results.append(result)
            bars.update(task, completed=1.0, description=f"{name} {result.verdict}")

        if jobs > 1 and len(plan) > 1:
            from concurrent.futures import ProcessPoolExecutor

            # the heavy ones first, the later-listed (the models: slowest) before the others
            order = {name: i for i, (name, _) in enumerate(plan)}
            heavy_first = sorted(plan, key=lambda item: (not experiments.get(item[0]).SPEC.heavy,
                                                         -order[item[0]]))
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [(name, pool.submit(_run_one, name, seed, steps, out_dir, quick))
                           for name, steps in heavy_first]
                for name, _ in plan:
                    bars.start_task(tasks[name])
                for name, future in futures:
                    error = future.exception()
                    done(name, None if error else future.result(), error)
        else:
            for name, steps in plan:
                task = tasks[name]
                bars.start_task(task)
                update: Callable[[float], None] = functools.partial(_set_progress, bars, task)
                try:
                    result = experiments.run(name, seed=seed, steps=steps, out_dir=out_dir,
                                             progress=update, quick=quick)
                except (OSError, ImportError) as exc:
                    done(name, None, exc)
                    continue
                done(name, result, None)
    return results


def _mark(verdict: str) -> str:
    return f"[{VERDICT_STYLE.get(verdict, 'white')}]{verdict}[/]"


def _summary(results: list[Result], title: str) -> None:
    from .experiments.html import ordered

    table = RichTable(title=title, show_lines=True)
    table.add_column("experiment", style="bold")
    table.add_column("verdict")
    table.add_column("judged figures: mean [95% interval] vs the claim")
    table.add_column("s", justify="right")
    for r in ordered(results):
        table.add_row(r.name, _mark(r.verdict), r.finding, f"{r.seconds:.1f}")
    out.print(table)


def _details(result: Result) -> None:
    out.print(f"[bold]{result.name}[/] {_mark(result.verdict)}  ({result.seconds:.1f} s)")
    out.print(f"[italic]Article:[/] {result.claim}")
    out.print(f"[bold]Figures:[/] {result.finding}")
    for reason in result.reasons:
        out.print(f"  - {reason}")
    for t in result.tables:
        table = RichTable(title=t.title or None)
        for header in t.headers:
            table.add_column(str(header))
        for row in t.rows:
            table.add_row(*[str(c) for c in row])
        out.print(table)
    for note in result.notes:
        out.print(f"[yellow]note:[/] {note}")
    out.print(f"wrote {', '.join(str(p) for p in result.pngs)} and {result.json}")


def _exit(results: list[Result], strict: bool) -> None:
    if strict and not all(r.verdict == "reproduced" for r in results):
        raise typer.Exit(1)


@app.command()
def demo(out_dir: Path = OutOption, seed: int = SeedOption, strict: bool = StrictOption) -> None:
    """A tour of five experiments at demo settings (fewer steps and seeds): a table, plots."""
    from .experiments.html import write_report

    start = time.perf_counter()
    plan = [(name, None) for name in DEMO]
    results = _run_many(plan, out_dir, seed, quick=True)
    report = write_report(results, out_dir / "report.html")
    _summary(results, f"rmsprop demo: {experiments.headline(results)}")
    out.print("demo settings: fewer steps and seeds than `rmsprop report` (the notes of each "
              "experiment say how many); the intervals are wider accordingly")
    out.print(f"plots and JSON in {out_dir}/, report: {report}  "
               f"({time.perf_counter() - start:.0f} s)")
    out.print("all experiments at full settings: [bold]rmsprop report[/]; one: "
              "[bold]rmsprop run NAME[/]; the list: [bold]rmsprop experiments[/]")
    _exit(results, strict)


@app.command("experiments")
def list_experiments() -> None:
    """List the experiments, one line each."""
    table = RichTable(title="rmsprop experiments", show_header=True)
    table.add_column("name", style="bold")
    table.add_column("what it shows")
    table.add_column("default steps", justify="right")
    with err.status("loading the experiments..."):
        summaries = experiments.summaries()
    for name, summary in summaries.items():
        table.add_row(name, summary, str(experiments.get(name).SPEC.default_steps))
    out.print(table)


@app.command("flavors")
def list_flavors() -> None:
    """List the flavours (the optimizers' flavor= argument): whose RMSProp each reproduces."""
    table = RichTable(title="rmsprop flavours", show_header=True)
    table.add_column("flavor", style="bold")
    table.add_column("reproduces")
    for name, reproduces in flavors().items():
        table.add_row(name, reproduces)
    out.print(table)


@app.command()
def run(
    name: str = typer.Argument(..., help=f"Experiment name: {', '.join(experiments.names())}.",
                               callback=_check_name),
    out_dir: Path = OutOption,
    seed: int = SeedOption,
    steps: Optional[int] = typer.Option(None, "--steps", min=1,
                                        help="Length of the run (default: the experiment's own)."),
    strict: bool = StrictOption,
) -> None:
    """Run one experiment: print the figure that checks its claim, write NAME.png and NAME.json."""
    results = _run_many([(name, steps)], out_dir, seed)
    if not results:  # skipped: an optional dependency is missing (said on stderr)
        raise typer.Exit(1)
    _details(results[0])
    _exit(results, strict)


@app.command()
def report(
    out_dir: Path = OutOption,
    seed: int = SeedOption,
    only: Optional[List[str]] = typer.Option(None, "--only", help="Run only these experiments (repeatable)."),
    quick: bool = typer.Option(False, "--quick",
                               help="Demo settings: fewer steps and seeds (as the demo and the tests)."),
    jobs: int = typer.Option(2, "--jobs", "-j", min=1, help="Experiments run in this many processes."),
    strict: bool = StrictOption,
) -> None:
    """Run every experiment and write one self-contained HTML report (OUT/report.html)."""
    from .experiments.html import write_report

    names = [_check_name(n) for n in only] if only else experiments.names()
    plan = [(n, None) for n in names]
    start = time.perf_counter()
    results = _run_many(plan, out_dir, seed, quick=quick, jobs=jobs)
    path = write_report(results, out_dir / "report.html")
    _summary(results, f"rmsprop report: {experiments.headline(results)}")
    out.print(f"report: {path}  ({time.perf_counter() - start:.0f} s)")
    _exit(results, strict)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                               "help_option_names": []})
def bench(ctx: typer.Context) -> None:
    """The step-time benchmark: ours vs torch.optim.RMSprop and peers (`rmsprop bench --help`)."""
    try:
        from .benchmark.step_time import main as bench_main
    except ImportError as exc:  # pragma: no cover - the benchmark ships with the package
        err.print(f"[red]error:[/] the benchmark is not available: {exc}")
        raise typer.Exit(1) from exc
    code = bench_main(list(ctx.args))
    raise typer.Exit(code or 0)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
