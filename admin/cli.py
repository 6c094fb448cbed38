"""mintline's admin command line: `python -m admin <command>` (installed as `mintline`).

Connects with DATABASE_URL, REDIS_URL and MINTLINE_NAMESPACE (RPC_URL / DEPLOYMENT_FILE for the
chain's view of the nonces); `deploy` needs only the chain (RPC_URL or --rpc-url) and
DEPLOYER_PRIVATE_KEY; `console-token` needs nothing. Reports go to stdout, progress to stderr. Exit
codes: 0 done, 1 the operation failed, 2 bad usage or configuration.
"""

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

import asyncpg
from pydantic import ValidationError
from redis.exceptions import RedisError

from admin import console_token, dead, deploy, priorities
from admin.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    OperationFailed,
    UsageError,
    connect,
    mask_url,
    parse_since,
)
from shared.settings import Settings

RESET_STUCK_HELP = """\
Repair what nothing else will move again, and report it:
  - batched/sent requests whose batch is gone, reverted, or confirmed without settling them go back to
    pending (recorded as confirmation_failed first, with the reason) and are republished;
  - active render jobs whose lease expired longer ago than the threshold are reset to waiting and
    republished (or marked failed/completed when their request already moved on);
  - pending/rendering requests not published for longer than the threshold are published again.
Requests of batches still signed or sent are never touched: the confirmer watches those
transactions and settles every entry from its receipt (or retries them if the batch is dropped).
"""


def _positive_seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mintline", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    status = commands.add_parser("status", help="queue, transactions in flight, nonces, streams, render jobs")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler="admin.status:run")

    retry = commands.add_parser(
        "retry-failed",
        help="give failed requests another attempt",
        description="Failed requests with retry_count < N go back to pending (NFTs without a tokenURI: to "
        "rendering, render job reset to waiting), retry_count + 1, and are republished. Requests whose "
        "authorization expires within the margin (and was not settled) are skipped and listed.",
    )
    retry.add_argument(
        "--max-retries",
        type=int,
        metavar="N",
        help="retry requests with retry_count < N (default: the confirmer's effective max_retries)",
    )
    retry.add_argument(
        "--since", type=parse_since, help="only requests that failed since: 30m, 2h, 1d or an ISO 8601 time"
    )
    retry.add_argument(
        "--expiry-margin",
        type=int,
        default=60,
        metavar="SECONDS",
        help="skip authorizations that expire within this many seconds (default 60)",
    )
    retry.add_argument("--dry-run", action="store_true", help="report what would be retried; change nothing")
    retry.set_defaults(handler="admin.retry:run")

    stuck = commands.add_parser(
        "reset-stuck",
        help="repair requests and render jobs nothing will move again",
        description=RESET_STUCK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stuck.add_argument(
        "--older-than", type=_positive_seconds, default=600.0, metavar="SECONDS", help="default 600"
    )
    stuck.add_argument("--dry-run", action="store_true", help="report what would be repaired; change nothing")
    stuck.set_defaults(handler="admin.stuck:run")

    tuning = commands.add_parser(
        "settings",
        help="run-time overrides (system_settings)",
        description="Overrides of the batcher's and confirmer's tunable settings; the services apply "
        "them on their next settings refresh (every few seconds).",
    )
    actions = tuning.add_subparsers(dest="action", required=True, metavar="action")
    get = actions.add_parser("get", help="every tunable key, or one, with its override and effective value")
    get.add_argument("key", nargs="?")
    get.set_defaults(handler="admin.tunables:get")
    put = actions.add_parser("set", help="set an override (validated like the service validates it)")
    put.add_argument("key")
    put.add_argument("value")
    put.set_defaults(handler="admin.tunables:set_")
    unset = actions.add_parser("unset", help="remove an override")
    unset.add_argument("key")
    unset.set_defaults(handler="admin.tunables:unset")

    importer = commands.add_parser(
        "import-sqlite",
        help="import the original server's processed_payments as completed requests (idempotent)",
    )
    importer.add_argument("path", help="the SQLite database file")
    importer.add_argument("--table", default="processed_payments", help="default processed_payments")
    importer.set_defaults(handler="admin.importer:run")

    replay = commands.add_parser("replay-streams", help="rebuild the Redis streams from PostgreSQL")
    replay.set_defaults(handler="admin.replay:run")

    priorities.add_parser(commands)
    dead.add_parser(commands)
    deploy.add_parser(commands)
    console_token.add_parser(commands)
    return parser


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        missing = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "missing"]
        if missing:
            raise UsageError(f"missing setting: {', '.join(missing)} (set in the environment)") from None
        problem = exc.errors()[0]
        raise UsageError(f"invalid setting {problem['loc'][0]}: {problem['msg']}") from None


def _handler(args: argparse.Namespace) -> Any:
    module_name, function_name = args.handler.split(":")
    return getattr(importlib.import_module(module_name), function_name)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    async with connect(settings) as admin:
        result: int = await _handler(args)(admin, args)
        return result


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    settings = None
    try:
        if not getattr(args, "needs_connections", True):
            result: int = _handler(args)(args)
            return result
        settings = load_settings()
        return asyncio.run(_run(args, settings))
    except UsageError as exc:
        print(f"mintline: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OperationFailed as exc:
        print(f"mintline: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (OSError, RedisError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        text = str(exc)
        if settings is not None:  # drivers may quote the URL they were given
            for url in (settings.database_url, settings.redis_url):
                text = text.replace(url, mask_url(url))
        print(f"mintline: failed: {type(exc).__name__}: {text}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("mintline: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
