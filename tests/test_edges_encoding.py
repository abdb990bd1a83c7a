"""kl_helpers.encoding at its edges (issue 30): TextData with no training text, texts and labels
of different lengths, labels -1, -100, len(label_names), 0.5, True and NumPy ints, lists where
tuples are usual, replay texts as one string (directly and through with_replay) or a generator;
fingerprint unchanged by empty replay texts and lists vs tuples, changed by every field;
from_split on plain dicts with other column names and string labels; encode against the
tokenizer run on each text alone (max_length 1..64, no texts, labels None, a tokenizer without a
pad id, labels of another length); pad_batch against torch's pad_sequence (pad ids 0, -100 and
past the vocabulary, int32 rows, pad_to equal, longer, shorter, no rows); batches against
torch.randperm of the same generator, batch sizes 1, n and past n, bad sizes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

from kl_helpers.encoding import Encoded, TextData, batches, encode, pad_batch

NAMES = ("neg", "pos")


def text_data(**changes):
    fields = dict(
        train_texts=("good", "bad"),
        train_labels=(1, 0),
        test_texts=("fine",),
        test_labels=(1,),
        label_names=NAMES,
    )
    fields.update(changes)
    return TextData(**fields)


def test_text_data_refuses_what_it_cannot_hold():
    with pytest.raises(ValueError, match="at least one training text"):
        text_data(train_texts=(), train_labels=())
    with pytest.raises(ValueError, match="train: 2 texts but 1 labels"):
        text_data(train_labels=(1,))
    with pytest.raises(ValueError, match="test: 1 texts but 0 labels"):
        text_data(test_labels=())
    for bad in (-1, -100, 2):
        with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
            text_data(train_labels=(1, bad))
    with pytest.raises(ValueError, match="not one string"):
        text_data(replay_texts="one text")


@pytest.mark.parametrize("bad", [0.5, 1.0, "1", None])
def test_text_data_refuses_labels_that_are_not_integers(bad):
    # failed before the fix: 0.5 passed the range check and encode truncated it to class 0
    with pytest.raises(ValueError, match="integers"):
        text_data(test_labels=(bad,))


def test_numpy_and_bool_labels_are_plain_ints():
    # failed before the fix: fingerprint raised TypeError (int64 is not JSON serialisable)
    numpy = text_data(train_labels=tuple(np.array([1, 0])), test_labels=(np.int32(1),))
    assert numpy.train_labels == (1, 0) and all(type(y) is int for y in numpy.train_labels)
    assert numpy.fingerprint() == text_data().fingerprint()
    assert text_data(test_labels=(True,)).test_labels == (1,)


def test_fingerprint_is_the_hash_of_its_fields():
    data = text_data()
    fields = [data.train_texts, data.train_labels, data.test_texts, data.test_labels, NAMES]
    expected = hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:12]
    assert data.fingerprint() == expected
    assert text_data(replay_texts=()).fingerprint() == expected
    assert data.with_replay([]).fingerprint() == expected
    lists = text_data(train_texts=["good", "bad"], train_labels=[1, 0], label_names=list(NAMES))
    assert lists.fingerprint() == expected
    changed = [
        text_data(train_texts=("good", "bad ")),
        text_data(train_labels=(0, 0)),
        text_data(test_texts=("Fine",)),
        text_data(test_labels=(0,)),
        text_data(label_names=("pos", "neg")),
        data.with_replay(["x"]),
    ]
    assert len({d.fingerprint() for d in changed} | {expected}) == len(changed) + 1


def test_with_replay_copies_and_refuses_one_string():
    data = text_data()
    replay = data.with_replay(t for t in ["a b", "c"])
    assert replay.replay_texts == ("a b", "c") and data.replay_texts == ()
    assert replay.train_texts == data.train_texts and replay.label_names == NAMES
    # failed before the fix: one string became its characters ("a", "b", "c")
    with pytest.raises(ValueError, match="not one string"):
        data.with_replay("abc")


def test_from_split_reads_plain_dicts_and_named_columns():
    split = {
        "train": {"sentence": ["good", "bad"], "y": ["1", np.int64(0)]},
        "test": {"sentence": ["fine"], "y": [1]},
    }
    data = TextData.from_split(split, ["neg", "pos"], text="sentence", label="y")
    assert data == text_data()
    with pytest.raises(KeyError):
        TextData.from_split(split, NAMES)  # default columns "text"/"label" are absent


@pytest.mark.parametrize("max_length", [2, 3, 5, 64])
def test_encode_matches_the_tokenizer_text_by_text(tokenizer, max_length):
    texts = ["a short one", "", "a much longer text with many words in it, and punctuation!"]
    enc = encode(tokenizer, texts, [1, 0, 1], max_length)
    assert isinstance(enc, Encoded) and len(enc) == 3
    for ids, text in zip(enc.ids, texts, strict=True):
        alone = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
        assert ids.dtype == torch.long and ids.tolist() == alone
    assert enc.labels.tolist() == [1, 0, 1] and enc.pad_id == tokenizer.pad_token_id


def test_encode_without_texts_labels_or_pad_id(tokenizer):
    empty = encode(tokenizer, [], None, 8)
    assert len(empty) == 0 and empty.labels.shape == (0,) and empty.labels.dtype == torch.long
    unlabelled = encode(tokenizer, ("x", "y z"), None, 8)
    assert unlabelled.labels.tolist() == [-1, -1]

    class NoPad:
        pad_token_id = None

        def __call__(self, texts, truncation, max_length):
            return {"input_ids": [[ord(c) for c in t][:max_length] for t in texts]}

    enc = encode(NoPad(), ["ab", "c"], (0, 1), 8)
    assert enc.pad_id == 0 and [x.tolist() for x in enc.ids] == [[97, 98], [99]]


def test_encode_refuses_labels_of_another_length(tokenizer):
    # failed before the fix: 3 texts with 2 labels gave an Encoded whose labels were misaligned
    with pytest.raises(ValueError, match="3 texts but 2 labels"):
        encode(tokenizer, ["a", "b", "c"], [0, 1], 8)


ROWS = [[101, 5, 6, 102], [101, 102], [7], [101, 8, 9, 10, 11, 102]]


@pytest.mark.parametrize("pad_id", [0, -100, 30522, 10**6])
@pytest.mark.parametrize("dtype", [torch.long, torch.int32])
def test_pad_batch_matches_pad_sequence(pad_id, dtype):
    rows = [torch.tensor(r, dtype=dtype) for r in ROWS]
    ids, mask = pad_batch(rows, pad_id)
    stock = pad_sequence([r.long() for r in rows], batch_first=True, padding_value=pad_id)
    assert ids.dtype == mask.dtype == torch.long and torch.equal(ids, stock)
    lengths = torch.tensor([len(r) for r in ROWS])
    assert torch.equal(mask, (torch.arange(6) < lengths[:, None]).long())
    longer, longer_mask = pad_batch(rows, pad_id, pad_to=9)
    assert torch.equal(longer[:, :6], stock) and (longer[:, 6:] == pad_id).all()
    assert longer_mask[:, 6:].sum() == 0 and torch.equal(longer_mask[:, :6], mask)
    assert torch.equal(pad_batch(rows, pad_id, pad_to=6)[0], stock)
    with pytest.raises(ValueError, match="shorter than the longest sequence"):
        pad_batch(rows, pad_id, pad_to=5)


def test_pad_batch_of_no_rows_and_empty_rows():
    ids, mask = pad_batch([], 0)
    assert ids.shape == mask.shape == (0, 0)
    assert pad_batch([], 3, pad_to=4)[0].shape == (0, 4)
    ids, mask = pad_batch([torch.tensor([], dtype=torch.long)] * 2, 5, pad_to=2)
    assert ids.tolist() == [[5, 5], [5, 5]] and mask.sum() == 0


@pytest.mark.parametrize("batch_size", [1, 3, 7, 8, 100])
def test_batches_match_randperm_of_the_same_generator(batch_size):
    order = torch.randperm(7, generator=torch.Generator().manual_seed(4))
    got = list(batches(7, batch_size, torch.Generator().manual_seed(4)))
    assert torch.equal(torch.cat(got), order)
    assert [len(b) for b in got[:-1]] == [batch_size] * (len(got) - 1)
    assert 1 <= len(got[-1]) <= batch_size and len(got) == -(-7 // batch_size)
    assert torch.equal(torch.cat(list(batches(7, batch_size, None))), torch.arange(7))


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batches_refuse_sizes_below_one(batch_size):
    # failed before the fix: torch's RuntimeError about split sizes
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        list(batches(7, batch_size, None))
