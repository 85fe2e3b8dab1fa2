-- The subset of Codex's catalog that Data Exports reads (SPEC §2), for standalone use.
-- In production these tables are Codex's own; this product only reads them.
-- Every column beyond SPEC §2 is nullable, defaulted or generated.

CREATE TABLE IF NOT EXISTS libraries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    path text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    role text NOT NULL DEFAULT 'reader' CHECK (role IN ('reader', 'maintainer', 'admin')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS series (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    library_id uuid NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    path text NOT NULL DEFAULT '',
    name text NOT NULL,
    normalized_name text GENERATED ALWAYS AS (lower(name)) STORED,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS series_library_id_idx ON series (library_id);

CREATE TABLE IF NOT EXISTS series_metadata (
    series_id uuid PRIMARY KEY REFERENCES series(id) ON DELETE CASCADE,
    title text NOT NULL,
    title_sort text,
    summary text,
    publisher text,
    status text CHECK (status IN ('ongoing', 'ended', 'hiatus', 'abandoned', 'unknown')),
    language text,
    year integer,
    total_volume_count integer,
    total_chapter_count double precision,
    authors_json text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS books (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    series_id uuid NOT NULL REFERENCES series(id) ON DELETE CASCADE,
    library_id uuid NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    path text NOT NULL DEFAULT '',
    file_name text NOT NULL,
    file_size bigint NOT NULL DEFAULT 0,
    format text,
    page_count integer NOT NULL DEFAULT 0,
    deleted boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS books_series_id_idx ON books (series_id);

CREATE TABLE IF NOT EXISTS book_metadata (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    book_id uuid NOT NULL UNIQUE REFERENCES books(id) ON DELETE CASCADE,
    title text,
    number numeric,
    summary text,
    publisher text,
    language_iso text,
    year integer,
    authors_json text
);

CREATE TABLE IF NOT EXISTS genres (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS tags (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS series_genres (
    series_id uuid NOT NULL REFERENCES series(id) ON DELETE CASCADE,
    genre_id uuid NOT NULL REFERENCES genres(id) ON DELETE CASCADE,
    PRIMARY KEY (series_id, genre_id)
);
CREATE TABLE IF NOT EXISTS series_tags (
    series_id uuid NOT NULL REFERENCES series(id) ON DELETE CASCADE,
    tag_id uuid NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    PRIMARY KEY (series_id, tag_id)
);
CREATE TABLE IF NOT EXISTS book_genres (
    book_id uuid NOT NULL REFERENCES books(id) ON DELETE CASCADE,
    genre_id uuid NOT NULL REFERENCES genres(id) ON DELETE CASCADE,
    PRIMARY KEY (book_id, genre_id)
);
CREATE TABLE IF NOT EXISTS book_tags (
    book_id uuid NOT NULL REFERENCES books(id) ON DELETE CASCADE,
    tag_id uuid NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    PRIMARY KEY (book_id, tag_id)
);

CREATE TABLE IF NOT EXISTS series_alternate_titles (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    series_id uuid NOT NULL REFERENCES series(id) ON DELETE CASCADE,
    label text NOT NULL,
    title text NOT NULL
);
CREATE INDEX IF NOT EXISTS series_alternate_titles_series_idx ON series_alternate_titles (series_id);

CREATE TABLE IF NOT EXISTS collections (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    condition jsonb
);
CREATE TABLE IF NOT EXISTS collection_series (
    collection_id uuid NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    series_id uuid NOT NULL REFERENCES series(id) ON DELETE CASCADE,
    PRIMARY KEY (collection_id, series_id)
);
CREATE INDEX IF NOT EXISTS collection_series_series_idx ON collection_series (series_id);

CREATE TABLE IF NOT EXISTS read_lists (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL
);
CREATE TABLE IF NOT EXISTS read_list_books (
    read_list_id uuid NOT NULL REFERENCES read_lists(id) ON DELETE CASCADE,
    book_id uuid NOT NULL REFERENCES books(id) ON DELETE CASCADE,
    PRIMARY KEY (read_list_id, book_id)
);
CREATE INDEX IF NOT EXISTS read_list_books_book_idx ON read_list_books (book_id);

CREATE TABLE IF NOT EXISTS series_external_ratings (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    series_id uuid NOT NULL REFERENCES series(id) ON DELETE CASCADE,
    source_name text NOT NULL,
    rating numeric NOT NULL CHECK (rating >= 0 AND rating <= 100),
    vote_count integer
);
CREATE INDEX IF NOT EXISTS series_external_ratings_series_idx ON series_external_ratings (series_id);

CREATE TABLE IF NOT EXISTS user_series_ratings (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    series_id uuid NOT NULL REFERENCES series(id) ON DELETE CASCADE,
    rating integer NOT NULL CHECK (rating BETWEEN 1 AND 100),
    notes text,
    UNIQUE (user_id, series_id)
);
CREATE INDEX IF NOT EXISTS user_series_ratings_series_idx ON user_series_ratings (series_id);

CREATE TABLE IF NOT EXISTS read_progress (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    book_id uuid NOT NULL REFERENCES books(id) ON DELETE CASCADE,
    current_page integer NOT NULL DEFAULT 0,
    progress_percentage double precision,
    completed boolean NOT NULL DEFAULT false,
    completed_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, book_id)
);
CREATE INDEX IF NOT EXISTS read_progress_book_idx ON read_progress (book_id);

CREATE TABLE IF NOT EXISTS sharing_tags (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS series_sharing_tags (
    series_id uuid NOT NULL REFERENCES series(id) ON DELETE CASCADE,
    sharing_tag_id uuid NOT NULL REFERENCES sharing_tags(id) ON DELETE CASCADE,
    PRIMARY KEY (series_id, sharing_tag_id)
);
CREATE TABLE IF NOT EXISTS user_sharing_tags (
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    sharing_tag_id uuid NOT NULL REFERENCES sharing_tags(id) ON DELETE CASCADE,
    access_mode text NOT NULL CHECK (access_mode IN ('allow', 'deny')),
    PRIMARY KEY (user_id, sharing_tag_id)
);
CREATE TABLE IF NOT EXISTS access_groups (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS access_group_sharing_tags (
    access_group_id uuid NOT NULL REFERENCES access_groups(id) ON DELETE CASCADE,
    sharing_tag_id uuid NOT NULL REFERENCES sharing_tags(id) ON DELETE CASCADE,
    access_mode text NOT NULL CHECK (access_mode IN ('allow', 'deny')),
    PRIMARY KEY (access_group_id, sharing_tag_id)
);
CREATE TABLE IF NOT EXISTS user_access_groups (
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    access_group_id uuid NOT NULL REFERENCES access_groups(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, access_group_id)
);

-- This product's addition (Codex has none): no rows = every library readable.
CREATE TABLE IF NOT EXISTS user_library_access (
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    library_id uuid NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, library_id)
);
