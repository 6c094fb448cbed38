"""`mintline requeue-dead`: dead letters go back to the stream they came from.

A consumer moves an entry to `<stream>.dead` after too many deliveries (its handler kept failing, say
while a dependency was down) or when it cannot decode it. Once the cause is fixed, the entry goes back
to its stream as it was (its event, without the dead-letter reason) and leaves the dead-letter stream,
each in one MULTI, so an entry is never in both or in neither. Entries that do not decode would only
be dead-lettered again: they stay, and are listed. Consumers are idempotent, so an event that was
handled after all changes nothing.
"""

import argparse
from dataclasses import dataclass, field
from typing import Any

from admin.audit import audited
from admin.common import Admin, UsageError, listing
from shared import events, keys
from shared.events import FIELD, DecodeError

CHUNK = 500


@dataclass
class Requeued:
    streams: list[str]
    dry_run: bool
    moved: dict[str, int] = field(default_factory=dict)  # stream -> entries requeued
    undecodable: list[str] = field(default_factory=list)  # "<stream> <dead entry id>: why"

    def summary(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "requeued": self.moved,
            "total": sum(self.moved.values()),
            "undecodable": self.undecodable,
        }


def add_parser(commands: Any) -> None:
    dead = commands.add_parser(
        "requeue-dead",
        help="put dead-lettered stream entries back on their stream",
        description=__doc__.split("\n\n")[1],
    )
    dead.add_argument("--stream", choices=keys.STREAMS, help="only this stream's dead letters")
    dead.add_argument("--dry-run", action="store_true", help="report what would be requeued; change nothing")
    dead.set_defaults(handler="admin.dead:run")


async def run(admin: Admin, args: argparse.Namespace) -> int:
    done = await requeue_dead(admin, stream=args.stream, dry_run=args.dry_run)
    verb = "would requeue" if done.dry_run else "requeued"
    print(f"requeue-dead: {verb} {sum(done.moved.values())} dead-lettered entr(ies)")
    for name in done.streams:
        print(f"  {name}: {done.moved.get(name, 0)}")
    if done.undecodable:
        print(f"  left dead (undecodable): {len(done.undecodable)}")
        print(listing(done.undecodable))
    return 0


async def requeue_dead(admin: Admin, *, stream: str | None = None, dry_run: bool = False) -> Requeued:
    if stream is not None and stream not in keys.STREAMS:
        raise UsageError(f"unknown stream {stream!r}; streams: {', '.join(keys.STREAMS)}")
    done = Requeued([stream] if stream else list(keys.STREAMS), dry_run)
    if dry_run:
        await _requeue_all(admin, done)
        return done
    async with audited(admin, "requeue-dead", {"stream": stream}) as entry:
        await _requeue_all(admin, done)
        entry.result = done.summary()
    return done


async def _requeue_all(admin: Admin, done: Requeued) -> None:
    names = admin.settings.keys
    for name in done.streams:
        dead, target = names.dead(name), names.stream(name)
        after = "-"
        while True:
            # Exclusive start after the last id seen: entries left behind (undecodable) are not read twice.
            entries: list[tuple[bytes, dict[bytes, bytes]]] = await admin.redis.xrange(  # type: ignore[assignment]
                dead, min=after if after == "-" else f"({after}", count=CHUNK
            )
            if not entries:
                break
            after = _text(entries[-1][0])
            for entry_id, fields in entries:
                payload = fields.get(FIELD)
                try:
                    if payload is None:
                        raise DecodeError(f"no {FIELD.decode()!r} field")
                    events.decode(payload)
                except DecodeError as exc:
                    done.undecodable.append(f"{name} {_text(entry_id)}: {exc}")
                    continue
                done.moved[name] = done.moved.get(name, 0) + 1
                if done.dry_run:
                    continue
                async with admin.redis.pipeline(transaction=True) as pipe:
                    pipe.xadd(target, {FIELD: payload}, maxlen=admin.settings.stream_maxlen, approximate=True)
                    pipe.xdel(dead, entry_id)
                    await pipe.execute()
            if len(entries) < CHUNK:
                break


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
