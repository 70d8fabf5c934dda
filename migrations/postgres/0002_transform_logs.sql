-- What a transformation logged (ctx.log / log()) while it turned the event's record into its output.
ALTER TABLE events ADD COLUMN transform_logs jsonb;
