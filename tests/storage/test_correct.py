"""Per-image test hits as a trial user attr (storage.schema.pack_correct): exact round trips at every length
(packbits pads the last byte), compact for 10,000 images, and strings that are not ours refused."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from storage import schema


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 13, 1001, 10_000])
def test_round_trip(n):
    hits = np.random.default_rng(n).random(n) < 0.6
    text = schema.pack_correct(hits)
    back = schema.unpack_correct(text)
    assert back.dtype == np.bool_ and back.shape == (n,) and np.array_equal(back, hits)
    assert text.isascii() and text.startswith(f"{n}:")


def test_ten_thousand_images_take_under_two_kilobytes():
    text = schema.pack_correct(np.ones(10_000, bool))
    assert 1_600 < len(text) < 1_700  # 1,250 bytes, base64: 1,668 characters, plus the count


def test_a_tensor_or_list_packs_too():
    torch = pytest.importorskip("torch")
    hits = torch.tensor([True, False, True])
    assert schema.pack_correct(hits) == schema.pack_correct([True, False, True]) == schema.pack_correct(hits.numpy())


def test_round_trip_through_a_store():
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    hits = np.arange(37) % 3 == 0
    study.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={schema.TEST_CORRECT: schema.pack_correct(hits)}))
    assert np.array_equal(schema.unpack_correct(study.trials[0].user_attrs[schema.TEST_CORRECT]), hits)


@pytest.mark.parametrize("bad", [np.ones((2, 2), bool), np.array([0, 1]), np.array([0.5])])
def test_pack_refuses_non_bool_vectors(bad):
    with pytest.raises(ValueError, match="1-d bool"):
        schema.pack_correct(bad)


@pytest.mark.parametrize("text", ["", "12", "x:AAAA", "-1:", "9:AA==", "8:!!!!", "25:AAAA"])
def test_unpack_refuses_what_pack_did_not_write(text):
    with pytest.raises(ValueError, match="not a packed array"):
        schema.unpack_correct(text)
