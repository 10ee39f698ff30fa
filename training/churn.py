"""The churn table: a generated classification dataset with categorical columns and gaps.

    python -m training.bundled write churn training/data/churn.csv

Role: the second example dataset of training/examples/ (docs/training.md, "Using your own
data"): a table shaped like the ones teams ship, which the bundled scikit-learn sets are not:
text categories, missing cells, whole numbers beside floats. It is GENERATED here, not real
data: a seeded ``random.Random`` (Python's Mersenne Twister, the same sequence on every platform
and version) draws 1,000 customers, and the label follows the columns with noise, so a model has
something to learn. training.bundled writes it like the scikit-learn sets (``BUNDLED['churn']``),
so ``make training-data`` restores it from its ``.dvc`` file byte for byte.

Contract: :func:`csv_bytes` returns the same bytes on every machine (every number written as
Python's ``repr`` of its value, ``\\n`` line ends, no quoting needed). Columns:

- ``customer_id``: a row number (not a feature: ``data.exclude``);
- ``plan``: ``basic``, ``plus`` or ``pro`` (listed categories; empty in about 1 row in 25);
- ``region``: ``north``, ``south``, ``east``, ``west`` (learned categories; ``NA`` in about 1 row
  in 20);
- ``contract``: ``monthly`` or ``yearly`` (listed, never missing);
- ``tenure_months``: a whole number 1-72 (empty in about 1 row in 15);
- ``monthly_charges``: a float, two decimals (empty in about 1 row in 30);
- ``support_calls``: a whole number 0-9 (never missing);
- ``churned``: ``yes`` or ``no``, the label.
"""

from __future__ import annotations

import random

#: The seed of the one generator every cell is drawn from.
SEED = 20231
ROWS = 1000
TARGET = "churned"
PLANS = ("basic", "plus", "pro")
REGIONS = ("north", "south", "east", "west")
CONTRACTS = ("monthly", "yearly")
HEADER = (
    "customer_id",
    "plan",
    "region",
    "contract",
    "tenure_months",
    "monthly_charges",
    "support_calls",
    TARGET,
)


def rows(count: int = ROWS, seed: int = SEED) -> list[list[str]]:
    """The table's cells, header first: ``count`` customers drawn from ``seed``."""
    rng = random.Random(seed)  # noqa: S311  (generated example data, not a secret)
    table = [list(HEADER)]
    for index in range(count):
        plan = rng.choices(PLANS, weights=(5, 3, 2))[0]
        region = REGIONS[rng.randrange(len(REGIONS))]
        contract = rng.choices(CONTRACTS, weights=(3, 2))[0]
        tenure = rng.randint(1, 72)
        base = {"basic": 30.0, "plus": 55.0, "pro": 85.0}[plan]
        charges = round(base + rng.gauss(0, 8), 2)
        calls = min(9, int(rng.expovariate(0.6)))
        z = (
            {"basic": 0.4, "plus": 0.0, "pro": -0.6}[plan]
            + (1.2 if contract == "monthly" else -1.0)
            + (0.5 if region == "south" else 0.0)
            - tenure / 24
            + (charges - 50) / 40
            + calls * 0.35
        )
        churned = "yes" if z + rng.gauss(0, 0.8) > 0 else "no"
        cells = [
            str(index + 1),
            plan,
            region,
            contract,
            str(tenure),
            repr(charges),
            str(calls),
            churned,
        ]
        if rng.random() < 0.04:
            cells[1] = ""
        if rng.random() < 0.05:
            cells[2] = "NA"
        if rng.random() < 0.066:
            cells[4] = ""
        if rng.random() < 0.033:
            cells[5] = ""
        table.append(cells)
    return table


def csv_bytes(count: int = ROWS, seed: int = SEED) -> bytes:
    """The table as CSV bytes (header line, ``\\n`` line ends)."""
    lines = []
    for cells in rows(count, seed):
        for cell in cells:  # nothing here needs CSV quoting; say so if that ever changes
            if any(c in cell for c in ',"\n') or (cell.startswith(" ") or cell.endswith(" ")):
                raise ValueError(f"churn: cell {cell!r} would need CSV quoting")
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode("ascii")
