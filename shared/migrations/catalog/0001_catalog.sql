-- The catalog for standalone use: Codex 2.2.0's own tables on PostgreSQL, in Codex's shape (SPEC §2).
--
-- Against a real Codex database this file is never applied: Codex's migrations own these tables and
-- `codex-exports migrate` (without --catalog) creates only the `exports` schema. The tables, columns,
-- types, NOT NULLs, defaults, unique indexes and foreign keys below are those of Codex 2.2.0 as its
-- SeaORM migrations leave them (the reference is ../shared/codex/schema.sql; a test compares the two
-- catalogs column by column). Like Codex, no column has a generated id or timestamp default: every
-- writer supplies them (shared/codex_tables.py fills what Codex fills).

CREATE TABLE "libraries" (
    "id" uuid NOT NULL PRIMARY KEY,
    "name" varchar NOT NULL,
    "path" varchar NOT NULL,
    "series_strategy" varchar NOT NULL DEFAULT 'series_volume',
    "series_config" json,
    "book_strategy" varchar NOT NULL DEFAULT 'filename',
    "book_config" json,
    "number_strategy" varchar NOT NULL DEFAULT 'file_order',
    "number_config" json,
    "scanning_config" varchar,
    "default_reading_direction" varchar NOT NULL DEFAULT 'LEFT_TO_RIGHT',
    "allowed_formats" varchar,
    "excluded_patterns" text,
    "created_at" timestamp with time zone NOT NULL,
    "updated_at" timestamp with time zone NOT NULL,
    "last_scanned_at" timestamp with time zone,
    "title_preprocessing_rules" text,                       -- m20260131_000040
    "auto_match_conditions" text                            -- m20260131_000040
);

CREATE TABLE "users" (
    "id" uuid NOT NULL PRIMARY KEY,
    "username" text NOT NULL UNIQUE,
    "email" text NOT NULL UNIQUE,
    "password_hash" text NOT NULL,
    "role" varchar(20) NOT NULL DEFAULT 'reader',
    "is_active" bool NOT NULL DEFAULT TRUE,
    "email_verified" bool NOT NULL DEFAULT FALSE,
    "permissions" json NOT NULL DEFAULT '[]',
    "created_at" timestamp with time zone NOT NULL,
    "updated_at" timestamp with time zone NOT NULL,
    "last_login_at" timestamp with time zone
);

CREATE TABLE "series" (
    "id" uuid NOT NULL PRIMARY KEY,
    "library_id" uuid NOT NULL,
    "fingerprint" varchar(64),
    "path" text NOT NULL,
    "name" text NOT NULL,
    "normalized_name" text NOT NULL,
    "created_at" timestamp with time zone NOT NULL,
    "updated_at" timestamp with time zone NOT NULL,
    CONSTRAINT "fk_series_library_id" FOREIGN KEY ("library_id") REFERENCES "libraries" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);
CREATE UNIQUE INDEX "idx_series_library_path" ON "series" ("library_id", "path");

CREATE TABLE "books" (
    "id" uuid NOT NULL PRIMARY KEY,
    "series_id" uuid NOT NULL,
    "library_id" uuid NOT NULL,
    "path" varchar CONSTRAINT "books_file_path_not_null" NOT NULL, -- was file_path; renamed by m20260521_000089
                                                            -- (PostgreSQL 18+ keeps the NOT NULL constraint's old name)
    "file_name" varchar NOT NULL,
    "file_size" bigint NOT NULL,
    "file_hash" varchar NOT NULL,
    "partial_hash" varchar NOT NULL DEFAULT '',
    "format" varchar NOT NULL,
    "page_count" integer NOT NULL,
    "deleted" bool NOT NULL DEFAULT FALSE,
    "analyzed" bool NOT NULL DEFAULT FALSE,
    "analysis_error" varchar,
    "modified_at" timestamp with time zone NOT NULL,
    "created_at" timestamp with time zone NOT NULL,
    "updated_at" timestamp with time zone NOT NULL,
    "thumbnail_path" varchar,
    "thumbnail_generated_at" timestamp with time zone,
    "analysis_errors" text,                                 -- m20260123_000034
    "koreader_hash" varchar NULL,                           -- m20260309_000060
    "epub_positions" text,                                  -- m20260315_000062
    "epub_spine_items" text,                                -- m20260316_000063
    CONSTRAINT "fk_books_series_id" FOREIGN KEY ("series_id") REFERENCES "series" ("id") ON DELETE CASCADE ON UPDATE NO ACTION,
    CONSTRAINT "fk_books_library_id" FOREIGN KEY ("library_id") REFERENCES "libraries" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);
CREATE UNIQUE INDEX "idx_books_library_path_unique" ON "books" ("library_id", "path");

CREATE TABLE "series_metadata" (
    "series_id" uuid NOT NULL PRIMARY KEY,
    "title" varchar(500) NOT NULL,
    "title_sort" varchar(500),
    "summary" text,
    "publisher" varchar(255),
    "imprint" varchar(255),
    "status" varchar(20) DEFAULT 'ongoing',
    "age_rating" integer,
    "language" varchar(10),
    "reading_direction" varchar(10),
    "year" integer,
    "custom_metadata" text,
    "title_lock" bool NOT NULL DEFAULT FALSE,
    "title_sort_lock" bool NOT NULL DEFAULT FALSE,
    "summary_lock" bool NOT NULL DEFAULT FALSE,
    "publisher_lock" bool NOT NULL DEFAULT FALSE,
    "imprint_lock" bool NOT NULL DEFAULT FALSE,
    "status_lock" bool NOT NULL DEFAULT FALSE,
    "age_rating_lock" bool NOT NULL DEFAULT FALSE,
    "language_lock" bool NOT NULL DEFAULT FALSE,
    "reading_direction_lock" bool NOT NULL DEFAULT FALSE,
    "year_lock" bool NOT NULL DEFAULT FALSE,
    "genres_lock" bool NOT NULL DEFAULT FALSE,
    "tags_lock" bool NOT NULL DEFAULT FALSE,
    "custom_metadata_lock" bool NOT NULL DEFAULT FALSE,
    "created_at" timestamp with time zone NOT NULL,
    "updated_at" timestamp with time zone NOT NULL,
    "cover_lock" bool NOT NULL DEFAULT FALSE,               -- m20260201_000042
    "authors_json" text,                                    -- m20260215_000056
    "authors_json_lock" bool NOT NULL DEFAULT FALSE,        -- m20260215_000056
    "alternate_titles_lock" bool NOT NULL DEFAULT FALSE,    -- m20260217_000057
    "search_title" varchar(500) NOT NULL DEFAULT '',        -- m20260222_000059
    "total_volume_count" integer,                           -- m20260502_000067
    "total_volume_count_lock" bool NOT NULL DEFAULT FALSE,  -- m20260502_000067
    "total_chapter_count" real,                             -- m20260502_000067
    "total_chapter_count_lock" bool NOT NULL DEFAULT FALSE, -- m20260502_000067
    CONSTRAINT "fk_series_metadata_series_id" FOREIGN KEY ("series_id") REFERENCES "series" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);

CREATE TABLE "book_metadata" (
    "id" uuid NOT NULL PRIMARY KEY,
    "book_id" uuid NOT NULL UNIQUE,
    "title" varchar,
    "title_sort" varchar,
    "number" decimal,
    "summary" text,
    "publisher" varchar,
    "imprint" varchar,
    "genre" varchar,
    "language_iso" varchar,
    "format_detail" varchar,
    "black_and_white" bool,
    "manga" bool,
    "year" integer,
    "month" integer,
    "day" integer,
    "volume" integer,
    "count" integer,
    "isbns" varchar,
    "title_lock" bool NOT NULL DEFAULT FALSE,
    "title_sort_lock" bool NOT NULL DEFAULT FALSE,
    "number_lock" bool NOT NULL DEFAULT FALSE,
    "summary_lock" bool NOT NULL DEFAULT FALSE,
    "publisher_lock" bool NOT NULL DEFAULT FALSE,
    "imprint_lock" bool NOT NULL DEFAULT FALSE,
    "genre_lock" bool NOT NULL DEFAULT FALSE,
    "language_iso_lock" bool NOT NULL DEFAULT FALSE,
    "format_detail_lock" bool NOT NULL DEFAULT FALSE,
    "black_and_white_lock" bool NOT NULL DEFAULT FALSE,
    "manga_lock" bool NOT NULL DEFAULT FALSE,
    "year_lock" bool NOT NULL DEFAULT FALSE,
    "month_lock" bool NOT NULL DEFAULT FALSE,
    "day_lock" bool NOT NULL DEFAULT FALSE,
    "volume_lock" bool NOT NULL DEFAULT FALSE,
    "count_lock" bool NOT NULL DEFAULT FALSE,
    "isbns_lock" bool NOT NULL DEFAULT FALSE,
    "created_at" timestamp with time zone NOT NULL,
    "updated_at" timestamp with time zone NOT NULL,
    "book_type" varchar(50),                                -- m20260202_000044 (this and the 24 below)
    "subtitle" varchar(500),
    "authors_json" text,
    "translator" varchar(255),
    "edition" varchar(100),
    "original_title" varchar(500),
    "original_year" integer,
    "series_position" decimal,
    "series_total" integer,
    "subjects" text,
    "awards_json" text,
    "custom_metadata" text,
    "book_type_lock" bool NOT NULL DEFAULT FALSE,
    "subtitle_lock" bool NOT NULL DEFAULT FALSE,
    "authors_json_lock" bool NOT NULL DEFAULT FALSE,
    "translator_lock" bool NOT NULL DEFAULT FALSE,
    "edition_lock" bool NOT NULL DEFAULT FALSE,
    "original_title_lock" bool NOT NULL DEFAULT FALSE,
    "original_year_lock" bool NOT NULL DEFAULT FALSE,
    "series_position_lock" bool NOT NULL DEFAULT FALSE,
    "series_total_lock" bool NOT NULL DEFAULT FALSE,
    "subjects_lock" bool NOT NULL DEFAULT FALSE,
    "awards_json_lock" bool NOT NULL DEFAULT FALSE,
    "custom_metadata_lock" bool NOT NULL DEFAULT FALSE,
    "cover_lock" bool NOT NULL DEFAULT FALSE,
    "search_title" varchar NOT NULL DEFAULT '',             -- m20260222_000059
    "chapter" real,                                         -- m20260503_000069
    "chapter_lock" bool NOT NULL DEFAULT FALSE,             -- m20260503_000069
    CONSTRAINT "fk_book_metadata_book_id" FOREIGN KEY ("book_id") REFERENCES "books" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);

CREATE TABLE "genres" (
    "id" uuid NOT NULL PRIMARY KEY,
    "name" varchar(100) NOT NULL UNIQUE,
    "normalized_name" varchar(100) NOT NULL UNIQUE,
    "created_at" timestamp with time zone NOT NULL
);

CREATE TABLE "tags" (
    "id" uuid NOT NULL PRIMARY KEY,
    "name" varchar(100) NOT NULL UNIQUE,
    "normalized_name" varchar(100) NOT NULL UNIQUE,
    "created_at" timestamp with time zone NOT NULL
);

CREATE TABLE "series_genres" (
    "series_id" uuid NOT NULL,
    "genre_id" uuid NOT NULL,
    PRIMARY KEY ("series_id", "genre_id"),
    CONSTRAINT "fk_series_genres_series_id" FOREIGN KEY ("series_id") REFERENCES "series" ("id") ON DELETE CASCADE ON UPDATE NO ACTION,
    CONSTRAINT "fk_series_genres_genre_id" FOREIGN KEY ("genre_id") REFERENCES "genres" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);

CREATE TABLE "series_tags" (
    "series_id" uuid NOT NULL,
    "tag_id" uuid NOT NULL,
    PRIMARY KEY ("series_id", "tag_id"),
    CONSTRAINT "fk_series_tags_series_id" FOREIGN KEY ("series_id") REFERENCES "series" ("id") ON DELETE CASCADE ON UPDATE NO ACTION,
    CONSTRAINT "fk_series_tags_tag_id" FOREIGN KEY ("tag_id") REFERENCES "tags" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);

CREATE TABLE "book_genres" (
    "book_id" uuid NOT NULL,
    "genre_id" uuid NOT NULL,
    PRIMARY KEY ("book_id", "genre_id"),
    CONSTRAINT "fk_book_genres_book_id" FOREIGN KEY ("book_id") REFERENCES "books" ("id") ON DELETE CASCADE ON UPDATE NO ACTION,
    CONSTRAINT "fk_book_genres_genre_id" FOREIGN KEY ("genre_id") REFERENCES "genres" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);

CREATE TABLE "book_tags" (
    "book_id" uuid NOT NULL,
    "tag_id" uuid NOT NULL,
    PRIMARY KEY ("book_id", "tag_id"),
    CONSTRAINT "fk_book_tags_book_id" FOREIGN KEY ("book_id") REFERENCES "books" ("id") ON DELETE CASCADE ON UPDATE NO ACTION,
    CONSTRAINT "fk_book_tags_tag_id" FOREIGN KEY ("tag_id") REFERENCES "tags" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);

CREATE TABLE "series_alternate_titles" (
    "id" uuid NOT NULL PRIMARY KEY,
    "series_id" uuid NOT NULL,
    "label" varchar(100) NOT NULL,
    "title" varchar(500) NOT NULL,
    "created_at" timestamp with time zone NOT NULL,
    "updated_at" timestamp with time zone NOT NULL,
    CONSTRAINT "fk_series_alternate_titles_series_id" FOREIGN KEY ("series_id") REFERENCES "series" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);
CREATE UNIQUE INDEX "idx_series_alternate_titles_unique" ON "series_alternate_titles" ("series_id", "label");

CREATE TABLE "series_external_ratings" (
    "id" uuid NOT NULL PRIMARY KEY,
    "series_id" uuid NOT NULL,
    "source_name" varchar(50) NOT NULL,
    "rating" decimal NOT NULL,
    "vote_count" integer,
    "fetched_at" timestamp with time zone NOT NULL,
    "created_at" timestamp with time zone NOT NULL,
    "updated_at" timestamp with time zone NOT NULL,
    CONSTRAINT "fk_series_external_ratings_series_id" FOREIGN KEY ("series_id") REFERENCES "series" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);
CREATE UNIQUE INDEX "idx_series_external_ratings_unique" ON "series_external_ratings" ("series_id", "source_name");

CREATE TABLE "user_series_ratings" (
    "id" uuid NOT NULL PRIMARY KEY,
    "user_id" uuid NOT NULL,
    "series_id" uuid NOT NULL,
    "rating" integer NOT NULL,
    "notes" text,
    "created_at" timestamp with time zone NOT NULL,
    "updated_at" timestamp with time zone NOT NULL,
    CONSTRAINT "fk_user_series_ratings_user_id" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE CASCADE ON UPDATE NO ACTION,
    CONSTRAINT "fk_user_series_ratings_series_id" FOREIGN KEY ("series_id") REFERENCES "series" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);
CREATE UNIQUE INDEX "idx_user_series_ratings_unique" ON "user_series_ratings" ("user_id", "series_id");

CREATE TABLE "read_progress" (
    "id" uuid NOT NULL PRIMARY KEY,
    "user_id" uuid NOT NULL,
    "book_id" uuid NOT NULL,
    "current_page" integer NOT NULL,
    "progress_percentage" double precision,
    "completed" bool NOT NULL,
    "started_at" timestamp with time zone NOT NULL,
    "updated_at" timestamp with time zone NOT NULL,
    "completed_at" timestamp with time zone,
    "r2_progression" text,                                  -- m20260314_000061
    CONSTRAINT "fk_read_progress_user_id" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE CASCADE ON UPDATE NO ACTION,
    CONSTRAINT "fk_read_progress_book_id" FOREIGN KEY ("book_id") REFERENCES "books" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);
CREATE UNIQUE INDEX "idx_read_progress_user_book_unique" ON "read_progress" ("user_id", "book_id");

CREATE TABLE "sharing_tags" (
    "id" uuid NOT NULL PRIMARY KEY,
    "name" varchar(100) NOT NULL UNIQUE,
    "normalized_name" varchar(100) NOT NULL UNIQUE,
    "description" text,
    "created_at" timestamp with time zone NOT NULL,
    "updated_at" timestamp with time zone NOT NULL
);

CREATE TABLE "series_sharing_tags" (
    "series_id" uuid NOT NULL,
    "sharing_tag_id" uuid NOT NULL,
    PRIMARY KEY ("series_id", "sharing_tag_id"),
    CONSTRAINT "fk_series_sharing_tags_series_id" FOREIGN KEY ("series_id") REFERENCES "series" ("id") ON DELETE CASCADE ON UPDATE NO ACTION,
    CONSTRAINT "fk_series_sharing_tags_sharing_tag_id" FOREIGN KEY ("sharing_tag_id") REFERENCES "sharing_tags" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);

CREATE TABLE "user_sharing_tags" (
    "id" uuid NOT NULL PRIMARY KEY,
    "user_id" uuid NOT NULL,
    "sharing_tag_id" uuid NOT NULL,
    "access_mode" varchar(10) NOT NULL DEFAULT 'allow',
    "created_at" timestamp with time zone NOT NULL,
    CONSTRAINT "fk_user_sharing_tags_user_id" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE CASCADE ON UPDATE NO ACTION,
    CONSTRAINT "fk_user_sharing_tags_sharing_tag_id" FOREIGN KEY ("sharing_tag_id") REFERENCES "sharing_tags" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);
CREATE UNIQUE INDEX "idx_user_sharing_tags_user_tag" ON "user_sharing_tags" ("user_id", "sharing_tag_id");

CREATE TABLE "access_groups" (
    "id" uuid NOT NULL PRIMARY KEY,
    "name" varchar(100) NOT NULL UNIQUE,
    "description" text,
    "created_at" timestamp with time zone NOT NULL,
    "updated_at" timestamp with time zone NOT NULL
);

CREATE TABLE "user_access_groups" (
    "id" uuid NOT NULL PRIMARY KEY,
    "user_id" uuid NOT NULL,
    "access_group_id" uuid NOT NULL,
    "source" varchar(10) NOT NULL DEFAULT 'manual',
    "created_at" timestamp with time zone NOT NULL,
    CONSTRAINT "fk_user_access_groups_user_id" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE CASCADE ON UPDATE NO ACTION,
    CONSTRAINT "fk_user_access_groups_access_group_id" FOREIGN KEY ("access_group_id") REFERENCES "access_groups" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);
CREATE UNIQUE INDEX "idx_user_access_groups_user_group" ON "user_access_groups" ("user_id", "access_group_id");

CREATE TABLE "access_group_sharing_tags" (
    "id" uuid NOT NULL PRIMARY KEY,
    "access_group_id" uuid NOT NULL,
    "sharing_tag_id" uuid NOT NULL,
    "access_mode" varchar(10) NOT NULL,
    "created_at" timestamp with time zone NOT NULL,
    CONSTRAINT "fk_access_group_sharing_tags_group_id" FOREIGN KEY ("access_group_id") REFERENCES "access_groups" ("id") ON DELETE CASCADE ON UPDATE NO ACTION,
    CONSTRAINT "fk_access_group_sharing_tags_tag_id" FOREIGN KEY ("sharing_tag_id") REFERENCES "sharing_tags" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);
CREATE UNIQUE INDEX "idx_access_group_sharing_tags_group_tag" ON "access_group_sharing_tags" ("access_group_id", "sharing_tag_id");

CREATE TABLE "collections" (
    "id" uuid NOT NULL PRIMARY KEY,
    "name" varchar(255) NOT NULL UNIQUE,
    "normalized_name" varchar(255) NOT NULL UNIQUE,
    "ordered" bool NOT NULL DEFAULT FALSE,
    "created_at" timestamp with time zone NOT NULL,
    "updated_at" timestamp with time zone NOT NULL,
    "summary" text,                                         -- m20260714_000101
    "condition" jsonb                                       -- m20260729_000102
);

CREATE TABLE "collection_series" (
    "id" uuid NOT NULL PRIMARY KEY,
    "collection_id" uuid NOT NULL,
    "series_id" uuid NOT NULL,
    "position" integer NOT NULL DEFAULT 0,
    "created_at" timestamp with time zone NOT NULL,
    CONSTRAINT "fk_collection_series_collection_id" FOREIGN KEY ("collection_id") REFERENCES "collections" ("id") ON DELETE CASCADE ON UPDATE NO ACTION,
    CONSTRAINT "fk_collection_series_series_id" FOREIGN KEY ("series_id") REFERENCES "series" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);
CREATE UNIQUE INDEX "idx_collection_series_unique" ON "collection_series" ("collection_id", "series_id");

CREATE TABLE "read_lists" (
    "id" uuid NOT NULL PRIMARY KEY,
    "name" varchar(255) NOT NULL UNIQUE,
    "normalized_name" varchar(255) NOT NULL UNIQUE,
    "summary" text,
    "ordered" bool NOT NULL DEFAULT TRUE,
    "created_at" timestamp with time zone NOT NULL,
    "updated_at" timestamp with time zone NOT NULL
);

CREATE TABLE "read_list_books" (
    "id" uuid NOT NULL PRIMARY KEY,
    "read_list_id" uuid NOT NULL,
    "book_id" uuid NOT NULL,
    "position" integer NOT NULL DEFAULT 0,
    "created_at" timestamp with time zone NOT NULL,
    CONSTRAINT "fk_read_list_books_read_list_id" FOREIGN KEY ("read_list_id") REFERENCES "read_lists" ("id") ON DELETE CASCADE ON UPDATE NO ACTION,
    CONSTRAINT "fk_read_list_books_book_id" FOREIGN KEY ("book_id") REFERENCES "books" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);
CREATE UNIQUE INDEX "idx_read_list_books_unique" ON "read_list_books" ("read_list_id", "book_id");

-- m20260103_000017_create_api_keys.rs: Codex's API keys (read by the product for X-API-Key auth).
CREATE TABLE "api_keys" (
    "id" uuid NOT NULL PRIMARY KEY,
    "user_id" uuid NOT NULL,
    "name" varchar NOT NULL,
    "key_hash" varchar(255) NOT NULL UNIQUE,
    "key_prefix" varchar(32) NOT NULL,
    "permissions" json NOT NULL,
    "is_active" bool NOT NULL DEFAULT TRUE,
    "expires_at" timestamp with time zone,
    "last_used_at" timestamp with time zone,
    "created_at" timestamp with time zone NOT NULL,
    "updated_at" timestamp with time zone NOT NULL,
    CONSTRAINT "fk_api_keys_user_id" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE CASCADE ON UPDATE NO ACTION
);

-- Plain b-tree indexes on the columns the exports join and filter on. Codex's migrations create
-- indexes like these (m20260121_000031, m20260122_000032, m20260520_000088); their exact set is not
-- part of the shape compared above, so the names here are this product's own.
CREATE INDEX "idx_x_series_library_id" ON "series" ("library_id");
CREATE INDEX "idx_x_books_series_id" ON "books" ("series_id");
CREATE INDEX "idx_x_books_library_id" ON "books" ("library_id");
CREATE INDEX "idx_x_read_progress_book_id" ON "read_progress" ("book_id");
CREATE INDEX "idx_x_user_series_ratings_series_id" ON "user_series_ratings" ("series_id");
CREATE INDEX "idx_x_collection_series_series_id" ON "collection_series" ("series_id");
CREATE INDEX "idx_x_read_list_books_book_id" ON "read_list_books" ("book_id");
CREATE INDEX "idx_x_api_keys_key_prefix" ON "api_keys" ("key_prefix");
