"""Readers of the standard temporal-grounding annotation formats, and a tiny word vocabulary.

Every reader returns a list of dicts ``{"vid", "start", "end", "sentence", "duration"}`` with
times in seconds (``duration`` is None where the format does not carry it: Charades-STA, whose
durations come from Charades' CSV via :func:`read_durations`).

Formats:
* Charades-STA: text lines ``"<vid> <start> <end>##<sentence>"``.
* ActivityNet Captions: JSON ``{vid: {"duration": s, "timestamps": [[s, e], ...],
  "sentences": [...]}}``.
* TACoS as released with 2D-TAN: the same JSON layout; when an entry has "num_frames" and
  "fps" its timestamps are frame numbers (converted to seconds), otherwise seconds.
"""
import csv
import json
import re
from collections import Counter


def read_charades_sta(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            head, sep, sentence = line.partition("##")
            parts = head.split()
            if not sep or len(parts) != 3:
                raise ValueError(f"{path}:{n}: expected a Charades-STA line '<vid> <start> <end>##<sentence>', "
                                 f"got {line[:80]!r}")
            vid, s, e = parts
            out.append(dict(vid=vid, start=float(s), end=float(e), sentence=sentence.strip(), duration=None))
    return out


def _read_json_captions(path, name):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a {name} JSON object {{vid: {{...}}}}, got {type(data).__name__}")
    out = []
    for vid, ann in data.items():
        for key in ("timestamps", "sentences"):
            if key not in ann:
                raise ValueError(f"{path}: video {vid!r} must have {key!r}, got keys {sorted(ann)}")
        if len(ann["timestamps"]) != len(ann["sentences"]):
            raise ValueError(f"{path}: video {vid!r} has {len(ann['timestamps'])} timestamps but "
                             f"{len(ann['sentences'])} sentences")
        if "num_frames" in ann and "fps" in ann:  # TACoS (2D-TAN): frame numbers
            fps = float(ann["fps"])
            scale, duration = 1.0 / fps, float(ann["num_frames"]) / fps
        elif "duration" in ann:
            scale, duration = 1.0, float(ann["duration"])
        else:
            raise ValueError(f"{path}: video {vid!r} needs 'duration' (seconds) or 'num_frames' and 'fps', "
                             f"got keys {sorted(ann)}")
        for (s, e), sentence in zip(ann["timestamps"], ann["sentences"]):
            s, e = sorted((float(s) * scale, float(e) * scale))
            out.append(dict(vid=vid, start=s, end=e, sentence=sentence.strip(), duration=duration))
    return out


def read_activitynet(path):
    return _read_json_captions(path, "ActivityNet Captions")


def read_tacos(path):
    return _read_json_captions(path, "TACoS")


def read_annotations(path, fmt=None):
    """Dispatch on `fmt` ("charades", "activitynet", "tacos") or the file extension
    (.txt: Charades-STA, .json: ActivityNet/TACoS layout)."""
    fmt = fmt or ("charades" if str(path).endswith(".txt") else "activitynet" if str(path).endswith(".json") else None)
    readers = {"charades": read_charades_sta, "activitynet": read_activitynet, "tacos": read_tacos}
    if fmt not in readers:
        raise ValueError(f"annotation format must be one of {sorted(readers)} (or a .txt / .json path), "
                         f"got {fmt!r} for {path!r}")
    return readers[fmt](path)


def read_durations(path):
    """{vid: seconds} from a Charades-style CSV with columns "id" and "length"."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"id", "length"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected CSV columns 'id' and 'length', got {reader.fieldnames}")
        return {row["id"]: float(row["length"]) for row in reader}


def seconds_to_clips(start, end, duration, num_clips):
    """(start, end) seconds -> clip units of a video whose `num_clips` clips span `duration`
    seconds, clamped to [0, num_clips], end >= start."""
    if duration <= 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration}")
    s = min(max(start / duration * num_clips, 0.0), float(num_clips))
    e = min(max(end / duration * num_clips, 0.0), float(num_clips))
    return min(s, e), max(s, e)


_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(sentence):
    """Lower-case words (letters/digits, with an optional 's-like suffix)."""
    return _WORD.findall(sentence.lower())


class Vocabulary:
    """Word <-> id; 0 = <pad>, 1 = <unk>. Built from training sentences."""

    def __init__(self, words):
        self.words = list(words)
        if self.words[:2] != ["<pad>", "<unk>"]:
            raise ValueError(f"vocabulary must start with ['<pad>', '<unk>'], got {self.words[:2]}")
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, sentences, min_count=1):
        counts = Counter(w for s in sentences for w in tokenize(s))
        return cls(["<pad>", "<unk>"] + sorted(w for w, c in counts.items() if c >= min_count))

    def encode(self, sentence):
        return [self.index.get(w, 1) for w in tokenize(sentence)] or [1]

    def __len__(self):
        return len(self.words)
