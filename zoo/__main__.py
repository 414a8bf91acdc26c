"""python -m zoo: the releases from the command line.

    python -m zoo list                                   the released checkpoints
    python -m zoo export RUN.ckpt DIR [--trust_code]     a run's checkpoint as a release folder
    python -m zoo verify ID_OR_DIR                       check a release against its manifest

``export`` writes what ``scripts/release.py`` writes: the model's whole state in the method's release
format (for the language models, a Hugging Face folder with the tokenizer, which
``AutoModelForCausalLM.from_pretrained`` reads; a method's extra state, such as Go-Explore's best
trajectory, beside it), hparams.yaml and manifest.json, and, from the run's folder, card.md (command,
seed, package versions, commit, metrics), metrics.json and curve.png where the run logged them.
``zoo.load(DIR)`` and ``--model.init_from DIR`` take the folder. DIR is new, empty, or an earlier release, which is
replaced whole; export never deletes a file it did not write (a folder holding other files is refused).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo import hub
from zoo.cards import run_documents
from zoo.errors import UserError
from zoo.module import load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the released checkpoints")
    export = sub.add_parser("export", help="a run's checkpoint (a .ckpt) as a release folder")
    export.add_argument("checkpoint", help="a .ckpt written by a recipe, e.g. logs/lm/version_0/checkpoints/last.ckpt")
    export.add_argument("directory", help="the release folder to write")
    export.add_argument("--trust_code", action="store_true",
                        help="import code the checkpoint names (a user environment) that is not the zoo's own")
    verify = sub.add_parser("verify", help="check a release folder against its manifest")
    verify.add_argument("release", help="a released id or a release folder")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            hub.list_models()
        elif args.command == "export":
            hub.check_target(args.directory)  # before the checkpoint is read: a folder export may not write to
            model = load(args.checkpoint, trust_code=args.trust_code)
            documents = run_documents(Path(args.checkpoint), model, args.directory)
            manifest = hub.save(model, args.directory, documents)
            print(f"exported {args.checkpoint} -> {args.directory} (manifest sha256 {manifest[:12]}…)")
        else:
            path = hub.release_dir(args.release)
            print(f"{path}: every file matches its manifest")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
