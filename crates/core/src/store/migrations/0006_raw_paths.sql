-- A file name need not be UTF-8 on Linux. `path` holds it for showing and searching (invalid
-- bytes as U+FFFD), which does not lead back to the file; `path_raw` keeps the OS's bytes for
-- such paths, so resume, retry and the watched-folder index find the file again. NULL when
-- `path` is exact (every earlier row, and every UTF-8 path).
ALTER TABLE uploads ADD COLUMN path_raw BLOB;
ALTER TABLE watch_index ADD COLUMN path_raw BLOB;
