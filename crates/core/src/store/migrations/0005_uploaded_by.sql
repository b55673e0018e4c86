-- Who uploaded each file, as the backend named the signed-in person (`GET /api/v1/me`);
-- NULL for uploads made with a pasted token, or before sign-in existed.
ALTER TABLE uploads ADD COLUMN uploaded_by TEXT;
