// DEAR (Cin7 Core) stock row -> Shopify inventory level, as the `shopify.inventory` destination
// takes it: {"sku", "available"}. The Shopify location is the destination's `location_id`.
//
// The input is one `dear.stock` record: a `ref/productavailability` row (one product at one
// location, bin and batch), or a SKU's rows at one location added up (`sum_by_sku`, which a
// SKU kept in several bins or batches needs: Shopify takes one quantity per location). A row of
// one bin or batch that was not summed is refused, so a part never stands for the whole.
// `available` is DEAR's `Available` (on hand less allocated), rounded down to whole units and
// never below 0.
// Settings (stream settings, optional):
//   location   only this DEAR location's rows (its name, e.g. "Main Warehouse"); others give
//              no output
// Lookup table (optional; SKUs pass through unchanged when the table or key is missing):
//   sku_map    DEAR SKU -> Shopify SKU
function transform(row, ctx) {
  const s = ctx.settings;
  if (s.location && row.Location !== s.location) {
    return ctx.skip("stock of " + row.SKU + " at " + row.Location + ", not " + s.location);
  }
  if (!row.SKU) {
    return ctx.skip("a stock row without a SKU (product " + row.ID + ")");
  }
  // One bin's or batch's row is part of the location's quantity: set as the whole, the last
  // row read would win. Summed rows (`Rows`) and rows of a location without bins are whole.
  if (row.Rows === undefined && (row.Bin || row.Batch)) {
    throw new Error("stock of " + row.SKU + " at " + row.Location + " is one bin or batch (" +
      (row.Bin || row.Batch) + "), not the location's whole quantity: set `sum_by_sku` on the dear.stock source");
  }
  const available = Math.floor(Number(row.Available || 0) + 1e-9);
  return {
    sku: ctx.lookup("sku_map", row.SKU, row.SKU),
    available: available > 0 ? available : 0,
  };
}
