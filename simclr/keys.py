"""The `study.py keys` listing: every config key as declared in simclr.config (type, default, range, default
search range, the objectives that use it, help)."""

from __future__ import annotations

from simclr.config import SECTIONS, objective_keys


def key_rows(objective: str | None = None) -> list[dict[str, str]]:
    """Every key (of one objective, or of all), as `study.py keys` lists it: name, type, default, range, default
    search range, the objectives that use it, and its help."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for name in [objective] if objective else list(SECTIONS):
        for spec in objective_keys(name).values():
            row = rows.setdefault(
                (spec.name, spec.section.__name__),
                {
                    "key": spec.name,
                    "type": spec.type.__name__,
                    "default": repr(spec.default) if isinstance(spec.default, str) else str(spec.default),
                    "range": spec.range.text(),
                    "search": spec.search.text() if spec.search else "",
                    "objectives": "",
                    "help": spec.help,
                },
            )
            row["objectives"] = ",".join(filter(None, [row["objectives"], name]))
    return list(rows.values())


def keys_text(objective: str | None = None) -> str:
    """key_rows as an aligned table (the help last, unaligned)."""
    rows = key_rows(objective)
    columns = ("key", "type", "default", "range", "search", "objectives")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns) + "  help"]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns) + "  " + r["help"] for r in rows]
    return "\n".join(lines)
