"""CSV files as LLaMA-Factory reads them: pandas chunks of 10,000 rows, each cast to the first chunk's types.

``datasets``' CSV builder (``datasets/packaged_modules/csv/csv.py``, ``Csv._generate_tables``; the same in
datasets 3.2.0, 3.6.0 and 4.0.0, i.e. every LLaMA-Factory 0.9.2-0.9.5 environment, all with pandas 2.3)
calls ``pd.read_csv(file, iterator=True, chunksize=10_000)`` with pandas' defaults and turns each chunk
into an Arrow table on its own (``pa.Table.from_pandas``); the ArrowWriter takes the first chunk's
schema and casts every later chunk to it. Per chunk, pandas infers each column (experiments with the real
loader in each environment, the same every time):
- a repeated header name gets a suffix (the second ``output`` is ``output.1``);
- blank (or whitespace-only) lines are skipped; a shorter row is padded with nulls; a longer one stops the
  load ("Error tokenizing data"), except: a first data row with k more fields than the header makes its first
  k fields every row's index (read_csv's default ``index_col=None``; Arrow keeps it as ``__index_level_0__``...)
  and the header names the fields after them, so every column is read k fields to the right; and the first
  row of a later chunk loses its extra fields without a word;
- ``NA_VALUES`` (``""``, ``NA``, ``None``, ``null``, ``nan``, ``N/A``...) are null, in any column;
- only integers: int64 (a null among them makes it float64); integers and decimals: float64;
  only True/False (TRUE, true, ...): bool; nothing but nulls: float64; anything else: the text.
Casting a later chunk to the first one's types (``pyarrow``'s safe cast):
- to int64: a fraction fails ("Float value 1.5 was truncated"), and so does text unless it is
  digits (``-?[0-9]+`` or ``0x..``); to float64 (which an all-empty first chunk is): text fails unless
  it is a number; to bool: text fails unless true/false/1/0; numbers and booleans convert;
- to text: numbers and booleans turn into Arrow's spelling of them, not the cell's: ``007`` -> ``7``,
  ``1.50`` -> ``1.5``, ``True`` -> ``true``, `` 5`` -> ``5`` (silently misread).
``tests/test_datasets_csv.py`` checks this against the real loader.
"""

from __future__ import annotations

import re
from typing import Any

from minicpm_tui.core.datasets.blocks import _BOOL, _FLOAT, _INT

# datasets' CsvConfig.chunksize (rows). A module constant so tests can shrink it.
CSV_CHUNK = 10_000

# pandas' default na_values (pandas._libs.parsers.STR_NA_VALUES, pandas 2.x): these cells are null.
NA_VALUES = frozenset(("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                       "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"))
_PD_BOOL = {"True": True, "TRUE": True, "true": True, "False": False, "FALSE": False, "false": False}
# What pandas' C parser takes for a number (surrounding spaces allowed, no "_" or hex).
_PD_INT = re.compile(r"\s*[+-]?[0-9]+\s*")
_PD_FLOAT = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*([eE][+-]?[0-9]+)?|\.[0-9]+([eE][+-]?[0-9]+)?|inf|infinity)\s*",
                       re.I)
_HEX = re.compile(r"0[xX][0-9a-fA-F]+")
_INT64 = 1 << 63

# Column types, as pandas/Arrow have them: "int" (int64), "float" (float64), "bool", "string", and
# "empty" (no value in the chunk: float64 of nulls).
_ARROW = {"int": "int64", "float": "double", "bool": "bool", "string": "string", "empty": "double (no values)"}


def dedup_header(header: list[str]) -> list[str]:
    """The column names pandas' C parser gives a header that repeats one: a, a.1, a.2, ..., skipping a name
    the header already has (pandas/_libs/parsers.pyx, ``TextReader._get_header``)."""
    out = list(header)
    counts: dict[str, int] = {}
    for i, col in enumerate(out):
        old, n = col, counts.get(col, 0)
        if n > 0:
            while n > 0:
                counts[old] = n + 1
                col = f"{old}.{n}"
                n = n + 1 if col in out else counts.get(col, 0)
            out[i] = col
        counts[col] = n + 1
    return out


def column_type(cells: list[str]) -> str:
    """What pandas makes of one column of a chunk (its cells as the csv module reads them)."""
    ints = floats = bools = nulls = 0
    for c in cells:
        if c in NA_VALUES:
            nulls += 1
        elif c in _PD_BOOL:
            bools += 1
        elif _PD_INT.fullmatch(c):
            if not -_INT64 <= int(c) < _INT64:
                return "string"  # past int64: pandas keeps the text (or uint64, which casts as badly)
            ints += 1
        elif _PD_FLOAT.fullmatch(c):
            floats += 1
        else:
            return "string"
    if bools:
        return "bool" if not (ints or floats) else "string"
    if floats or ints and nulls:
        return "float"
    return "int" if ints else "empty"


def cell_value(cell: str, t: str) -> Any:
    """The value of a cell in a chunk column of type ``t``."""
    if cell in NA_VALUES:
        return None
    if t == "string":
        return cell
    if t == "int":
        return int(cell)
    if t == "float":
        return float(cell)
    return _PD_BOOL[cell]  # "bool"


def arrow_text(v: Any) -> str:
    """How Arrow's cast to string spells a number or boolean (shortest round trip, no ".0")."""
    if type(v) is bool:
        return "true" if v else "false"
    if type(v) is int:
        return str(v)
    if v != v or v in (float("inf"), float("-inf")):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v)) if v or str(v)[0] != "-" else "-0"
    r = repr(v)
    if "e" in r:
        mant, _, exp = r.partition("e")
        return f"{mant.removesuffix('.0')}e{exp[0]}{exp[1:].lstrip('0')}"
    return r


def cast(v: Any, src: str, dst: str) -> tuple[Any, bool]:
    """(the value of a later chunk's non-null ``v`` of type ``src`` once cast to the first chunk's ``dst``,
    whether the cast works)."""
    if dst == "string":
        return arrow_text(v), True
    if src == "string":
        if dst == "int":
            if _INT.fullmatch(v):
                return int(v), -_INT64 <= int(v) < _INT64
            return (int(v, 16), True) if _HEX.fullmatch(v) else (None, False)
        if dst == "bool":
            return (v.lower() in ("true", "1"), True) if v.lower() in _BOOL else (None, False)
        return (float(v), True) if _FLOAT.fullmatch(v) else (None, False)  # "float" / "empty"
    if dst == "int":  # from float or bool
        return (int(v), True) if type(v) is bool or v.is_integer() else (None, False)
    if dst == "bool":
        return v != 0, True
    return float(v), True  # to "float" / "empty"


def describe(t: str) -> str:
    return _ARROW[t]


def cast_problem(cell: str, column: str, src: str, dst: str) -> tuple[str, str]:
    """(message, fix) for a later chunk's cell that does not cast to the first chunk's column type."""
    what = {"string": f"the text {cell[:40]!r}", "float": f"the fraction {cell.strip()}",
            "int": f"the number {cell.strip()}", "bool": f"the boolean {cell.strip()}"}[src]
    first = "has no value in any row of" if dst == "empty" else f"is {'an' if dst == 'int' else 'a'} {dst} in"
    message = (f"is {what} here, but the column {first} the first chunk that LLaMA-Factory's CSV loader (datasets, "
               f"pandas) reads (rows 0-{CSV_CHUNK - 1}), so its type is {_ARROW[dst]}: the loader casts every later "
               "chunk to that and fails on this, which stops the whole load")
    if dst == "empty":
        fix = "give the column a value in one of the first rows (or move a row with one to the top), or drop it"
    elif src == "string":
        fix = f"move a row whose {column!r} is not a number to the top (one makes the whole chunk text), or " \
              "convert the file to JSON Lines (minicpm-tui convert keeps every cell text)"
    else:
        fix = "write the numbers the same way in every row (with a fraction anywhere: all with a decimal point, " \
              "e.g. 1.0)"
    return message, fix
