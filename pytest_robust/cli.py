"""The ``pytest-robust`` command (also ``python -m pytest_robust``): ``verify`` and ``export``.

``pytest-robust verify RUN_DIR|BUNDLE.zip`` reruns a recorded run and compares every evaluation
(:mod:`pytest_robust.verify`); it prints a summary and writes ``verification.json`` and
``verification.html`` (default: ``RUN_DIR/verification/``, for a bundle ``<name>-verification/``
beside it). ``pytest-robust export RUN_DIR FILE.zip`` packs a run with the checkpoints it used
(:mod:`pytest_robust.evidence`). Exit status of verify: 0 verified, 1 differs, 2 could not rerun;
3 a usage error (nothing verified).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pytest_robust.errors import RobustConfigError

USAGE_ERROR = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pytest-robust", description="Verify and export pytest-robust runs (for auditors)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser(
        "verify",
        help="rerun a recorded run and compare every evaluation",
        description="Rerun the run's recorded command (no stored result is read; checkpoints by their hash "
        "from the caches, else retrained) and compare every evaluation with the recorded one. Exit "
        "status: 0 verified, 1 differs, 2 could not rerun, 3 usage error.",
    )
    v.add_argument(
        "run", type=Path, help="a report run folder (reports/<run id>, reports/latest) or a bundle zip"
    )
    v.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where verification.json / .html and the rerun go (default: RUN/verification)",
    )
    v.add_argument(
        "--cwd",
        type=Path,
        default=None,
        help="the folder to rerun the command in (default: the recorded one): a checkout of the suite",
    )
    v.add_argument(
        "--cache-dir",
        type=Path,
        action="append",
        default=[],
        help="a checkpoint cache to look for the recorded checkpoints in (repeatable; the user "
        "cache and the recorded one are always searched)",
    )
    v.add_argument(
        "--exact",
        action="store_true",
        help="require bit-identical evaluations: a retrained checkpoint is a difference",
    )
    v.add_argument(
        "--seed-spread",
        type=float,
        default=None,
        help="seed-to-seed standard deviation of an accuracy, for retrained checkpoints "
        "(default: the run's own multi-seed records, else 0: sampling noise only)",
    )
    v.add_argument(
        "--sums-sha256",
        default=None,
        metavar="HEX",
        help="the SHA-256 of the run's SHA256SUMS, as the run printed it when it ended, kept apart "
        "from the run (a CI log): SHA256SUMS alone catches accidents, this catches a run folder "
        "rewritten together with its SHA256SUMS",
    )
    v.add_argument(
        "--device-tolerance",
        type=float,
        default=None,
        help="share of samples whose outcome may differ on another device type (default 0.01)",
    )
    e = sub.add_parser(
        "export",
        help="pack a run and its checkpoints into one zip",
        description="Pack RUN and the checkpoints it used into FILE.zip, so `pytest-robust "
        "verify FILE.zip` can check it on another machine without retraining.",
    )
    e.add_argument("run", type=Path, help="a report run folder (reports/<run id> or reports/latest)")
    e.add_argument("target", type=Path, help="the zip to write")
    e.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="the checkpoint cache the run used (default: the recorded one, else the user cache)",
    )
    return parser


def _default_cache() -> Path:
    from pytest_robust.config import default_cache_dir

    return default_cache_dir()


def _resolve_run(path: Path) -> Path:
    path = path.expanduser()
    if (path / "results.json").is_file():
        return path.resolve()
    if (path / "latest" / "results.json").is_file():  # the report folder itself
        return (path / "latest").resolve()
    raise RobustConfigError(
        f"{path}: no results.json there; pass a run folder (reports/<run id> or "
        "reports/latest) or a bundle made by `pytest-robust export`"
    )


def _write_outputs(out: Path, verification: object) -> None:
    from pytest_robust.storage import atomic_write_bytes
    from pytest_robust.verify import VERIFICATION, VERIFICATION_HTML, Verification, render_html

    assert isinstance(verification, Verification)
    for name in (VERIFICATION, VERIFICATION_HTML):
        existing = out / name
        if existing.exists() and name == VERIFICATION:
            try:
                ours = (
                    json.loads(existing.read_text(encoding="utf-8")).get("kind")
                    == "pytest-robust verification"
                )
            except (OSError, ValueError, AttributeError):
                ours = False
            if not ours:
                raise RobustConfigError(
                    f"{existing} exists and was not written by pytest-robust: not overwriting it; pass --out"
                )
    doc = verification.to_json()
    atomic_write_bytes(out / VERIFICATION, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
    atomic_write_bytes(out / VERIFICATION_HTML, render_html(doc).encode("utf-8"))


def verify_main(args: argparse.Namespace) -> int:
    from pytest_robust.evidence import is_bundle, unpack
    from pytest_robust.verify import DEVICE_TOLERANCE, verify

    source = args.run.expanduser()
    roots = [p.expanduser() for p in args.cache_dir]
    if args.sums_sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", args.sums_sha256):
        raise RobustConfigError(f"--sums-sha256 must be 64 hexadecimal digits, got {args.sums_sha256!r}")
    if source.is_file():
        if not is_bundle(source):
            raise RobustConfigError(
                f"{source} is not a pytest-robust bundle (made by `pytest-robust export`)"
            )
        out = args.out or source.with_name(f"{source.stem}-verification")
        out.mkdir(parents=True, exist_ok=True)
        unpacked = Path(tempfile.mkdtemp(prefix="bundle-", dir=out))
        run_dir, bundle_cache = unpack(source, unpacked)
        roots.insert(0, bundle_cache)
    else:
        run_dir = _resolve_run(source)
        out = args.out or run_dir / "verification"
        out.mkdir(parents=True, exist_ok=True)
    roots.append(_default_cache())
    work = Path(tempfile.mkdtemp(prefix="rerun-", dir=out))
    verification = verify(
        run_dir,
        work=work,
        cwd=args.cwd.expanduser().resolve() if args.cwd else None,
        cache_roots=roots,
        seed_spread_=args.seed_spread,
        device_tolerance=DEVICE_TOLERANCE if args.device_tolerance is None else args.device_tolerance,
        exact_only=args.exact,
        sums_sha256=args.sums_sha256,
    )
    _write_outputs(out, verification)
    for line in verification.lines():
        print(line)
    print(
        f"written: {out / 'verification.json'}, {out / 'verification.html'} (rerun report: {work / 'rerun'})"
    )
    return verification.exit_code


def export_main(args: argparse.Namespace) -> int:
    from pytest_robust.evidence import export

    run_dir = _resolve_run(args.run)
    cache = args.cache_dir
    if cache is None:
        try:
            recorded = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
            cache = Path(recorded["manifest"]["config"]["cache_dir"])
        except (OSError, ValueError, KeyError, TypeError):
            cache = _default_cache()
    missing = export(run_dir, args.target.expanduser(), cache.expanduser())
    print(f"exported {run_dir} to {args.target} with its checkpoints from {cache}")
    if missing:
        print(
            f"warning: {len(missing)} checkpoint(s) not in that cache with the recorded weights, not "
            f"packed (verify will retrain them): {', '.join(k[:12] for k in missing)}"
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return verify_main(args) if args.command == "verify" else export_main(args)
    except RobustConfigError as exc:
        print(f"pytest-robust {args.command}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
