-- The `display` a client sent for a member (RFC 7643 §4.2 `members.display`), returned
-- as sent; NULL when none was sent. It lives and ends with the membership.
ALTER TABLE group_members ADD COLUMN display TEXT;
