-- Value rendering for the worker's database renderer (services/worker/render): each function
-- renders one kind of value byte for byte as the Python encoders do, so PostgreSQL can write
-- the export inside COPY. tests/worker/render compares the two renderings.
--
-- Every function is LANGUAGE sql with a SQL-standard body and no SET clause, so the planner
-- inlines it into the query that calls it: a call costs what its expression costs, no function
-- call per row. Inlining holds only while
--   - an argument used more than once in a body is cheap (a column, or one call over a column:
--     callers pass columns, never another rendered value);
--   - a scalar body has no sub-select: the multi-value renderers, which aggregate, are
--     set-returning functions that the query joins LATERAL, inlined as subqueries;
--   - the declared volatility holds for the body (to_json, array output and timestamp output are
--     STABLE, so what uses them is STABLE).
-- tests/worker/render/test_copy.py checks that no call is left in any plan.
--
-- A change of rendering is a new migration that replaces the function (CREATE OR REPLACE keeps
-- its grants): the worker that needs it runs after the migration. EXECUTE is PUBLIC's by default
-- and the worker's role has USAGE on this schema (shared/privileges.py).

SET LOCAL standard_conforming_strings = on;

-- ---------------------------------------------------------------------------------------------
-- Text

-- Python's str.isspace() (what str.strip() removes), by code point.
CREATE OR REPLACE FUNCTION exports.is_py_space(code integer) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN code IN (
    9, 10, 11, 12, 13, 28, 29, 30, 31, 32, 133, 160, 5760, 8192, 8193, 8194, 8195, 8196, 8197,
    8198, 8199, 8200, 8201, 8202, 8232, 8233, 8239, 8287, 12288
);

-- True when str.strip() would change x. btrim() walks the whole string in a UTF-8 database;
-- most values have nothing to strip, which their first and last characters tell for less.
CREATE OR REPLACE FUNCTION exports.py_padded(x text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN exports.is_py_space(ascii(x)) OR exports.is_py_space(ascii(right(x, 1)));

-- What str.strip() removes, as text (the same characters as is_py_space).
CREATE OR REPLACE FUNCTION exports.py_whitespace() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN E'\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005'
    '\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000';

-- Python's str.strip().
CREATE OR REPLACE FUNCTION exports.py_strip(x text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN exports.py_padded(x) THEN btrim(x, exports.py_whitespace()) ELSE x END;

-- A line break (the encoders' \r\n|\r|\n) with the blanks around it: what stripping each line
-- of a value removes. A constant (the planner folds it).
CREATE OR REPLACE FUNCTION exports.line_break_pattern() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '[' || translate(exports.py_whitespace(), E'\r\n', '') || E']*(\r\n?|\n)['
    || translate(exports.py_whitespace(), E'\r\n', '') || ']*';

-- A value the database cannot render as Python would: the query fails with this message and
-- the worker renders the section in Python from the first row not yet written. It reads its
-- argument (a fact of the row) so that it can never be folded into a constant, and raised,
-- while the query is planned.
CREATE OR REPLACE FUNCTION exports.declined(row_fact boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (('codex-exports: value left to the Python renderer ' || row_fact::text)::integer)::text;

-- A JSON string, escaped exactly as orjson escapes it: \" \\ \b \f \n \r \t, other control
-- characters as \u00XX (lowercase), everything else (DEL, U+2028, /) raw.
CREATE OR REPLACE FUNCTION exports.json_string(x text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN to_json(x)::text;

-- ---------------------------------------------------------------------------------------------
-- Numbers and times (the session sets extra_float_digits = 1 and DateStyle = ISO)

-- x, or NULL for NaN and ±inf (no data).
CREATE OR REPLACE FUNCTION exports.finite(x float8) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN x = 'NaN'::float8 OR x = 'Infinity'::float8 OR x = '-Infinity'::float8 THEN NULL
    ELSE x END;

-- A float8 as the encoders write the number the Python reference reads (catalog._number): with
-- orjson false, Python's repr(); with orjson true, what orjson writes. NULL for NaN and ±inf.
-- Integral values below 2**63 print as integers. PostgreSQL prints a float8 with the shortest
-- digits that read back exactly, as Python and orjson do; only the notation differs:
-- PostgreSQL uses an exponent from 1e15 up, Python's repr from 1e16 up, so non-integral values
-- in [1e15, 1e16) get their decimal point moved back; below 1e-4 PostgreSQL and Python use an
-- exponent with at least two digits (1e-05), orjson writes [1e-5, 1e-4) in full (0.00001) and
-- never pads the exponent (1e-6). One CASE for both (callers pass a constant orjson, which the
-- planner folds): measured, a JSON variant wrapping float_text in a second CASE made a books
-- export 5% slower in PostgreSQL.
CREATE OR REPLACE FUNCTION exports.number_text(x float8, orjson boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN exports.finite(x) IS NULL THEN NULL
    WHEN x = trunc(x) AND abs(x) < 9223372036854775808::float8 THEN x::int8::text
    WHEN abs(x) >= 1e15::float8 AND abs(x) < 1e16::float8
        THEN regexp_replace(x::text, '^(-?[0-9])\.([0-9]{15})([0-9]+)e\+15$', '\1\2.\3')
    WHEN orjson AND abs(x) < 1e-4::float8 THEN replace(
        regexp_replace(x::text, '^(-?)([0-9])\.?([0-9]*)e-05$', '\10.0000\2\3'), 'e-0', 'e-')
    ELSE x::text
END;

-- repr() of the number (CSV, Markdown).
CREATE OR REPLACE FUNCTION exports.float_text(x float8) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN exports.number_text(x, false);

-- What orjson writes for the number (JSON).
CREATE OR REPLACE FUNCTION exports.json_number(x float8) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN exports.number_text(x, true);

-- RFC 3339 in UTC with Z, microseconds only when non-zero (encoder.rfc3339). From the ISO text
-- of the UTC timestamp: YYYY-MM-DD HH:MM:SS and, when non-zero, a fraction without its
-- trailing zeros, which rpad restores to six digits. Outside years 1 to 9999 (and for ±infinity)
-- asyncpg gives Python no aware datetime: such a value is left to the Python renderer.
CREATE OR REPLACE FUNCTION exports.rfc3339(x timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
    WHEN x >= '0001-01-01 00:00:00+00'::timestamptz AND x < '10000-01-01 00:00:00+00'::timestamptz
        THEN replace(
            CASE WHEN length((x AT TIME ZONE 'UTC')::text) = 19 THEN (x AT TIME ZONE 'UTC')::text
                 ELSE rpad((x AT TIME ZONE 'UTC')::text, 26, '0') END,
            ' ', 'T') || 'Z'
    WHEN x IS NOT NULL THEN exports.declined(x IS NULL)
END;

-- ---------------------------------------------------------------------------------------------
-- CSV

-- The formula guard: text starting with = + - @ tab or CR gets a leading apostrophe.
CREATE OR REPLACE FUNCTION exports.csv_guard(x text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN ascii(x) IN (61, 43, 45, 64, 9, 13) THEN '''' || x ELSE x END;

-- ---------------------------------------------------------------------------------------------
-- Markdown. A bullet starts with the line break that ends the previous line.

-- A bullet for a value whose text has no whitespace, < or line break (numbers, times...).
CREATE OR REPLACE FUNCTION exports.md_line(label text, value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN E'\n- **' || label || ':** ' || value;

-- The lines after a bullet's first, from the stripped value: each line break and the blanks
-- around it become one newline (so every line is stripped and blank lines are empty);
-- continuation lines that would open a block (heading, quote, list item, thematic break, setext
-- underline, table row, code fence, link reference definition, "1." / "1)") get a backslash;
-- non-empty continuation lines are indented by two spaces.
CREATE OR REPLACE FUNCTION exports.md_continued(stripped text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN regexp_replace(
    regexp_replace(
        regexp_replace(
            regexp_replace(
                stripped,
                exports.line_break_pattern(),
                E'\n', 'g'),
            E'\n(#|>|\\+|\\*|=|_|\\||:|~|`|\\[|-)', E'\n\\\\\\1', 'g'),
        E'\n([0-9]{1,9})([.)])', E'\n\\1\\\\\\2', 'g'),
    E'\n([^\n])', E'\n  \\1', 'g');

-- "- **Label:** value", as encoder._bullet writes it: (prefix + stripped value).rstrip(), "<"
-- as an entity, further lines by md_continued. Most values are one line with nothing to strip
-- and take the first branch: a few character tests.
CREATE OR REPLACE FUNCTION exports.md_bullet(label text, value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN strpos(value, '<') = 0 AND strpos(value, E'\n') = 0 AND strpos(value, E'\r') = 0
        AND NOT exports.py_padded(value) AND value <> ''
        THEN exports.md_line(label, value)
    WHEN exports.py_strip(replace(value, '<', '&lt;')) = '' THEN E'\n- **' || label || ':**'
    ELSE exports.md_line(label, exports.md_continued(exports.py_strip(replace(value, '<', '&lt;'))))
END;

-- True when a heading needs more than stripping: inline markup, "<", "&" or a line break.
CREATE OR REPLACE FUNCTION exports.md_heading_needs_work(anchor text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN anchor ~ E'\\\\|`|\\*|_|\\[|\\]|#|~|<|&|\r|\n';

-- The anchor as a heading's text (encoder._escape_heading): its lines are stripped and joined by
-- one space each, the whole is stripped, then inline markup gets a backslash ("&" only where it
-- would start an entity reference) and "<" becomes an entity.
CREATE OR REPLACE FUNCTION exports.md_heading_text(anchor text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN exports.md_heading_needs_work(anchor) THEN replace(
        regexp_replace(
            exports.py_strip(regexp_replace(anchor, exports.line_break_pattern(), ' ', 'g')),
            E'(\\\\|`|\\*|_|\\[|\\]|#|~|&(?=#?[0-9A-Za-z]+;))', E'\\\\\\1', 'g'),
        '<', '&lt;')
    ELSE exports.py_strip(anchor)
END;

-- "## " and the heading's text, right-stripped (no newline: the bullets start with theirs, and
-- the row's last column ends it). Most anchors need nothing: a few character tests.
CREATE OR REPLACE FUNCTION exports.md_heading(anchor text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN NOT exports.py_padded(anchor) AND NOT exports.md_heading_needs_work(anchor)
        AND anchor <> ''
        THEN '## ' || anchor
    ELSE rtrim('## ' || coalesce(exports.md_heading_text(anchor), ''), ' ')
END;

-- ---------------------------------------------------------------------------------------------
-- Authors: the raw authors_json text, read as services.worker.catalog._authors reads it. An
-- entry counts when it is an object whose name is a string that is not blank; names and roles
-- are stripped; a role that is not a non-blank string is left out. Stored order.

-- authors_json as jsonb when it is an array, else NULL. Declined when orjson and jsonb might
-- disagree: orjson accepts \u0000 (jsonb refuses it), refuses numbers beyond a double (jsonb
-- accepts them) and refuses nesting deeper than 1024 (jsonb does not). Conservative: a long
-- digit run, a three-digit exponent or many brackets are enough to decline.
CREATE OR REPLACE FUNCTION exports.authors_array(authors_json text) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
    WHEN strpos(authors_json, '\u0000') > 0
        OR authors_json ~ '[0-9]{100}|[eE][-+]?0*[0-9]{3}'
        OR (length(authors_json) > 1000
            AND length(authors_json)
                - length(replace(replace(authors_json, '[', ''), '{', '')) > 1000)
        THEN exports.declined(authors_json IS NULL)::jsonb
    WHEN NOT pg_input_is_valid(authors_json, 'jsonb') THEN NULL
    WHEN jsonb_typeof(authors_json::jsonb) = 'array' THEN authors_json::jsonb
END;

CREATE OR REPLACE FUNCTION exports.author_name(entry jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN exports.py_strip(entry->>'name');

CREATE OR REPLACE FUNCTION exports.is_author(entry jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN jsonb_typeof(entry->'name') = 'string' AND exports.author_name(entry) <> '';

CREATE OR REPLACE FUNCTION exports.author_role(entry jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN jsonb_typeof(entry->'role') = 'string' THEN nullif(exports.py_strip(entry->>'role'), '')
END;

-- "Name (role)", or just "Name".
CREATE OR REPLACE FUNCTION exports.author_text(entry jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN exports.author_name(entry) || coalesce(' (' || exports.author_role(entry) || ')', '');

CREATE OR REPLACE FUNCTION exports.author_json(entry jsonb) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN '{"name":' || exports.json_string(exports.author_name(entry))
    || coalesce(',"role":' || exports.json_string(exports.author_role(entry)), '') || '}';

-- The authors joined by separator, or NULL. One row, so the query joins it LATERAL (OFFSET 0
-- keeps it a subquery, which PostgreSQL can memoize per distinct authors_json: books of a
-- series usually share theirs).
CREATE OR REPLACE FUNCTION exports.authors_as_text(authors_json text, separator text)
RETURNS SETOF text
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN authors_json IS NOT NULL THEN (
        SELECT string_agg(exports.author_text(e.v), separator ORDER BY e.o)
        FROM jsonb_array_elements(exports.authors_array(authors_json)) WITH ORDINALITY e(v, o)
        WHERE exports.is_author(e.v)
    ) END
    OFFSET 0;
END;

-- The authors as a JSON array of {"name", "role"?} objects, or NULL.
CREATE OR REPLACE FUNCTION exports.authors_as_json(authors_json text) RETURNS SETOF text
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN authors_json IS NOT NULL THEN (
        SELECT '[' || string_agg(exports.author_json(e.v), ',' ORDER BY e.o) || ']'
        FROM jsonb_array_elements(exports.authors_array(authors_json)) WITH ORDINALITY e(v, o)
        WHERE exports.is_author(e.v)
    ) END
    OFFSET 0;
END;

-- ---------------------------------------------------------------------------------------------
-- Series' alternate titles and external ratings, as parallel arrays in export order (one row,
-- joined LATERAL like the authors; NULL when there are none).

CREATE OR REPLACE FUNCTION exports.alternate_titles_as_text(
    labels text[], titles text[], separator text
) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT string_agg(u.label || ': ' || u.title, separator ORDER BY u.i)
    FROM unnest(labels, titles) WITH ORDINALITY u(label, title, i);
END;

CREATE OR REPLACE FUNCTION exports.alternate_titles_as_json(labels text[], titles text[])
RETURNS SETOF text
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT '[' || string_agg(
        '{"label":' || exports.json_string(u.label) || ',"title":' || exports.json_string(u.title)
            || '}',
        ',' ORDER BY u.i) || ']'
    FROM unnest(labels, titles) WITH ORDINALITY u(label, title, i);
END;

-- "AniList: 85.5 (1200 votes)"; no parentheses when votes are unknown.
CREATE OR REPLACE FUNCTION exports.external_rating_text(
    source text, rating float8, votes integer
) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN source || coalesce(': ' || exports.float_text(rating), '') || CASE
    WHEN votes IS NULL THEN ''
    WHEN votes = 1 THEN ' (1 vote)'
    ELSE ' (' || votes::text || ' votes)'
END;

CREATE OR REPLACE FUNCTION exports.external_rating_json(
    source text, rating float8, votes integer
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN '{"source":' || exports.json_string(source)
    || coalesce(',"rating":' || exports.json_number(rating), '')
    || coalesce(',"votes":' || votes::text, '') || '}';

CREATE OR REPLACE FUNCTION exports.external_ratings_as_text(
    sources text[], ratings float8[], votes integer[], separator text
) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT string_agg(exports.external_rating_text(u.source, u.rating, u.votes), separator
                      ORDER BY u.i)
    FROM unnest(sources, ratings, votes) WITH ORDINALITY u(source, rating, votes, i);
END;

CREATE OR REPLACE FUNCTION exports.external_ratings_as_json(
    sources text[], ratings float8[], votes integer[]
) RETURNS SETOF text
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT '[' || string_agg(exports.external_rating_json(u.source, u.rating, u.votes), ','
                             ORDER BY u.i) || ']'
    FROM unnest(sources, ratings, votes) WITH ORDINALITY u(source, rating, votes, i);
END;
