"""Your own click log through the ULTR diagnostics: ``python -m cookbook clicklog --log FILE --out DIR``.

Notebooks 70 and 71 work on simulated logs; this module is the way in for a real one.

* :func:`load_click_log` reads a CSV/TSV (optionally gzipped) or Parquet log with one row per
  impression: ``query``, ``document`` (or ``doc``), ``position`` (1 = top) and ``click`` (0/1),
  optionally ``session``, ``propensity`` and feature columns (``feat_*``, or the ones you name).
  Bad input raises :class:`cookbook.beir.DataFormatError` naming the file, the line (CSV; the
  header is line 1) or row (Parquet) and the column, like every other loader of the cookbook.
* :func:`report` runs the diagnostics of notebook 71 on it and writes a report folder: the
  identifiability verdict of the rank graph (:func:`cookbook.ultr.identifiability`), the
  position-bias curve of a two-tower fit (:func:`cookbook.twotower.fit_two_tower`) with a 95%
  bootstrap band over sessions (or queries), and inverse-propensity weights
  (:func:`cookbook.ultr.propensity_weights`) for training on the log.

Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
"""

from __future__ import annotations

import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cookbook import plotting
from cookbook.beir import DataFormatError, check_utf8
from cookbook.clicks import ctr_by_position
from cookbook.config import SEED
from cookbook.twotower import UnidentifiedPositionsWarning, fit_two_tower
from cookbook.ultr import identifiability, propensity_weights

REQUIRED = ("query", "document", "position", "click")
_CSV = {".csv": ",", ".csv.gz": ",", ".tsv": "\t", ".tsv.gz": "\t"}


# --------------------------------------------------------------------------- reading


def _read_csv(path: Path, sep: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep=sep, encoding="utf-8-sig", skip_blank_lines=False,
                           dtype={"query": str, "document": str, "doc": str, "session": str},
                           keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise DataFormatError(path, None, None, "empty file: expected a header line and one row per "
                              "impression") from None
    except pd.errors.ParserError as err:
        found = re.search(r"line (\d+)", str(err))
        raise DataFormatError(path, int(found.group(1)) if found else None, None,
                              f"cannot parse the table ({str(err).strip()})") from None
    except UnicodeDecodeError:
        check_utf8(path)  # names the line and byte offset
        raise DataFormatError(path, None, None, "not UTF-8 text") from None
    except (OSError, EOFError) as err:  # unreadable, or a damaged gzip stream
        raise DataFormatError(path, None, None, f"cannot read the file ({err})") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        import pyarrow  # optional: pandas reads Parquet through it
    except ImportError:
        raise DataFormatError(path, None, None, "reading Parquet needs pyarrow (pip install pyarrow); "
                              "or save the log as CSV") from None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pyarrow.ArrowException) as err:
        raise DataFormatError(path, None, None, f"not a readable Parquet file ({err})") from None


def _first_bad(frame: pd.DataFrame, bad, path: Path, column: str, problem, unit: str, first: int):
    """Raise for the first row where ``bad`` is True; ``problem(value)`` says what is wrong."""
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = frame[column].iloc[i]
        value = value.item() if isinstance(value, np.generic) else value  # 2.5, not np.float64(2.5)
        raise DataFormatError(path, i + first, column, problem(value), unit=unit)


def load_click_log(path, feature_cols=None) -> pd.DataFrame:
    """Read a click log (CSV, TSV, either gzipped, or Parquet): one row per impression.

    Required columns: ``query``, ``document`` (``doc`` is accepted too), ``position`` (an integer,
    1 = top; ``3.0`` is read as 3) and ``click`` (0/1, or true/false). Optional: ``session``
    (each session shows a position once), ``propensity`` (the logging policy's probability of
    this document at this position, in (0, 1]) and features: ``feature_cols``, or by default
    every ``feat_*`` column (numbers). Other columns are kept as they are.

    Returns a DataFrame with ``doc`` (the name :mod:`cookbook.ultr` and :mod:`cookbook.twotower`
    read) for ``document``; ``frame.attrs`` holds the source path and the feature columns.
    Raises :class:`cookbook.beir.DataFormatError` naming the file, the line (CSV: the header is
    line 1) or row (Parquet), and the column.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, None, None, "file not found")
    if path.is_dir():
        raise DataFormatError(path, None, None, "a folder, not a click-log file")
    suffix = next((s for s in (*_CSV, ".parquet", ".pq") if path.name.lower().endswith(s)), None)
    if suffix is None:
        raise DataFormatError(path, None, None, "unknown file type: expected .csv, .tsv (either may be "
                              ".gz) or .parquet")
    if suffix in _CSV:
        frame, unit, first, header = _read_csv(path, _CSV[suffix]), "line", 2, 1
    else:
        frame, unit, first, header = _read_parquet(path), "row", 1, None
    frame.columns = [str(c).strip() for c in frame.columns]
    have = ", ".join(frame.columns)
    if "document" in frame.columns and "doc" in frame.columns:
        raise DataFormatError(path, header, "doc", "both 'document' and 'doc' columns: keep one")
    frame = frame.rename(columns={"document": "doc"})
    for name in REQUIRED:
        if (name if name != "document" else "doc") not in frame.columns:
            raise DataFormatError(path, header, name, f"missing column (columns here: {have})", unit=unit)
    if len(frame) == 0:
        raise DataFormatError(path, None, None, "no impressions: the file has a header and no rows")
    if feature_cols is None:
        feature_cols = [c for c in frame.columns if c.startswith("feat_")]
    for name in feature_cols:
        if name not in frame.columns:
            raise DataFormatError(path, header, name, f"missing feature column (columns here: {have})",
                                  unit=unit)

    def check(column, bad, problem):
        _first_bad(frame, bad, path, column, problem, unit, first)

    for name in ("query", "doc") + (("session",) if "session" in frame.columns else ()):
        values = frame[name]
        check(name, values.isna() | (values.astype(str).str.strip() == ""), lambda v: "empty value")
        frame[name] = values.astype(str)
    position = pd.to_numeric(frame["position"], errors="coerce")
    check("position", position.isna() | (position % 1 != 0),
          lambda v: f"position must be an integer, got {v!r}")
    check("position", position < 1, lambda v: f"position must be >= 1 (1 = the top result), got {v!r}")
    frame["position"] = position.astype(np.int64)
    click = frame["click"]
    if pd.api.types.is_bool_dtype(click):
        click = click.astype(np.int64)
    elif not pd.api.types.is_numeric_dtype(click):  # true/false written as words
        words = click.astype(str).str.strip().str.lower().replace({"true": "1", "false": "0"})
        click = pd.to_numeric(words, errors="coerce")
    check("click", ~click.isin([0, 1]), lambda v: f"click must be 0 or 1, got {v!r}")
    frame["click"] = click.astype(np.int64)
    for name in feature_cols + (["propensity"] if "propensity" in frame.columns else []):
        values = pd.to_numeric(frame[name], errors="coerce")
        check(name, values.isna() | ~np.isfinite(values),
              lambda v: "empty value" if pd.isna(v) else f"expected a number, got {v!r}")
        frame[name] = values.astype(np.float64)
    if "propensity" in frame.columns:
        check("propensity", (frame["propensity"] <= 0) | (frame["propensity"] > 1),
              lambda v: f"a propensity is a probability in (0, 1], got {v!r}")
    if "session" in frame.columns:
        repeated = frame.duplicated(["session", "position"]).to_numpy()
        if repeated.any():
            i = int(np.flatnonzero(repeated)[0])
            s, k = frame["session"].iloc[i], frame["position"].iloc[i]
            j = int(np.flatnonzero((frame["session"] == s) & (frame["position"] == k))[0])
            raise DataFormatError(path, i + first, "position", f"session {s!r} shows position {k} twice "
                                  f"(also on {unit} {j + first})", unit=unit)
    frame.attrs.update(source=str(path), feature_cols=list(feature_cols))
    return frame


# --------------------------------------------------------------------------- the report


def estimate_propensity(log: pd.DataFrame) -> np.ndarray:
    """P̂(the logging policy shows this document at this position | the query), per impression:
    ``count(q, d, k) / count(q, k)``. Deterministic logging gives 1.0 everywhere.

    The arrays version for simulated logs is :func:`cookbook.clicks.estimate_propensities`.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """
    per_pair = log.groupby(["query", "doc", "position"], observed=True)["click"].transform("size")
    per_slot = log.groupby(["query", "position"], observed=True)["click"].transform("size")
    return (per_pair / per_slot).to_numpy(dtype=np.float64)


@dataclass
class ClickLogReport:
    """What :func:`report` found and wrote.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """

    verdict: str
    connected: bool
    components: list
    curve: pd.DataFrame  # one row per position: impressions, CTR, examination with its 95% band
    weights: pd.DataFrame  # one row per (query, doc, position): impressions, propensity, weight
    files: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"ClickLogReport({self.verdict!r}, files={sorted(self.files)})"


def _fit_curve(log, relevance, feature_cols, n_positions, steps, seed, check_identifiability):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnidentifiedPositionsWarning)
        fit = fit_two_tower(log, relevance=relevance, feature_cols=feature_cols or None,
                            n_positions=n_positions, steps=steps, seed=seed,
                            check_identifiability=check_identifiability)
    return fit, [str(w.message) for w in caught if issubclass(w.category, UnidentifiedPositionsWarning)]


def _bootstrap(log, unit: str, n_boot: int, fit_args: dict, seed: int) -> np.ndarray:
    """(n_boot, positions) examination curves fitted on logs resampled by ``unit`` with replacement."""
    rng = np.random.default_rng(seed)
    groups = [g.index.to_numpy() for _, g in log.groupby(unit, observed=True, sort=True)]
    curves = []
    for _ in range(n_boot):
        rows = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        fit, _ = _fit_curve(log.loc[rows].reset_index(drop=True), **fit_args, check_identifiability=False)
        curves.append(fit.examination())
    return np.vstack(curves)


def _figure(curve: pd.DataFrame, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: nothing is shown, nothing global is kept

    plotting.set_style()
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.bar(curve["position"], curve["CTR"], color="C0")
    left.set(xlabel="position", ylabel="click-through rate", title="clicks per impression (raw)")
    ok = curve[curve["identified"]]
    right.fill_between(ok["position"], ok["95% low"], ok["95% high"], color="C1", alpha=0.25,
                       label="95% bootstrap band")
    right.plot(ok["position"], ok["examination"], marker="o", color="C1", label="two-tower fit")
    right.set(xlabel="position", ylabel="examination / examination at 1", ylim=(0, None),
              title="position bias (bias tower)")
    right.legend()
    for ax in (left, right):
        ax.set_xticks(curve["position"])
    fig.savefig(path, dpi=110)


def _markdown_table(frame: pd.DataFrame) -> list[str]:
    cols = list(frame.columns)
    rows = [f"| {' | '.join(cols)} |", "|" + "---:|" * len(cols)]
    for values in frame.itertuples(index=False):
        rows.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in values) + " |")
    return rows


def report(log, out_dir, *, n_boot: int = 20, steps: int = 100, clip: float = 10.0,
           seed: int = SEED) -> ClickLogReport:
    """Run the ULTR diagnostics on a click log and write ``out_dir``.

    ``log``: a path (read with :func:`load_click_log`) or a DataFrame it returned. Steps:

    1. the rank graph over shared query-document pairs (and, when the log has features and the
       pairs leave positions apart, binned feature vectors): the identifiability verdict;
    2. a two-tower fit (a ``linear`` relevance tower over the features, or an ``id`` tower with
       one parameter per pair when there are none) and its examination curve relative to
       position 1; ``n_boot`` refits on logs resampled by session (by query without a
       ``session`` column) give the 95% band; unidentified positions are left blank;
    3. inverse-propensity weights: the log's ``propensity`` column, or estimated from the log
       (:func:`estimate_propensity`), clipped at ``clip`` and normalised to mean 1.

    Files: ``report.md`` (its first line is the identifiability verdict), ``position_bias.csv``,
    ``position_bias.png`` and ``propensity_weights.csv``.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """
    if not isinstance(log, pd.DataFrame):
        log = load_click_log(log)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    features = list(log.attrs.get("feature_cols") or [c for c in log.columns if str(c).startswith("feat_")])
    n_positions = int(log["position"].max())

    ident, by = identifiability(log, n_positions=n_positions, by="pair"), "shared query-document pairs"
    if not ident.connected and features:
        ident = identifiability(log, n_positions=n_positions, by="both", feature_cols=features)
        by = "shared query-document pairs or binned feature vectors"

    fit_args = {"relevance": "linear" if features else "id", "feature_cols": features,
                "n_positions": n_positions, "steps": steps, "seed": seed}
    fit, warned = _fit_curve(log, **fit_args, check_identifiability=True)
    identified = fit.identified if fit.identified is not None else np.ones(n_positions, dtype=bool)
    unit = "session" if "session" in log.columns else "query"
    boot = _bootstrap(log, unit, n_boot, fit_args, seed) if n_boot > 0 else np.full((1, n_positions), np.nan)
    ctr = ctr_by_position(log).reindex(range(1, n_positions + 1))
    curve = pd.DataFrame({
        "position": np.arange(1, n_positions + 1),
        "impressions": log["position"].value_counts().reindex(range(1, n_positions + 1), fill_value=0).to_numpy(),
        "CTR": ctr.to_numpy(dtype=np.float64),
        "examination": np.where(identified, fit.examination(), np.nan),
        "95% low": np.where(identified, np.nanpercentile(boot, 2.5, axis=0), np.nan),
        "95% high": np.where(identified, np.nanpercentile(boot, 97.5, axis=0), np.nan),
        "identified": identified,
    })

    given = "propensity" in log.columns
    propensity = log["propensity"].to_numpy() if given else estimate_propensity(log)
    w = propensity_weights(log.assign(propensity=propensity), clip=clip)
    weights = (log[["query", "doc", "position"]].assign(propensity=propensity, weight=w)
               .groupby(["query", "doc", "position"], observed=True, sort=True)
               .agg(impressions=("weight", "size"), propensity=("propensity", "first"), weight=("weight", "first"))
               .reset_index())

    files = {"report": out / "report.md", "table": out / "position_bias.csv",
             "figure": out / "position_bias.png", "weights": out / "propensity_weights.csv"}
    curve.to_csv(files["table"], index=False, float_format="%.4f")
    weights.to_csv(files["weights"], index=False, float_format="%.4f")
    _figure(curve, files["figure"])
    clipped = float(np.mean(1.0 / propensity >= clip))
    source = "the log's propensity column" if given else "estimated as count(q, d, k) / count(q, k)"
    lines = [
        ident.verdict, "",
        f"# Click-log report: {Path(log.attrs.get('source', 'log')).name}", "",
        f"- impressions: {len(log):,}; clicks: {int(log['click'].sum()):,}; queries: {log['query'].nunique():,}; "
        f"documents: {log['doc'].nunique():,}; "
        + (f"sessions: {log['session'].nunique():,}; " if unit == "session" else "no session column; ")
        + f"positions 1..{n_positions}",
        f"- rank graph over {by}: {len(ident.components)} component(s) {ident.components}",
        f"- two-tower fit: {fit_args['relevance']} relevance tower"
        + (f" over {', '.join(features)}" if features else " (one parameter per query-document pair)")
        + f", one bias logit per position; L-BFGS, {steps} iterations; the band: {n_boot} refits on "
        f"logs resampled by {unit}",
        f"- propensity weights: {source}; clipped at {clip:g} ({clipped:.1%} of impressions), mean 1, "
        f"range {w.min():.3f} to {w.max():.3f}",
        "", *_markdown_table(curve.round(4)), "",
        "![position bias](position_bias.png)", "",
        "Files: position_bias.csv (this table), propensity_weights.csv (a weight per query, document "
        "and position: `sample_weight` for `cookbook.twotower.fit_two_tower`), position_bias.png.",
    ]
    if warned:
        lines += ["", "Warning: " + warned[0]]
    files["report"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ClickLogReport(ident.verdict, ident.connected, ident.components, curve, weights, files)


def main(log_path, out_dir, n_boot: int = 20, err=None) -> int:
    """The ``clicklog`` command: write the report, print its first lines; 2 on a bad file.

    Taught in: notebooks/71_two_tower_identifiability_and_confounding.ipynb
    """
    err = err or sys.stderr
    try:
        result = report(log_path, out_dir, n_boot=n_boot)
    except DataFormatError as error:
        print(f"cookbook clicklog: {error}", file=err)
        return 2
    text = result.files["report"].read_text(encoding="utf-8").splitlines()
    print("\n".join(text[:8]))
    print(f"report: {result.files['report']}", file=err)
    return 0
