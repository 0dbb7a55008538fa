"""``mnfn data``: fetch the canonical image files (sha256-checked) or list what the data folder holds."""

from __future__ import annotations

import argparse

from . import add_subcommand

NAME = "data"
ORDER = 25
HELP = "download image sets (checksummed) or show which image files are found"
EXAMPLE = """examples:
  mnfn data info
  mnfn data info --verify
  mnfn data download --dataset fashion-mnist --data ~/.cache/mnfn/data

The data folder is --data, else $MNFN_DATA, else ~/.cache/mnfn/data. digits ships with scikit-learn."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_cmd", metavar="ACTION")
    dl = add_subcommand(sub, "download", "fetch the canonical files and check their sha256",
                        "mnfn data download --dataset mnist --data ~/data")
    dl.add_argument("--dataset", required=True, choices=("mnist", "fashion-mnist", "cifar10", "all"))
    dl.add_argument("--data", "--root", dest="root", default=None,
                    help="data folder (default $MNFN_DATA, else ~/.cache/mnfn/data)")
    dl.add_argument("--force", action="store_true", help="download again even if the files are there")
    dl.add_argument("--timeout", type=float, default=60.0, help="seconds per connection attempt (default 60)")
    inf = add_subcommand(sub, "info", "list the image sets found and where", "mnfn data info --verify")
    inf.add_argument("--data", "--root", dest="root", default=None,
                     help="data folder (default $MNFN_DATA, else ~/.cache/mnfn/data)")
    inf.add_argument("--verify", action="store_true", help="also compute sha256 of every file found")


def run(args: argparse.Namespace) -> int:
    from ..data import images as im

    cmd = getattr(args, "data_cmd", None)
    if cmd == "download":
        names = list(im.SOURCES) if args.dataset == "all" else [args.dataset]
        for name in names:
            im.download(name, args.root, force=args.force, timeout=args.timeout)
        print(f"{', '.join(names)}: files checked under {im.data_root(args.root)}")
        return 0
    if cmd == "info":
        root = im.data_root(args.root)
        print(f"data folder: {root}   (cache: {im.cache_dir()})")
        print("digits: bundled with scikit-learn (1397 train / 400 test, 8x8)")
        known = {sha for _, files, _ in im.SOURCES.values() for _, sha in files} | set(im.KNOWN_MIRROR_SHA256)
        missing = 0
        for name in ("mnist", "fashion-mnist", "cifar10"):
            try:
                found = im.find_files(name, args.root)
            except im.MissingDataError as exc:
                missing += 1
                print(f"{name}: MISSING -- {exc}")
                continue
            print(f"{name}:")
            for key, path in found.items():
                line = f"  {key}: {path}"
                if args.verify and path.is_file():
                    sha = im.sha256_file(path)
                    line += f"  sha256 {sha} ({'known' if sha in known else 'UNKNOWN checksum'})"
                print(line)
        return 0
    print("usage: mnfn data {download,info} ...  (see mnfn data --help)")
    return 2
