// DEAR (Cin7 Core) sale -> Shopify fulfillment(s): one output per shipped DEAR fulfilment.
//
// The output is what the shopify.fulfillment destination takes: the order (order_id from the
// sale's ExternalID, else order_name), tracking (number, url, company; numbers when several
// parcels), notify_customer, and the shipped lines by SKU.
// Settings: notify_customer (default true).
// Lookup table (optional): carriers, DEAR carrier name -> Shopify tracking company.
function transform(sale, ctx) {
  const shipped = (sale.Fulfilments || []).filter((f) => {
    const ship = f.Ship || {};
    return (ship.Lines || []).some((l) => l.IsShipped) || ship.Status === "SHIPPED";
  });
  if (shipped.length === 0) {
    return ctx.skip("sale " + (sale.Order && sale.Order.SaleOrderNumber || sale.ID) + " has no shipped fulfilment yet");
  }
  const orderName = sale.CustomerReference || (sale.Order && sale.Order.SaleOrderNumber) || "";
  const notify = ctx.settings.notify_customer !== undefined ? Boolean(ctx.settings.notify_customer) : true;
  return shipped.map((f) => {
    const ship = f.Ship || {};
    const parcels = (ship.Lines || []).filter((l) => l.IsShipped !== false);
    const first = parcels[0] || {};
    const packed = ((f.Pack && f.Pack.Lines) || (f.Pick && f.Pick.Lines) || []);
    const bySku = {};
    for (const l of packed) {
      bySku[l.SKU] = (bySku[l.SKU] || 0) + Number(l.Quantity || 0);
    }
    ctx.log("fulfilment", f.FulfillmentNumber, "of", orderName, "tracking", first.TrackingNumber || "none");
    const numbers = parcels.map((p) => p.TrackingNumber).filter(Boolean);
    const tracking = {
      number: numbers[0] || null,
      url: first.TrackingURL || null,
      company: first.Carrier ? ctx.lookup("carriers", first.Carrier, first.Carrier) : null,
    };
    if (numbers.length > 1) {
      tracking.numbers = numbers;
    }
    return {
      order_name: orderName,
      order_id: sale.ExternalID || null,
      fulfilment_number: f.FulfillmentNumber,
      shipped_at: first.ShipmentDate ? ctx.parseDate(first.ShipmentDate) : null,
      notify_customer: notify,
      tracking: tracking,
      line_items: Object.keys(bySku).map((sku) => ({ sku: sku, quantity: bySku[sku] })),
    };
  });
}
