"""The SMS Spam Collection: find it, parse it, de-duplicate it, split it.

    data = load_messages()                     # DataFrame[text, label] + where it came from
    splits = split_messages(data.frame, 0.1, 0.2, seed=42)

Labels are 0 = ham, 1 = spam (spam is the positive class everywhere).
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from .hub import hub_reachable

log = logging.getLogger(__name__)

LABELS = ("ham", "spam")
HUB_DATASET = "ucirvine/sms_spam"
DEFAULT_DATA_DIR = Path("data")
UCI_FILENAME = "SMSSpamCollection"
MIN_PER_CLASS = 10  # below this a stratified three-way split leaves a split without one class
MAX_FILE_BYTES = 50 * 1024 * 1024  # the UCI file is 0.5 MB; anything far larger is not an SMS dataset

_LABEL_VALUES = {"ham": 0, "0": 0, "spam": 1, "1": 1}
_TEXT_HINTS = ("text", "message", "sms", "v2", "body", "content")
_LABEL_HINTS = ("label", "v1", "class", "category", "target", "type")


class DataError(ValueError):
    """A dataset that cannot be used, with a message meant for the user."""


@dataclass
class Messages:
    frame: pd.DataFrame  # columns: text (str), label (0 ham / 1 spam), de-duplicated
    source: str  # path or hub id it was read from
    summary: dict = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return self.summary["fingerprint"]


# ---------------------------------------------------------------------------- finding the data

def find_data_source(explicit: str | os.PathLike | None = None, data_dir: Path = DEFAULT_DATA_DIR) -> str:
    """Return a local path to the dataset, looking in order: explicit path, $SPAM_DATA, data/, the hub."""
    looked = []
    if explicit:
        return str(_existing_file(explicit))
    env = os.environ.get("SPAM_DATA")
    if env:  # set but wrong is a mistake to report, not a reason to quietly train on something else
        return str(_existing_file(env, "SPAM_DATA="))
    looked.append("$SPAM_DATA (not set)")
    local = Path(data_dir) / UCI_FILENAME
    if local.is_file():
        return str(local)
    looked.append(f"{local} (no such file)")
    if hub_reachable():
        return str(download_from_hub(local))
    looked.append(f"the Hugging Face hub dataset {HUB_DATASET} (offline)")
    raise DataError(
        "no SMS Spam Collection found. Looked at: " + "; ".join(looked) + ". Fix: pass --data PATH (or upload "
        "a file in the app), set SPAM_DATA=PATH, or put the UCI file at " + str(local) + ".")


def _existing_file(given: str | os.PathLike, prefix: str = "") -> Path:
    path = Path(given).expanduser()
    if path.is_dir():
        raise DataError(f"{prefix}{path} is a folder: expected the dataset file itself")
    if path.exists() and not path.is_file():  # /dev/null, a pipe: reading one would hang or find nothing
        raise DataError(f"{prefix}{path} is not a regular file: expected the dataset file itself")
    if not path.is_file():
        raise DataError(f"data file not found: {prefix}{path}")
    return path


def download_from_hub(target: Path) -> Path:
    """Fetch ucirvine/sms_spam with `datasets` and store it as a UCI-format file under data/."""
    import datasets  # heavy import, only needed online

    log.info("downloading %s from the Hugging Face hub", HUB_DATASET)
    dataset = datasets.load_dataset(HUB_DATASET, split="train", cache_dir=str(target.parent / "hf"))
    lines = [f"{LABELS[label]}\t{' '.join(text.split())}" for text, label in zip(dataset["sms"], dataset["label"])]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


# ---------------------------------------------------------------------------- parsing

def source_bytes(source: str | os.PathLike | bytes, name: str = "upload") -> tuple[bytes, str]:
    """An upload's bytes, or a file's once checked to exist and not be too large, with the name errors give."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), name
    path = _existing_file(source)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path}: file is {size / 1e6:.0f} MB, expected at most {MAX_FILE_BYTES / 1e6:.0f} MB")
    return path.read_bytes(), str(path)


def read_messages(source: str | os.PathLike | bytes, name: str = "upload") -> tuple[pd.DataFrame, dict]:
    """Parse a UCI file or a CSV/TSV with a header into DataFrame[text, label] and parse counts."""
    raw, name = source_bytes(source, name)
    text, encoding = _decode(raw, name)

    lines = [line for line in split_lines(text) if line.strip()]
    unparseable = 0
    if _looks_uci(lines):
        header = not _uci_row(lines[0]) and lines[0].split("\t", 1)[0].strip().lower() in _LABEL_HINTS
        rows = [line.split("\t", 1) for line in lines[header:]]
        frame = pd.DataFrame({"label": [r[0] for r in rows], "text": [r[1] if len(r) > 1 else "" for r in rows]})
        fmt = "uci"
    else:
        frame, unparseable = _read_table(text, name)
        fmt = "table"

    rows_read = len(frame) + unparseable
    labels = frame["label"].astype(str).str.strip().str.lower().map(_LABEL_VALUES)
    texts = frame["text"].fillna("").astype(str)
    empty = texts.str.strip() == ""
    bad_label = labels.isna()
    keep = ~empty & ~bad_label
    parsed = pd.DataFrame({"text": texts[keep].tolist(), "label": labels[keep].astype(int).tolist()})
    counts = {"rows_read": rows_read, "dropped_empty_text": int((empty & ~bad_label).sum()),
              "dropped_unknown_label": int(bad_label.sum()), "dropped_unparseable": unparseable,
              "encoding": encoding, "format": fmt}
    if parsed.empty:
        raise DataError(f"{name}: no usable rows: expected labels ham/spam or 0/1 and non-empty messages, "
                        f"read {rows_read} rows")
    return parsed, counts


def _decode(raw: bytes, name: str) -> tuple[str, str]:
    """The file's text and encoding (UTF-16 with its byte-order mark, as Excel's "Unicode Text" saves; else UTF-8,
    else latin-1); an empty or binary file is a DataError."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError:
            raise DataError(f"{name}: starts as UTF-16 text but does not decode as it; save it as UTF-8") from None
        if not text.strip():
            raise DataError(f"{name}: the file is empty")
        return text, "utf-16"
    if b"\x00" in raw[:8192]:
        raise DataError(f"{name}: this looks like a binary file, expected text (label<TAB>message or a CSV)")
    try:
        text, encoding = raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = raw.decode("latin-1"), "latin-1"
    if not text.strip():  # after decoding: a lone byte-order mark or non-breaking spaces are empty too
        raise DataError(f"{name}: the file is empty")
    return text, encoding


def read_unlabelled(raw: bytes, name: str = "upload") -> tuple[list[str], int]:
    """Messages to score from a file without labels, and the count of rows left out (see _split_table): a
    .csv/.tsv file's text column (by name, else the column with the longest values); any other file holds one
    message per line (messages have commas in them)."""
    text, _ = _decode(raw, name)
    lines = [line for line in split_lines(text) if line.strip()]
    if not name.lower().endswith((".csv", ".tsv")):
        return lines, 0
    # the header line names the separator (a sniffer guesses letters from single-column files)
    sep = next((s for s in ("\t", ",", ";") if s in lines[0]), None)
    if sep is None:  # one column: still CSV, so quotes (and messages quoted across lines) are undone
        rows = [row[0] for row in csv.reader(io.StringIO(text), delimiter="\x1f") if row and row[0].strip()]
        return (rows[1:] if rows and rows[0].strip().lower() in _TEXT_HINTS else rows), 0
    table, left_out = _split_table(text, sep, name)
    column = _text_column(table, list(table.columns))
    return [t for t in table[column].tolist() if isinstance(t, str) and t.strip()], left_out


def _text_column(table: pd.DataFrame, candidates: list[str]) -> str:
    """The message column: one named like it, else the one with the longest values."""
    named = next((c for c in candidates if str(c).strip().lower() in _TEXT_HINTS), None)
    return named if named is not None else max(candidates, key=lambda c: table[c].astype(str).str.len().mean())


def split_lines(text: str) -> list[str]:
    """Lines split at line feeds and carriage returns only: str.splitlines also splits at NEL (U+0085, the byte
    0x85 of a Windows "…" read as latin-1), U+2028 and form feeds, which cut a message in two."""
    return re.split(r"\r\n|\r|\n", text)


def _uci_row(line: str) -> bool:
    label, tab, _ = line.partition("\t")
    return bool(tab) and label.strip().lower() in _LABEL_VALUES


_CSV_QUOTED = re.compile(r'"(?:[^"]|"")*"')


def _looks_uci(lines: list[str]) -> bool:
    """label<TAB>message lines, as the UCI file has; also under a header line, or after a bad first row.

    Messages are taken literally (the UCI file does not quote them), unless every message that starts with a
    quote is a complete CSV-quoted field: then the file was written by a CSV writer and goes to the table reader.
    """
    if _uci_row(lines[0]):
        return True
    header = [field.strip().lower() for field in lines[0].split("\t")]
    if len(header) > 2 and any(field in _LABEL_HINTS + _TEXT_HINTS for field in header):
        return False  # a header naming three or more columns: a table, read by its columns, not label<TAB>rest
    sample = lines[1:201]
    if not sample or sum(map(_uci_row, sample)) < 0.9 * len(sample):
        return False
    quoted = [line.partition("\t")[2].strip() for line in sample if line.partition("\t")[2].lstrip().startswith('"')]
    return not quoted or not all(_CSV_QUOTED.fullmatch(q) for q in quoted)


def _split_table(text: str, delimiter: str, name: str, message_column: int | None = None) -> tuple[pd.DataFrame, int]:
    """A delimited text with a header line as a table of strings, and the count of rows dropped because they
    have more fields than the header: an unquoted separator inside a message cannot be split honestly, so such
    a row is dropped and counted, never cut at the separator. The exception is a table of two columns, a label
    and a message, with message_column the message's index: a label holds no separator, so every extra field is
    the message's, joined back with its separator (a quoted stretch inside it loses its quotes, as the CSV
    reader took them). A short row is padded, as pandas does."""
    try:
        records = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if any(f.strip() for f in row)]
    except csv.Error as exc:
        raise DataError(f"{name}: could not parse as CSV/TSV ({exc})") from None
    header, width = [], len(records[0]) if records else 0
    for i, column in enumerate(records[0] if records else []):  # unique names, as pandas would make them
        header.append(column if column not in header else f"{column}.{i}")
    if width == 2 and message_column in (0, 1):
        records[1:] = [row if len(row) <= 2 else [delimiter.join(row[:-1]), row[-1]] if message_column == 0
                       else [row[0], delimiter.join(row[1:])] for row in records[1:]]
    rows = [row + [""] * (width - len(row)) for row in records[1:] if len(row) <= width]
    return pd.DataFrame(rows, columns=header, dtype=object), max(0, len(records) - 1 - len(rows))


def _read_table(text: str, name: str) -> tuple[pd.DataFrame, int]:
    """A CSV/TSV with a header: find the label column and the text column. Also returns the count of lines
    the CSV reader could not split into fields (skipped, but counted)."""
    # the header line names the separator: the sniffer, reading the messages too, took the commas in a
    # semicolon-separated file's messages for its separator
    header = next(line for line in split_lines(text) if line.strip())
    delimiter = max("\t,;|", key=header.count) if any(d in header for d in "\t,;|") else ","
    table, bad_lines = _split_table(text, delimiter, name)
    if table.shape[1] < 2:
        raise DataError(f"{name}: expected a label column and a text column, found {table.shape[1]} column(s): "
                        f"{', '.join(map(str, table.columns))}")
    columns = [str(c) for c in table.columns]
    table.columns = columns

    def label_share(col):
        values = table[col].astype(str).str.strip().str.lower()
        return values.isin(_LABEL_VALUES.keys()).mean()

    label_col = next((c for c in columns if c.strip().lower() in _LABEL_HINTS and label_share(c) > 0.5), None)
    if label_col is None:
        best = max(columns, key=label_share)
        if label_share(best) <= 0.5:
            named = next((c for c in columns if c.strip().lower() in _LABEL_HINTS), None)
            if named is not None:  # the column is there, its values are not ones we know: say which they are
                found = table[named].astype(str).str.strip().value_counts().index[:4].tolist()
                raise DataError(f"{name}: the label column {named!r} holds {', '.join(map(repr, found))}"
                                f"{'…' if table[named].nunique() > 4 else ''}; expected ham/spam or 0/1 labels")
            raise DataError(f"{name}: no label column found: expected a column of ham/spam or 0/1 values, "
                            f"columns are {', '.join(columns)}")
        label_col = best
    others = [c for c in columns if c != label_col]
    text_col = _text_column(table, others)
    if bad_lines and len(columns) == 2:  # a label and a message: the rows with commas in the message can be kept
        table, bad_lines = _split_table(text, delimiter, name, message_column=columns.index(text_col))
        table.columns = columns
    return pd.DataFrame({"label": table[label_col].tolist(), "text": table[text_col].tolist()}), bad_lines


# ---------------------------------------------------------------------------- de-duplication and split

def normalise(text: str) -> str:
    return " ".join(text.split())


def deduplicate(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Drop exact repeats after whitespace normalisation, keeping the first; count label conflicts."""
    norm = frame["text"].map(normalise)
    conflicts = int((frame.assign(norm=norm).groupby("norm")["label"].nunique() > 1).sum())
    keep = ~norm.duplicated()
    out = pd.DataFrame({"text": norm[keep].tolist(), "label": frame["label"][keep].tolist()})
    return out, {"duplicates_removed": int((~keep).sum()), "label_conflicts": conflicts}


def check_classes(frame: pd.DataFrame, name: str) -> None:
    counts = frame["label"].value_counts()
    if len(counts) < 2:
        only = LABELS[int(counts.index[0])]
        raise DataError(f"{name}: only one class ({only}) after cleaning: expected both ham and spam")
    for label, n in counts.items():
        if n < MIN_PER_CLASS:
            raise DataError(f"{name}: only {n} {LABELS[int(label)]} messages after de-duplication, expected "
                            f"at least {MIN_PER_CLASS} per class")


def fingerprint(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    for text, label in zip(frame["text"].tolist(), frame["label"].tolist()):
        digest.update(f"{label}\t{text}\n".encode("utf-8"))
    return digest.hexdigest()[:16]


def load_messages(explicit: str | os.PathLike | None = None, data_dir: Path = DEFAULT_DATA_DIR) -> Messages:
    """Find, parse, de-duplicate and check the dataset."""
    source = find_data_source(explicit, data_dir)
    raw, counts = read_messages(source)
    frame, dedup = deduplicate(raw)
    check_classes(frame, source)
    summary = {**counts, **dedup, "rows": len(frame), "ham": int((frame.label == 0).sum()),
               "spam": int((frame.label == 1).sum()), "fingerprint": fingerprint(frame)}
    return Messages(frame=frame, source=source, summary=summary)


def dropped_rows(summary: dict) -> list[str]:
    """What parsing dropped, in words ("2 with empty text"); empty when nothing was."""
    return [f"{summary[key]:,} {why}" for key, why in (("dropped_empty_text", "with empty text"),
                                                       ("dropped_unknown_label", "with an unknown label"),
                                                       ("dropped_unparseable", "that did not parse"))
            if summary.get(key)]


def describe(summary: dict) -> str:
    """A data summary as one line for people: what was read, dropped, removed and kept, and the split."""
    dropped = dropped_rows(summary)
    parts = [f"{summary['rows_read']:,} rows read"] + (["dropped " + ", ".join(dropped)] if dropped else [])
    parts += [f"{summary['duplicates_removed']:,} duplicates removed",
              f"{summary['rows']:,} messages, {summary['spam']:,} spam ({summary['spam'] / summary['rows']:.1%})"]
    if "splits" in summary:
        parts.append("split " + " / ".join(f"{name} {part['rows']:,} ({part['spam']:,} spam)"
                                           for name, part in summary["splits"].items()))
    return "; ".join(parts)


def split_messages(frame: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int,
                   train_messages: int | None = None) -> dict[str, pd.DataFrame]:
    """Stratified train/validation/test split, deterministic for a seed. train_messages: keep only that many of the
    training part (see sample_training), the other two parts as they are, so runs on fewer labels are tested on the
    same messages. A new run checks the parts with check_both_classes; a run's split rebuilt later is not refused."""
    try:
        train_val, test = train_test_split(frame, test_size=test_fraction, stratify=frame["label"], random_state=seed)
        train, val = train_test_split(train_val, test_size=val_fraction / (1 - test_fraction),
                                      stratify=train_val["label"], random_state=seed)
    except ValueError:  # scikit-learn's words for a part smaller than the two classes
        sizes = split_sizes(len(frame), val_fraction, test_fraction)
        raise _lacking_a_class(min(sizes, key=sizes.get), frame, val_fraction, test_fraction) from None
    if train_messages is not None and train_messages < len(train):
        train = sample_training(train, train_messages, seed)
    return {name: part.reset_index(drop=True) for name, part in
            (("train", train), ("validation", val), ("test", test))}


def check_both_classes(splits: dict[str, pd.DataFrame], frame: pd.DataFrame, val_fraction: float,
                       test_fraction: float) -> None:
    """A DataError where a part of a new run's split lacks spam or ham: its metrics would be undefined."""
    if missing := next((name for name, part in splits.items() if part["label"].nunique() < 2), None):
        raise _lacking_a_class(missing, frame, val_fraction, test_fraction)


def _lacking_a_class(part: str, frame: pd.DataFrame, val_fraction: float, test_fraction: float) -> DataError:
    size = split_sizes(len(frame), val_fraction, test_fraction)[part]
    return DataError(f"the {part} part ({size:,} of {len(frame):,} messages, {int(frame.label.sum()):,} of them spam, "
                     f"at validation {val_fraction:g} and test {test_fraction:g}) would lack a class, so its scores "
                     "would be undefined: use larger fractions or more data")


def sample_training(train: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """n of the training messages, with the training part's share of spam (rounded, at least one of each class),
    in their order. Nested: for one seed each class is drawn in one shuffled order and the first ones are kept,
    so the 100 of a smaller run are among the 300 of a larger one and a learning curve adds data, not noise."""
    order = np.random.default_rng(seed).permutation(len(train))
    is_spam = train["label"].to_numpy()[order] == 1
    spam = min(max(1, round(n * is_spam.mean())), n - 1, int(is_spam.sum()))
    keep = np.concatenate([order[is_spam][:spam], order[~is_spam][:n - spam]])
    return train.iloc[np.sort(keep)]


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """How many messages split_messages puts in each part, without splitting (train_test_split rounds the
    held-out part up)."""
    test = math.ceil(test_fraction * n)
    val = math.ceil(val_fraction / (1 - test_fraction) * (n - test))
    return {"train": n - test - val, "validation": val, "test": test}


def split_summary(splits: dict[str, pd.DataFrame]) -> dict:
    return {name: {"rows": len(part), "ham": int((part.label == 0).sum()), "spam": int((part.label == 1).sum())}
            for name, part in splits.items()}
