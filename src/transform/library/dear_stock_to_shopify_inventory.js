// DEAR (Cin7 Core) stock row -> Shopify inventory level, as the `shopify.inventory` destination
// takes it: {"sku", "available"}. The Shopify location is the destination's `location_id`.
//
// The input is one `dear.stock` record: a `ref/productavailability` row (one product at one
// location, bin and batch), or a SKU's rows at one location added up (`sum_by_sku`, which a
// SKU kept in several bins or batches needs: Shopify takes one quantity per location).
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
  const available = Math.floor(Number(row.Available || 0) + 1e-9);
  return {
    sku: ctx.lookup("sku_map", row.SKU, row.SKU),
    available: available > 0 ? available : 0,
  };
}
