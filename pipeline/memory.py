"""Cross-episode memory as a versioned table. A reflection whose second attempt succeeded (r2 >= tau)
becomes a new version; reflectors read the latest version and record which one. The memory never enters a
first attempt. Version 0 means "no memory". No torch here."""

from __future__ import annotations


def latest(rows: list[dict]) -> tuple[int, str | None]:
    """(version, text) of the newest memory version; (0, None) when there is none."""
    if not rows:
        return 0, None
    top = max(rows, key=lambda r: r["version"])
    return top["version"], top["text"]


def adopt(rows: list[dict], candidates: list[dict], epoch: int) -> list[dict]:
    """The memory table after this epoch: the previous versions plus one new version per candidate
    (dicts with reflection_id, retry_id, text), in the given order, each the parent of the next."""
    out = [dict(r) for r in rows]
    version, _ = latest(rows)
    for c in candidates:
        out.append(
            {
                "version": version + 1,
                "parent_version": version,
                "epoch": epoch,
                "reflection_id": c["reflection_id"],
                "retry_id": c["retry_id"],
                "text": c["text"],
            }
        )
        version += 1
    return out
