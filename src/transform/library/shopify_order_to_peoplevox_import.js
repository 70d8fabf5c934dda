// Shopify order -> Peoplevox import (what `peoplevox.import` takes): the order through the
// "Sales orders" template, then its lines through "Sales order items", in that order. The
// columns are those of Peoplevox's default templates (an item's price is SalePrice).
//
// Settings (all optional):
//   timezone       IANA time zone for CreatedDate (default "UTC")
//   channel        ChannelName (default "Shopify")
//   payment_method PaymentMethod, Peoplevox's number for it (default 1)
//   default_service ServiceType of an order without a shipping line (default "Standard")
// Lookup tables (optional; values pass through unchanged when a table or key is missing):
//   shipping_methods   Shopify shipping line title -> Peoplevox service type
//   sku_map            Shopify SKU -> Peoplevox item code
function transform(order, ctx) {
  const s = ctx.settings;
  const number = String(order.name || order.order_number || "").replace(/^#/, "");
  if (order.cancelled_at) {
    return ctx.skip("order " + (order.name || number) + " is cancelled");
  }
  const lines = (order.line_items || []).filter((li) => li.requires_shipping !== false && li.quantity > 0);
  if (lines.length === 0) {
    return ctx.skip("order " + (order.name || number) + " has nothing to ship");
  }
  const tz = s.timezone || "UTC";
  const ship = order.shipping_address || {};
  const bill = order.billing_address || ship;
  const customer = order.customer || {};
  const shipping = (order.shipping_lines || [])[0];
  const name = (a) => [a.first_name, a.last_name].filter(Boolean).join(" ");
  const salesOrder = {
    SalesOrderNumber: number,
    Customer: name(bill) || name(customer) || order.email || "",
    CustomerPurchaseOrderReferenceNumber: String(order.id),
    ShippingAddressLine1: ship.address1 || "",
    ShippingAddressLine2: ship.address2 || "",
    ShippingAddressCity: ship.city || "",
    ShippingAddressRegion: ship.province || "",
    ShippingAddressPostcode: ship.zip || "",
    ShippingAddressCountry: ship.country_code || ship.country || "",
    InvoiceAddressLine1: bill.address1 || "",
    InvoiceAddressLine2: bill.address2 || "",
    InvoiceAddressCity: bill.city || "",
    InvoiceAddressRegion: bill.province || "",
    InvoiceAddressPostcode: bill.zip || "",
    InvoiceAddressCountry: bill.country_code || bill.country || "",
    ShippingCost: ctx.money(shipping ? shipping.price : 0),
    Email: order.email || customer.email || "",
    ContactName: name(ship) || name(customer),
    TotalSale: ctx.money(order.total_price),
    Discount: ctx.money(order.total_discounts || 0),
    TaxPaid: ctx.money(order.total_tax || 0),
    CreatedDate: ctx.formatDate(order.created_at, "%Y-%m-%d %H:%M:%S", tz),
    PaymentMethod: s.payment_method !== undefined ? Number(s.payment_method) : 1,
    ServiceType: shipping ? ctx.lookup("shipping_methods", shipping.title, shipping.title) : (s.default_service || "Standard"),
    ChannelName: s.channel || "Shopify",
  };
  const items = lines.map((li, i) => ({
    SalesOrderNumber: number,
    ItemCode: ctx.lookup("sku_map", li.sku || "", li.sku || String(li.variant_id)),
    QuantityOrdered: li.quantity,
    Line: String(i + 1),
    Sequence: i + 1,
    SalePrice: ctx.money(li.price),
  }));
  ctx.log("order", number, "with", items.length, "lines");
  // One output holding both imports: a list would split into events delivered apart, and
  // the items must follow their order.
  return {
    imports: [
      { template: "Sales orders", rows: [salesOrder] },
      { template: "Sales order items", rows: items },
    ],
  };
}
