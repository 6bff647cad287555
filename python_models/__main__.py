"""python -m python_models train --model {glf,drn,fsan,ianet,fsm} [--data synthetic|PATH] [--steps N] [--out DIR]
python -m python_models evaluate --checkpoint F [--data synthetic|PATH]

--data synthetic (default) trains on SyntheticGrounding (seed --seed) and evaluates on a held-out
split of the same task (seed --seed + 1). --data PATH reads an annotation file (Charades-STA .txt,
ActivityNet/TACoS .json; --format to force one) with --features (a folder of <vid>.npy or an
.h5 file) and, for Charades-STA, --durations (Charades CSV with id,length). FSM reads HC-STVG
or VidSTG .json (--format hcstvg|vidstg, else told apart by the file's layout) with --features
a folder of per-video pyramids <video>.npz / <video>.h5 (datasets level0, level1, ...,
each [frames, C, H, W]); --num-clips is then the number of frames sampled. Model
hyper-parameters: --set key=value (Python literals), e.g. --set hidden=64.
Under torchrun every rank trains on its shard (DDP); rank 0 writes DIR/<model>.pt and
DIR/metrics.json.
"""
import argparse
import ast
import json
import os
import sys

from .registry import MODELS

# spatio-temporal models bring their own synthetic data (module:class, same constructor style)
SYNTHETIC = {"fsm": "python_models.data.synthetic_stvg:SyntheticSTVG"}
STVG_FORMATS = ("hcstvg", "vidstg")


def _hparams(pairs):
    out = {}
    for item in pairs or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _stvg_dataset(model, data, fmt, features, num_frames, vocab):
    """A spatio-temporal grounding set (HC-STVG or VidSTG annotations, per-video feature pyramids)."""
    from .data import stvg_readers
    if model not in SYNTHETIC:
        raise SystemExit(f"--format {fmt} is spatio-temporal data; --model {model} grounds moments only "
                         f"(spatio-temporal models: {', '.join(sorted(SYNTHETIC))})")
    if fmt not in (None, *STVG_FORMATS):
        raise SystemExit(f"--model {model} reads spatio-temporal annotations: --format must be one of "
                         f"{', '.join(STVG_FORMATS)}, got {fmt!r}")
    if features is None:
        raise SystemExit("--data PATH needs --features (a folder of <video>.npz or <video>.h5 feature pyramids)")
    if fmt is None:  # HC-STVG files hold one object keyed by video, VidSTG files a list of videos
        with open(data) as f:
            fmt = "hcstvg" if isinstance(json.load(f), dict) else "vidstg"
    read = stvg_readers.read_hcstvg if fmt == "hcstvg" else stvg_readers.read_vidstg
    records = read(data)
    if not records:
        raise SystemExit(f"--data {data}: no annotations found (read as {fmt})")
    return stvg_readers.STVGDataset(records, features, num_frames=num_frames, vocab=vocab)


def make_dataset(model, data, seed, num_videos, num_clips, features=None, fmt=None, durations=None, vocab=None):
    """The dataset named by --data for `model`."""
    if data == "synthetic":
        if model in SYNTHETIC:
            import importlib
            module, cls = SYNTHETIC[model].split(":")
            try:
                ds_cls = getattr(importlib.import_module(module), cls)
            except (ImportError, AttributeError) as e:
                raise SystemExit(f"--model {model}: its synthetic data {SYNTHETIC[model]} is not available ({e})")
            return ds_cls(num_videos, num_clips=num_clips, seed=seed)
        from .data import SyntheticGrounding
        return SyntheticGrounding(num_videos, num_clips=num_clips, seed=seed, patches=(model == "glf"))
    if not os.path.exists(data):
        raise SystemExit(f"--data must be 'synthetic' or an existing annotation file, got {data!r}")
    if model in SYNTHETIC or fmt in STVG_FORMATS:
        return _stvg_dataset(model, data, fmt, features, num_clips, vocab)
    from .data.features import FeatureGrounding
    from .data.readers import Vocabulary, read_annotations, read_durations
    if features is None:
        raise SystemExit("--data PATH needs --features (a folder of <vid>.npy files or an .h5 file)")
    return FeatureGrounding(read_annotations(data, fmt), features, num_clips,
                            vocab=Vocabulary(vocab) if vocab else None,
                            durations=read_durations(durations) if durations else None)


def _add_data_args(p):
    p.add_argument("--data", default=None, help="'synthetic' or an annotation file")
    p.add_argument("--features", help="with --data PATH: a folder of <vid>.npy or an .h5 file; for fsm a folder "
                   "of <video>.npz / <video>.h5 feature pyramids (level0, level1, ...)")
    p.add_argument("--format", choices=("charades", "activitynet", "tacos", *STVG_FORMATS),
                   help="annotation format (default: from the file)")
    p.add_argument("--durations", help="Charades CSV (id,length) for Charades-STA durations")
    p.add_argument("--num-videos", type=int, default=None, help="synthetic: samples (train 512, test 128)")
    p.add_argument("--num-clips", type=int, default=None, help="clips per video (default 32)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def cmd_train(args):
    from . import distributed
    from .evaluate import evaluate, random_baseline
    from .train import make_loader, train
    data = args.data or "synthetic"
    seed = 0 if args.seed is None else args.seed
    clips = args.num_clips or 32
    hp = _hparams(args.set)
    ds = make_dataset(args.model, data, seed, args.num_videos or 512, clips, args.features, args.format, args.durations)
    spec = dict(data=data, seed=seed, num_clips=clips, features=args.features, format=args.format,
                durations=args.durations)
    ckpt = os.path.join(args.out, f"{args.model}.pt")
    res = train(args.model, ds, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=seed,
                device=args.device, progress=not args.no_progress, checkpoint=ckpt, hparams=hp, data=spec)
    if distributed.is_main():
        if data == "synthetic":
            test = make_dataset(args.model, data, seed + 1, max(64, (args.num_videos or 512) // 4), clips)
        else:
            test = ds
        loader = make_loader(test, 64, shuffle=False)
        metrics = {"model": args.model, "steps": args.steps, "final_loss": res["losses"][-1],
                   "eval": evaluate(res["model"], loader), "random": random_baseline(loader)}
        with open(os.path.join(args.out, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=1)
        print(json.dumps(metrics))
    distributed.cleanup()
    return 0


def cmd_evaluate(args):
    from .evaluate import evaluate, random_baseline
    from .train import load_checkpoint, make_loader
    model, ckpt = load_checkpoint(args.checkpoint, args.device or "cpu")
    spec = ckpt.get("data") or {}
    data = args.data or spec.get("data", "synthetic")
    # by default the held-out split of the data the model was trained on
    seed = args.seed if args.seed is not None else spec.get("seed", 0) + 1
    clips = args.num_clips or spec.get("num_clips", 32)
    test = make_dataset(ckpt["model"], data, seed, args.num_videos or 128, clips,
                        args.features or spec.get("features"), args.format or spec.get("format"),
                        args.durations or spec.get("durations"), vocab=ckpt["meta"].get("vocab"))
    loader = make_loader(test, args.batch_size, shuffle=False)
    metrics = {"model": ckpt["model"], "checkpoint": args.checkpoint, "eval": evaluate(model, loader),
               "random": random_baseline(loader)}
    print(json.dumps(metrics))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m python_models", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a model and write a checkpoint")
    t.add_argument("--model", required=True, choices=sorted(MODELS))
    t.add_argument("--steps", type=int, default=300)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--out", default="runs", help="output folder (default: %(default)s)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="model hyper-parameter override")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_data_args(t)
    e = sub.add_parser("evaluate", help="evaluate a checkpoint")
    e.add_argument("--checkpoint", required=True)
    _add_data_args(e)
    args = p.parse_args(argv)
    return cmd_train(args) if args.cmd == "train" else cmd_evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
