// Shopify order -> generic sales order (JSON).
//
// Settings (stream settings, all optional):
//   warehouse      warehouse / location code to ship from (default "MAIN")
//   timezone       IANA time zone for order_date (default "UTC")
//   channel        sales channel name (default "shopify")
// Lookup tables (optional; values pass through unchanged when a table or key is missing):
//   shipping_methods   Shopify shipping line title -> carrier service code
//   sku_map            Shopify SKU -> SKU in the receiving system
function transform(order, ctx) {
  const s = ctx.settings;
  if (order.cancelled_at) {
    return ctx.skip("order " + order.name + " is cancelled");
  }
  const addr = (a) => a ? {
    name: [a.first_name, a.last_name].filter(Boolean).join(" "),
    company: a.company || null,
    line1: a.address1 || "",
    line2: a.address2 || null,
    city: a.city || "",
    region: a.province_code || a.province || null,
    postcode: a.zip || "",
    country: a.country_code || a.country || "",
    phone: a.phone || null,
  } : null;
  const shipping = (order.shipping_lines || [])[0];
  const lines = (order.line_items || []).map((li, i) => {
    const discount = (li.discount_allocations || [])
      .reduce((sum, d) => sum + Number(d.amount || 0), Number(li.total_discount || 0));
    const tax = (li.tax_lines || []).reduce((sum, t) => sum + Number(t.price || 0), 0);
    const gross = Number(li.price) * li.quantity;
    return {
      line: i + 1,
      sku: ctx.lookup("sku_map", li.sku || "", li.sku || String(li.variant_id)),
      name: li.name || li.title,
      quantity: li.quantity,
      unit_price: ctx.money(li.price),
      discount: ctx.money(discount),
      tax: ctx.money(tax),
      total: ctx.money(gross - discount),
    };
  });
  if (lines.length === 0) {
    return ctx.skip("order " + order.name + " has no line items");
  }
  const customer = order.customer || {};
  ctx.log("order", order.name, "with", lines.length, "lines");
  return {
    order_number: String(order.name || order.order_number).replace(/^#/, ""),
    external_id: String(order.id),
    channel: s.channel || "shopify",
    warehouse: s.warehouse || "MAIN",
    order_date: ctx.formatDate(order.created_at, "%Y-%m-%dT%H:%M:%S%:z", s.timezone || "UTC"),
    currency: order.currency,
    financial_status: order.financial_status || null,
    customer: {
      email: order.email || customer.email || null,
      name: [customer.first_name, customer.last_name].filter(Boolean).join(" ") || null,
      phone: order.phone || customer.phone || null,
    },
    billing_address: addr(order.billing_address),
    shipping_address: addr(order.shipping_address),
    shipping: shipping ? {
      method: shipping.title,
      service: ctx.lookup("shipping_methods", shipping.title, shipping.code || shipping.title),
      price: ctx.money(shipping.price),
    } : null,
    lines: lines,
    totals: {
      subtotal: ctx.money(order.subtotal_price),
      shipping: ctx.money(shipping ? shipping.price : 0),
      tax: ctx.money(order.total_tax || 0),
      discount: ctx.money(order.total_discounts || 0),
      total: ctx.money(order.total_price),
    },
    notes: order.note || null,
    tags: (order.tags || "").split(",").map((t) => t.trim()).filter(Boolean),
  };
}
