"""python_models data layer: the synthetic task, collate, annotation readers, feature stores."""
import json

import numpy as np
import pytest
import torch

from python_models.data import SyntheticGrounding, collate
from python_models.data.features import FeatureGrounding, FeatureStore, resample
from python_models.data.readers import (Vocabulary, read_activitynet, read_annotations, read_charades_sta,
                                        read_durations, read_tacos, seconds_to_clips, tokenize)


def test_synthetic_is_deterministic_and_well_formed():
    a, b = SyntheticGrounding(20, seed=3), SyntheticGrounding(20, seed=3)
    c = SyntheticGrounding(20, seed=4)
    assert torch.equal(a.videos, b.videos) and all(torch.equal(x, y) for x, y in zip(a.queries, b.queries))
    assert not torch.equal(a.videos, c.videos)
    # same task_seed: the splits share the concept directions (a model trained on one transfers)
    assert torch.equal(a.directions, c.directions)
    for i in range(len(a)):
        s = a[i]
        n = int(s["video_mask"].sum())
        st, en = s["moment"].tolist()
        assert 0 <= st < en <= n == float(s["duration"])
        assert s["video"][n:].abs().sum() == 0 and s["query"].min() >= 2


def test_synthetic_signal_is_planted_where_the_query_says():
    ds = SyntheticGrounding(50, seed=0, noise=0.0)
    for i in range(len(ds)):
        s = ds[i]
        named = [int(w) - 2 for w in s["query"] if 2 <= w < 2 + ds.meta["num_concepts"]]
        assert 1 <= len(named) <= 2
        st, en = (int(x) for x in s["moment"])
        expected = ds.directions[named].sum(0)
        assert torch.allclose(s["video"][st:en], expected.expand(en - st, -1), atol=1e-5)
        # outside the moment at most the (unnamed) distractor: never the named concepts' sum
        outside = torch.cat([s["video"][:st], s["video"][en:]])
        assert not torch.isclose(outside, expected, atol=1e-4).all(1).any()


def test_synthetic_patches_and_bad_arguments():
    ds = SyntheticGrounding(4, num_clips=8, patches=True, patch_size=4, patch_channels=6)
    assert ds[0]["patches"].shape == (8, 6, 4, 4) and ds.meta["has_patches"]
    with pytest.raises(ValueError, match="vocab_size"):
        SyntheticGrounding(4, vocab_size=5)
    with pytest.raises(ValueError, match="query_len"):
        SyntheticGrounding(4, query_len=(5, 3))


def test_collate_pads_queries_and_masks():
    ds = SyntheticGrounding(6, seed=1, query_len=(2, 8))
    b = collate([ds[i] for i in range(6)])
    N = max(len(q) for q in ds.queries)
    assert b["query"].shape == (6, N) and b["query_mask"].shape == (6, N)
    assert torch.equal(b["query_mask"].sum(1), torch.tensor([len(q) for q in ds.queries]))
    assert (b["query"][~b["query_mask"]] == 0).all()
    assert b["video"].shape == (6, 32, 64) and b["moment"].shape == (6, 2) and b["index"].tolist() == list(range(6))
    with pytest.raises(ValueError, match="non-empty"):
        collate([])


def test_charades_activitynet_tacos_readers(tmp_path):
    cha = tmp_path / "charades.txt"
    cha.write_text("AO8RW 0.0 6.9##a person is putting a book on a shelf.\n\nY6R7T 3.1 12.5##Person opens the door\n")
    rows = read_charades_sta(cha)
    assert [(r["vid"], r["start"], r["end"]) for r in rows] == [("AO8RW", 0.0, 6.9), ("Y6R7T", 3.1, 12.5)]
    assert rows[0]["sentence"] == "a person is putting a book on a shelf." and rows[0]["duration"] is None
    bad = tmp_path / "bad.txt"
    bad.write_text("AO8RW 0.0 6.9 a person\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        read_charades_sta(bad)

    anet = tmp_path / "anet.json"
    anet.write_text(json.dumps({"v_1": {"duration": 100.0, "timestamps": [[10, 20], [50, 30]],
                                        "sentences": ["A man sings.", "He dances."]}}))
    rows = read_activitynet(anet)
    assert [(r["start"], r["end"], r["duration"]) for r in rows] == [(10, 20, 100), (30, 50, 100)]
    tacos = tmp_path / "tacos.json"
    tacos.write_text(json.dumps({"s13-d21.avi": {"num_frames": 3000, "fps": 30.0, "timestamps": [[300, 600]],
                                                 "sentences": ["cuts a cucumber"]}}))
    (r,) = read_tacos(tacos)
    assert (r["start"], r["end"], r["duration"]) == (10.0, 20.0, 100.0)
    assert read_annotations(cha)[0]["vid"] == "AO8RW" and read_annotations(tacos, "tacos")[0]["end"] == 20.0
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"v": {"duration": 5, "timestamps": [[0, 1]], "sentences": []}}))
    with pytest.raises(ValueError, match="1 timestamps but 0 sentences"):
        read_activitynet(broken)
    csv = tmp_path / "Charades_v1_test.csv"
    csv.write_text("id,subject,length\nAO8RW,x,33.5\n")
    assert read_durations(csv) == {"AO8RW": 33.5}


def test_seconds_to_clips_and_vocabulary():
    assert seconds_to_clips(10.0, 20.0, 100.0, 32) == pytest.approx((3.2, 6.4))
    assert seconds_to_clips(-1.0, 150.0, 100.0, 32) == (0.0, 32.0)
    with pytest.raises(ValueError, match="duration"):
        seconds_to_clips(0, 1, 0, 32)
    assert tokenize("The person's  door, OPENS!") == ["the", "person's", "door", "opens"]
    v = Vocabulary.build(["open the door", "close the door"])
    assert v.words[:2] == ["<pad>", "<unk>"] and len(v) == 6
    assert v.encode("open the window") == [v.index["open"], v.index["the"], 1]


@pytest.mark.parametrize("store", ["npy", "h5"])
def test_feature_grounding_resamples_and_converts(tmp_path, store):
    rng = np.random.default_rng(0)
    feats = {"long": rng.normal(size=(80, 5)).astype(np.float32), "short": rng.normal(size=(10, 5)).astype(np.float32)}
    if store == "npy":
        root = tmp_path / "feats"
        root.mkdir()
        for k, v in feats.items():
            np.save(root / f"{k}.npy", v)
    else:
        h5py = pytest.importorskip("h5py")
        root = tmp_path / "feats.h5"
        with h5py.File(root, "w") as f:
            for k, v in feats.items():
                f[k] = v
    ann = [dict(vid="long", start=25.0, end=50.0, sentence="a b", duration=100.0),
           dict(vid="short", start=0.0, end=5.0, sentence="b c d", duration=None)]
    ds = FeatureGrounding(ann, str(root), num_clips=16, durations={"short": 10.0})
    assert ds.meta["video_dim"] == 5 and ds.meta["vocab_size"] == 2 + 4
    s0, s1 = ds[0], ds[1]
    assert s0["video_mask"].all() and s0["moment"].tolist() == [4.0, 8.0]   # 80 rows pooled to 16 clips
    assert torch.allclose(s0["video"][0], torch.as_tensor(feats["long"][:5]).mean(0), atol=1e-6)
    assert int(s1["video_mask"].sum()) == 10 and s1["moment"].tolist() == [0.0, 5.0]  # padded, not stretched
    assert torch.equal(s1["video"][:10], torch.as_tensor(feats["short"])) and s1["video"][10:].abs().sum() == 0
    b = collate([s0, s1])
    assert b["query"].shape == (2, 3)
    with pytest.raises(KeyError, match="missing"):
        FeatureStore(str(root))["missing"]
    with pytest.raises(ValueError, match="no duration"):
        FeatureGrounding([dict(vid="short", start=0, end=1, sentence="x", duration=None)], str(root))[0]


def test_resample_pools_into_bins():
    x = torch.arange(8.0)[:, None]
    out, n = resample(x, 4)
    assert n == 4 and out.flatten().tolist() == [0.5, 2.5, 4.5, 6.5]
