"""`mintline console-token NAME`: a new operator console token, and the entry that lets it in.

The entry (`name:sha256:<hash of the token>`) goes to stdout, so `>> operators` appends it to the
operators file (CONSOLE_OPERATORS_FILE); the token goes to stderr, shown this once: nothing keeps
it but its hash, so a lost token is replaced (a new entry in place of the old), never recovered.
Needs no database, Redis or chain.
"""

import argparse
import sys

from admin.common import UsageError
from admin.console.credentials import CredentialsError, mint


def add_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    parser = commands.add_parser(
        "console-token",
        help="mint an operator's console token and print its entry for CONSOLE_OPERATORS_FILE",
        description="Prints the entry for the console's operators file (CONSOLE_OPERATORS_FILE) on "
        "stdout and the new token, once, on stderr. The operator signs in with NAME and the token "
        "(HTTP basic) or sends the token as a bearer token; the audit records NAME. The console reads "
        "the file when it starts: restart it after adding or removing an entry.",
    )
    parser.add_argument("name", help="the operator's name, as the audit records it")
    parser.set_defaults(handler="admin.console_token:run", needs_connections=False)


def run(args: argparse.Namespace) -> int:
    try:
        token, entry = mint(args.name)
    except CredentialsError as exc:
        raise UsageError(str(exc)) from None
    print(entry, flush=True)
    print(
        f"{args.name}'s console token (shown this once; only its hash, the line on stdout, is kept):\n"
        f"{token}\n"
        "add the line to CONSOLE_OPERATORS_FILE (or CONSOLE_OPERATORS) and restart the console",
        file=sys.stderr,
    )
    return 0
