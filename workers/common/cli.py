"""`cloudathome`: one command for both sites. Each site's commands live in its own package
(`cloud.cli`, `home.cli`); this dispatcher loads them by name so that neither site imports
the other and a home machine never needs the cloud's settings."""

from __future__ import annotations

import importlib
import sys

from workers.common.conf import ConfigError

USAGE = """usage: cloudathome <command> [options]

  cloud up | manage ...     run the cloud site / a Django command of it
  home up | manage ...      run the Home Console site / a Django command of it
  keygen                    generate the home's SSH key pair
  register                  register this home with a cloud (writes cloudlink.yaml)
  demo [--exit]             both sites on this machine, the whole walkthrough, verified
  bench [--quick]           benchmarks of both sites on this machine -> docs/performance.md
"""

COMMANDS = {
    "cloud": "cloud.cli",
    "home": "home.cli",
    "keygen": "home.keys",
    "register": "home.register",
    "demo": "workers.local.demo",
    "bench": "workers.bench.run",
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0 if args else 2
    module_name = COMMANDS.get(args[0])
    if module_name is None:
        print(f"cloudathome: unknown command {args[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    module = importlib.import_module(module_name)
    try:
        return int(module.main(args[1:]) or 0)
    except ConfigError as exc:
        # A setting is wrong: one line naming it, not a traceback.
        print(f"cloudathome: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
