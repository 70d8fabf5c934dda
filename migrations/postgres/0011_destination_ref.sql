-- The id the destination system gave what a delivery created or changed (a fulfilment, a sale).
ALTER TABLE events ADD COLUMN destination_ref text;
