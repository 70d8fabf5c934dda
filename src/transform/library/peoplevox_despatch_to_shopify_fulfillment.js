// Peoplevox despatch callback -> Shopify fulfillment (what `shopify.fulfillment` takes).
//
// The record is a `peoplevox.webhook` callback's parameters for a despatch or tracking event
// (TrackingNumberReceived, DespatchPackageTrackingNumberReceived, DespatchPackageDespatched),
// by the source's default names: SalesOrderNumber, TrackingNumber, Carrier, Service.
// Settings (all optional):
//   order_prefix      put before the sales order number when it lacks it (default "#")
//   notify_customer   whether Shopify e-mails the customer (default true)
// Lookup table (optional): carriers
//   <Peoplevox carrier>        -> the tracking company Shopify knows (e.g. "DPD UK")
//   <Peoplevox carrier>.url    -> the carrier's tracking URL, `{number}` standing for the number
function transform(despatch, ctx) {
  const s = ctx.settings;
  const text = (v) => (v === null || v === undefined ? "" : String(v).trim());
  const order = text(despatch.SalesOrderNumber || despatch.so);
  if (!order) {
    throw new Error("the despatch names no SalesOrderNumber: subscribe with it among the callback fields");
  }
  const number = text(despatch.TrackingNumber || despatch.tn);
  if (!number) {
    return ctx.skip("despatch " + (text(despatch.DespatchNumber) || "of order " + order) + " has no tracking number yet");
  }
  const prefix = s.order_prefix === undefined || s.order_prefix === null ? "#" : String(s.order_prefix);
  const carrier = text(despatch.Carrier || despatch.carrier);
  const url = carrier ? ctx.lookup("carriers", carrier + ".url", null) : null;
  ctx.log("despatch", text(despatch.DespatchNumber) || "-", "of order", order, "tracking", number);
  return {
    order_name: order.startsWith(prefix) ? order : prefix + order,
    tracking: {
      number: number,
      company: carrier ? ctx.lookup("carriers", carrier, carrier) : null,
      url: url ? url.split("{number}").join(encodeURIComponent(number)) : null,
    },
    notify_customer: s.notify_customer !== undefined ? Boolean(s.notify_customer) : true,
  };
}
