"""kl_helpers.data.reviews at its edges (issue 30): the bundled splits' names, sizes, columns,
labels and drugs against the stdlib ``csv`` module's own parse of the zip; the condition field's
scraper artefact ("N</span> users found this comment helpful."); str, Path and folder paths;
CRLF line ends, a byte-order mark, a blank-padded label, a tab and a newline inside a quoted
review accepted; a capitalised label, a short row, a review of entities only, Latin-1 bytes and a
header without rows refused naming file and line; review_data against load_reviews, for the
bundled zip and a small one. The loaders take no seed: two loads are equal."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest

from kl_helpers.data import reviews
from kl_helpers.data.article import LABEL_NAMES

HEADER = "\tdrugName\tcondition\treview\trating\tdate\tusefulCount\n"
GOOD = '1\tX\tPain\t"""good"""\tpositive\tMay 1, 2011\t3\n'
IDS = {"positive": 0, "negative": 1, "neutral": 2}  # the article's order, written out


@pytest.fixture(scope="module")
def splits():
    return reviews.load_reviews()


def raw_rows(member: str) -> list[dict[str, str]]:
    with zipfile.ZipFile(reviews.reviews_zip()) as archive:
        text = archive.read(member).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def write_zip(path, train: str | bytes, test: str | bytes = HEADER + GOOD):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("drugsComTrain.tsv", train)
        z.writestr("drugsComTest.tsv", test)
    return path


def test_bundled_splits_against_the_csv_module(splits):
    assert list(splits) == ["train", "test"]
    for split, member in (("train", "drugsComTrain.tsv"), ("test", "drugsComTest.tsv")):
        rows = raw_rows(member)
        assert len(rows) == {"train": 600, "test": 379}[split] == splits[split].num_rows
        assert splits[split].column_names == ["text", "label", "drug", "condition"]
        assert splits[split]["label"] == [IDS[r["rating"]] for r in rows]
        assert splits[split]["drug"] == [r["drugName"] for r in rows]
    assert [LABEL_NAMES[i] for i in range(3)] == list(IDS)
    again = reviews.load_reviews(str(reviews.reviews_zip()))  # a str path; no seed to vary
    assert again["test"]["text"] == splits["test"]["text"]


def test_scraped_counts_are_no_condition(splits):
    # 7 rows' condition field held "N</span> users found this comment helpful." (the scraper's
    # count of helpful votes), which reached the "condition" column as if it were one.
    raw = [r["condition"] for m in reviews.MEMBERS.values() for r in raw_rows(m)]
    scraped = [c for c in raw if c.endswith("users found this comment helpful.")]
    conditions = list(splits["train"]["condition"]) + list(splits["test"]["condition"])
    assert len(scraped) == 7 and conditions.count("") == 7 + raw.count("") == 14
    assert not any("</span>" in c for c in conditions)
    assert conditions == ["" if c in scraped else c for c in raw]


def test_a_folder_is_named_as_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="is a folder"):
        reviews.load_reviews(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        reviews.load_reviews(str(tmp_path / "none.zip"))


@pytest.mark.parametrize(
    "train",
    [
        (HEADER + GOOD).replace("\n", "\r\n"),
        "\ufeff" + HEADER + GOOD,
        HEADER + GOOD.replace("positive", " positive "),
        HEADER + '1\tX\tPain\t"""go\tod"""\tpositive\tMay 1, 2011\t3\n',
        HEADER + '1\tX\tPain\t"""go\nod"""\tpositive\tMay 1, 2011\t3\n',
    ],
    ids=["crlf", "bom", "blank-padded label", "quoted tab", "quoted newline"],
)
def test_file_variants_that_read_the_same(tmp_path, train):
    out = reviews.load_reviews(write_zip(tmp_path / "r.zip", train))["train"]
    want = "go od" if "go\t" in train or "go\n" in train else "good"
    assert out[0] == {"text": want, "label": 0, "drug": "X", "condition": "Pain"}


@pytest.mark.parametrize(
    ("train", "match"),
    [
        (HEADER + GOOD.replace("positive", "Positive"), "TRAIN, line 2: label 'Positive'"),
        (HEADER + "1\tX\tPain\n", "TRAIN, line 2: label ''"),
        (HEADER + GOOD.replace("good", "&nbsp; &#32;"), "TRAIN, line 2: empty review"),
        (
            (HEADER + GOOD.replace("good", "caf\xe9")).encode("latin-1"),
            "cannot read TRAIN: 'utf-8'",
        ),
        (HEADER, "TRAIN holds no reviews"),
    ],
    ids=["capitalised label", "short row", "entities only", "latin-1", "header only"],
)
def test_bad_rows_are_named(tmp_path, train, match):
    with pytest.raises(ValueError, match=match.replace("TRAIN", "drugsComTrain.tsv in .*r.zip")):
        reviews.load_reviews(write_zip(tmp_path / "r.zip", train))


def test_review_data_is_load_reviews(tmp_path, splits):
    data = reviews.review_data()
    assert data.train_texts == tuple(splits["train"]["text"])
    assert data.test_labels == tuple(splits["test"]["label"]) and data.label_names == LABEL_NAMES
    small = reviews.review_data(write_zip(tmp_path / "r.zip", HEADER + GOOD.replace("positive",
                                          "neutral")))  # fmt: skip
    assert (small.train_texts, small.train_labels, small.test_labels) == (("good",), (2,), (0,))
