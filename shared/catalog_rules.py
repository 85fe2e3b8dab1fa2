"""The catalog's rules as SQL, each written once: who sees which series (SPEC §3) and the export
orders (SPEC §5). The worker's export queries and ``catalog restore`` use them.

Every function takes SQL expressions or aliases of this product's own (never user input) and
returns SQL text; ``$1`` is always the owner's user id.
"""

from __future__ import annotations


def text_order(expr: str) -> str:
    """Locale-independent, case-insensitive order for a text key, missing values last.

    ``lower(x COLLATE "C")`` then ``x COLLATE "C"``: ASCII letters fold case and everything
    else sorts by code point, identically on every server whatever its collation.
    """
    return f'lower(({expr}) COLLATE "C") NULLS LAST, ({expr}) COLLATE "C" NULLS LAST'


def aggregate_order(expr: str) -> str:
    """The same order inside ``array_agg(... ORDER BY ...)`` (no NULLs there)."""
    return f'lower(({expr}) COLLATE "C"), ({expr}) COLLATE "C"'


def series_order(series: str, metadata: str) -> str:
    """SPEC §5: ``title_sort``, then title, then name, then id; an empty text counts as missing."""
    return ", ".join(
        (
            text_order(f"NULLIF({metadata}.title_sort, '')"),
            text_order(f"NULLIF({metadata}.title, '')"),
            text_order(f"{series}.name"),
            f"{series}.id",
        )
    )


def book_order(series_position: str, number: str, name: str, book_id: str) -> str:
    """SPEC §5: the series' position, then number, then book name, then id; missing last."""
    return ", ".join((series_position, f"{number} NULLS LAST", text_order(name), book_id))


# The owner's sharing-tag grants: their own and those of every access group they belong to.
GRANTS = """grants AS MATERIALIZED (
    SELECT ust.sharing_tag_id, ust.access_mode
    FROM user_sharing_tags ust
    WHERE ust.user_id = $1
    UNION
    SELECT agt.sharing_tag_id, agt.access_mode
    FROM user_access_groups uag
    JOIN access_group_sharing_tags agt ON agt.access_group_id = uag.access_group_id
    WHERE uag.user_id = $1
)"""
"""A CTE named ``grants`` (``sharing_tag_id``, ``access_mode``) for :func:`visible`."""


def visible(series_id: str) -> str:
    """A SQL condition: the series ``series_id`` is visible under the ``grants`` CTE.

    A series carrying any denied tag is hidden (deny wins, whatever the source of either
    grant); any allow grant turns the catalog into an allow-list, where untagged series
    disappear; without grants everything is visible. A book is visible with its series.
    """
    return f"""NOT EXISTS (
          SELECT 1 FROM series_sharing_tags sst
          JOIN grants g ON g.sharing_tag_id = sst.sharing_tag_id
          WHERE sst.series_id = {series_id} AND g.access_mode = 'deny'
      )
      AND (
          NOT EXISTS (SELECT 1 FROM grants g WHERE g.access_mode = 'allow')
          OR EXISTS (
              SELECT 1 FROM series_sharing_tags sst
              JOIN grants g ON g.sharing_tag_id = sst.sharing_tag_id
              WHERE sst.series_id = {series_id} AND g.access_mode = 'allow'
          )
      )"""
