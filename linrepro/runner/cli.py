"""The ``linrepro`` command: run, reproduce, params, site, profiles."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from linrepro.runner.params import ParamError, notebook_params, parse_overrides
from linrepro.utils import project


def _cmd_run(a) -> int:
    from linrepro.runner import execute as runner

    if a.resume and a.rerun:
        raise ParamError("give --resume or --rerun, not both")
    if a.resume or a.rerun:  # the run's own folder, profile and params.yaml
        flag = "--resume" if a.resume else "--rerun"
        if a.param or a.out:
            raise ParamError(f"{flag} continues a run with its own params.yaml in its own folder: drop -p and --out")
        r = runner.resume(Path(a.resume or a.rerun), a.notebook, progress=not a.no_progress, finished_ok=bool(a.rerun))
        print(r.path / "report.html")
        return 0 if r.status == "ok" else 1
    r = runner.run(
        a.notebook, a.profile, parse_overrides(a.param), Path(a.out) if a.out else None, progress=not a.no_progress
    )
    print(r.path / "report.html")
    return 0 if r.status == "ok" else 1


def _cmd_reproduce(a) -> int:
    from linrepro.runner import execute as runner

    runs = runner.reproduce(a.profile, Path(a.out) if a.out else None, progress=not a.no_progress, fresh=a.fresh)
    return 0 if all(r.status == "ok" for r in runs) else 1


def _cmd_params(a) -> int:
    nb = project.resolve_notebook(a.notebook)
    schema = notebook_params(nb)
    w = max(len(n) for n in schema) if schema else 4
    print(f"{nb.stem}: {len(schema)} parameters")
    r = min(max([len(p.range) for p in schema.values()] + [5]), 20)
    print(f"{'name':<{w}}  {'type':<12} {'default':<24} {'range':<{r}}  help")
    for p in schema.values():
        print(f"{p.name:<{w}}  {p.type:<12} {repr(p.default):<24} {p.range:<{r}}  {p.help}")
    profiles = [pr for pr in project.list_profiles() if (project.params_dir() / pr / f"{nb.stem}.yaml").exists()]
    print(f"profiles: {', '.join(profiles) or '(none)'}")
    return 0


def _cmd_site(a) -> int:
    from linrepro.runner.site import build_site

    print(build_site(Path(a.out) if a.out else None))
    return 0


def _cmd_profiles(a) -> int:
    from linrepro.runner.execute import profile_notebooks

    for pr in project.list_profiles():
        print(f"{pr:<8} {project.PROFILES_DOC.get(pr, ''):<50} {', '.join(profile_notebooks(pr))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linrepro", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one notebook under a profile")
    r.add_argument("notebook", help="stem (01_kernel_derivation), prefix (01) or path")
    r.add_argument("--profile", default="cpu")
    r.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter (VALUE is read as YAML)",
    )
    r.add_argument("--out", help="outputs root (default: outputs/)")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run in its own folder with its own parameters "
        "(03_clip_training: finished models are kept, the others continue from their last checkpoint)",
    )
    r.add_argument(
        "--rerun",
        metavar="RUN_DIR",
        help="execute a run of a resumable notebook (03, 09) again in its own folder with its own parameters, "
        "finished or not: finished models are reused (nothing is retrained), the notebook's code is today's",
    )
    r.set_defaults(func=_cmd_run)
    rp = sub.add_parser("reproduce", help="every notebook of a profile, in order, then the site")
    rp.add_argument("--profile", default="cpu")
    rp.add_argument("--out", help="outputs root (default: outputs/)")
    rp.add_argument("--no-progress", action="store_true")
    rp.add_argument(
        "--fresh",
        action="store_true",
        help="run every notebook anew (default: reuse finished runs whose notebook, parameters and code "
        "are unchanged, and continue an interrupted 03_clip_training in its own folder)",
    )
    rp.set_defaults(func=_cmd_reproduce)
    pa = sub.add_parser("params", help="a notebook's parameters with type and default")
    pa.add_argument("notebook")
    pa.set_defaults(func=_cmd_params)
    s = sub.add_parser("site", help="build outputs/site/index.html")
    s.add_argument("--out", help="outputs root (default: outputs/)")
    s.set_defaults(func=_cmd_site)
    pr = sub.add_parser("profiles", help="list profiles and their notebooks")
    pr.set_defaults(func=_cmd_profiles)
    return p


def _say(line: str) -> None:
    """One line on stderr; after SIGHUP the terminal may be gone, and that must not raise."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ParamError, FileNotFoundError) as e:
        _say(f"linrepro: error: {e}")
        return 2
    except BrokenPipeError:  # `linrepro params X | head`
        return 0
    except KeyboardInterrupt as e:  # SIGINT, SIGTERM, SIGHUP (linrepro.runner.record): one line, no traceback
        name, path = getattr(e, "signame", "SIGINT"), getattr(e, "path", None)
        where = f"; the partial run is in {path} (run.json says interrupted)" if path else ""
        _say(f"linrepro: interrupted by {name}{where}")
        return 128 + getattr(e, "signum", 2)
    except OSError as e:  # e.g. a full disk while writing the site
        _say(f"linrepro: error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
