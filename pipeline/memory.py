"""Cross-episode memory as a versioned table. A reflection whose second attempt succeeded (r2 >= tau) becomes a
new version of its slot; a reflector reads the newest version of its slot and records which one. With one slot
(reflect.memory_slots: 1) every reflection reads the newest adopted reflection; the reference code keeps one
slot per worker, each overwritten by its own successes. The memory never enters a first attempt. Version 0
means "no memory". No torch here."""

from __future__ import annotations


def slot_of(index: int, slots: int) -> int:
    """The slot of the rollout at ``index`` in the epoch's batch of first attempts."""
    return index % slots


def latest(rows: list[dict], slot: int = 0) -> tuple[int, str | None]:
    """(version, text) of the newest memory version of ``slot``; (0, None) when it has none."""
    mine = [r for r in rows if r.get("slot", 0) == slot]
    if not mine:
        return 0, None
    top = max(mine, key=lambda r: r["version"])
    return top["version"], top["text"]


def adopt(rows: list[dict], candidates: list[dict], epoch: int) -> list[dict]:
    """The memory table after this epoch: the previous versions plus one new version per candidate (dicts with
    reflection_id, retry_id, text and slot), in the given order; versions are numbered across slots, and each
    new version's parent is the newest version of its slot before it."""
    out = [dict(r) for r in rows]
    version = max((r["version"] for r in rows), default=0)
    for c in candidates:
        parent, _ = latest(out, c["slot"])
        version += 1
        out.append(
            {
                "version": version,
                "parent_version": parent,
                "epoch": epoch,
                "slot": c["slot"],
                "reflection_id": c["reflection_id"],
                "retry_id": c["retry_id"],
                "text": c["text"],
            }
        )
    return out
