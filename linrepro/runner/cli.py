"""The ``linrepro`` command: run, reproduce, params, site, profiles."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from linrepro.runner.params import ParamError, notebook_params, parse_overrides
from linrepro.utils import project


def _cmd_run(a) -> int:
    from linrepro.runner import execute as runner

    r = runner.run(
        a.notebook, a.profile, parse_overrides(a.param), Path(a.out) if a.out else None, progress=not a.no_progress
    )
    print(r.path / "report.html")
    return 0 if r.status == "ok" else 1


def _cmd_reproduce(a) -> int:
    from linrepro.runner import execute as runner

    runs = runner.reproduce(a.profile, Path(a.out) if a.out else None, progress=not a.no_progress)
    return 0 if all(r.status == "ok" for r in runs) else 1


def _cmd_params(a) -> int:
    nb = project.resolve_notebook(a.notebook)
    schema = notebook_params(nb)
    w = max(len(n) for n in schema) if schema else 4
    print(f"{nb.stem}: {len(schema)} parameters")
    print(f"{'name':<{w}}  {'type':<12} {'default':<24} help")
    for p in schema.values():
        print(f"{p.name:<{w}}  {p.type:<12} {repr(p.default):<24} {p.help}")
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
    r.set_defaults(func=_cmd_run)
    rp = sub.add_parser("reproduce", help="every notebook of a profile, in order, then the site")
    rp.add_argument("--profile", default="cpu")
    rp.add_argument("--out", help="outputs root (default: outputs/)")
    rp.add_argument("--no-progress", action="store_true")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ParamError, FileNotFoundError) as e:
        print(f"linrepro: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `linrepro params X | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
