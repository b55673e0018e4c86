-- Newest-first history lists read the time index backwards instead of sorting.
--
-- The history is listed `ORDER BY created_at DESC, rowid DESC`, and every file of one drop
-- shares its `created_at`. The DESC indexes of 0001 keep ties in rowid order *ascending*, so
-- SQLite had to sort the whole newest batch (10,000 rows for a 10,000-file drop) before it
-- could return the first page. Ascending indexes read backwards give exactly that order.
DROP INDEX IF EXISTS uploads_by_time;
DROP INDEX IF EXISTS uploads_by_status;
CREATE INDEX uploads_by_created ON uploads (created_at);
CREATE INDEX uploads_by_status_created ON uploads (status, created_at);
