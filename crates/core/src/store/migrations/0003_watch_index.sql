-- The watched-folder index: the version of each watched file that Dropship last uploaded, so a
-- restart uploads only what appeared or changed while it was not running. A row is written as
-- 'sending' just before its upload starts and becomes 'done' only after the engine reports the
-- file uploaded: a crash in between leaves a 'sending' row that the next catch-up settles
-- against the history instead of uploading the file twice.
CREATE TABLE watch_index (
    path            TEXT PRIMARY KEY,          -- the local file, absolute
    folder          TEXT NOT NULL,             -- the watched folder it was found in
    size            INTEGER NOT NULL,
    mtime_ns        INTEGER NOT NULL,          -- modification time, nanoseconds since the epoch
    content_sha256  TEXT,                      -- base64, as the engine sent it (composite for multipart)
    upload_id       TEXT,                      -- the history row of the upload of this version
    state           TEXT NOT NULL CHECK (state IN ('sending', 'done')),
    updated_at      TEXT NOT NULL              -- RFC 3339, UTC
) WITHOUT ROWID;

CREATE INDEX watch_index_by_folder ON watch_index (folder);
