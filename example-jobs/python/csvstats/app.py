"""csvstats: statistics of a CSV table with the standard library only (csv,
statistics): per column, numeric summaries or the most frequent values."""

import csv
import io
import statistics
from collections import Counter

from elihu_guest import JobInfo, info, job, progress


def number(text: str):
    try:
        return float(text)
    except ValueError:
        return None


def summarise(name: str, cells: list, top: int) -> dict:
    present = [c for c in cells if c.strip() != ""]
    column = {"name": name, "count": len(present), "missing": len(cells) - len(present)}
    numbers = [number(c) for c in present]
    if present and all(n is not None for n in numbers):
        column.update(
            numeric=True,
            min=min(numbers),
            max=max(numbers),
            mean=statistics.fmean(numbers),
            median=statistics.median(numbers),
            stdev=statistics.stdev(numbers) if len(numbers) > 1 else None,
        )
    else:
        counts = Counter(present)
        column.update(
            numeric=False,
            distinct=len(counts),
            top=[{"value": v, "count": n} for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]],
        )
    return column


@job
def run(ctx: dict, job: JobInfo) -> dict:
    reader = csv.reader(io.StringIO(ctx["csv"]), delimiter=ctx.get("delimiter", ","))
    rows = list(reader)
    if not rows:
        raise Exception("the CSV has no header row")
    header, body = rows[0], rows[1:]
    wanted = ctx.get("columns") or header
    unknown = [c for c in wanted if c not in header]
    if unknown:
        raise Exception(f"no such column: {', '.join(unknown)} (the header has: {', '.join(header)})")
    columns = []
    for i, name in enumerate(wanted):
        index = header.index(name)
        cells = [row[index] if index < len(row) else "" for row in body]
        columns.append(summarise(name, cells, ctx.get("top", 3)))
        progress((i + 1) * 100 // len(wanted), f"column {name}")
    info(f"{len(body)} rows, {len(columns)} columns")
    return {"rows": len(body), "columns": columns}
