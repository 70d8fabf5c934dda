-- Where an event's record came from, when its source says: the file a file source read it from.
ALTER TABLE events ADD COLUMN origin TEXT;
