-- The history list: newest first without a sort, and substring search without a full scan.
--
-- The history is listed `ORDER BY created_at DESC, rowid DESC`, and every file of one drop
-- shares its `created_at`. The DESC indexes of 0001 keep ties in rowid order *ascending*, so
-- SQLite had to sort the whole newest batch (10,000 rows for a 10,000-file drop) before it
-- could return the first page. Ascending indexes read backwards give exactly that order.
DROP INDEX IF EXISTS uploads_by_time;
DROP INDEX IF EXISTS uploads_by_status;
CREATE INDEX uploads_by_created ON uploads (created_at);
CREATE INDEX uploads_by_status_created ON uploads (status, created_at);

-- Substring search without reading every row. `LIKE '%term%'` has to look at every upload
-- when few match (one file by name among 100,000 took 30–80 ms); a trigram index finds those
-- few directly. It indexes the three columns the search looks at, reads them from `uploads`
-- (external content: nothing stored twice) and follows every change through the triggers.
CREATE VIRTUAL TABLE uploads_search USING fts5(
    file_name, path, key,
    content = 'uploads', content_rowid = 'rowid',
    tokenize = 'trigram'
);

CREATE TRIGGER uploads_search_insert AFTER INSERT ON uploads BEGIN
    INSERT INTO uploads_search (rowid, file_name, path, key) VALUES (new.rowid, new.file_name, new.path, new.key);
END;

CREATE TRIGGER uploads_search_delete AFTER DELETE ON uploads BEGIN
    INSERT INTO uploads_search (uploads_search, rowid, file_name, path, key)
        VALUES ('delete', old.rowid, old.file_name, old.path, old.key);
END;

CREATE TRIGGER uploads_search_update AFTER UPDATE OF file_name, path, key ON uploads BEGIN
    INSERT INTO uploads_search (uploads_search, rowid, file_name, path, key)
        VALUES ('delete', old.rowid, old.file_name, old.path, old.key);
    INSERT INTO uploads_search (rowid, file_name, path, key) VALUES (new.rowid, new.file_name, new.path, new.key);
END;

-- The uploads already in the history.
INSERT INTO uploads_search (uploads_search) VALUES ('rebuild');
