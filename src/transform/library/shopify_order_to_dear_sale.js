// Shopify order -> DEAR (Cin7 Core) sale, as the `dear.sale` destination takes it: the
// `POST /sale` fields, and the order (`POST /sale/order`) under `Order`.
//
// Settings (stream settings):
//   location          DEAR location to sell from (required; e.g. "Main Warehouse")
//   tax_rule          DEAR tax rule of taxed lines and of the sale (e.g. "20% (VAT on Income)");
//                     DEAR needs one on every line
//   tax_free_rule     DEAR tax rule of lines without tax (default: tax_rule)
//   customer          DEAR customer to sell to (e.g. "Shopify Customer"); the order's customer
//                     name when unset (DEAR finds the customer by that name)
//   price_tier        DEAR price tier (e.g. "Tier 1"); the customer's when unset
//   shipping_product  DEAR service product the shipping is charged as (e.g. "Shipping"); the
//                     Shopify shipping title when unset
//   timezone          IANA time zone of the sale date (default "UTC")
//   order_status      AUTHORISED (default) or DRAFT
// Lookup tables (optional; values pass through unchanged when a table or key is missing):
//   sku_map      Shopify SKU -> DEAR SKU
//   tax_rules    Shopify tax title (e.g. "VAT") -> DEAR tax rule (default: tax_rule)
//   carriers     Shopify shipping line title -> DEAR carrier (no carrier when missing)
function transform(order, ctx) {
  const s = ctx.settings;
  if (order.cancelled_at) {
    return ctx.skip("order " + order.name + " is cancelled");
  }
  if (!s.location) {
    throw new Error("set settings.location to the DEAR location to sell from (e.g. \"Main Warehouse\")");
  }
  // DEAR needs a tax rule on every line and charge.
  const taxRule = (taxLines) => {
    const taxed = (taxLines || []).find((t) => Number(t.price || 0) !== 0);
    const rule = taxed ? ctx.lookup("tax_rules", taxed.title || "", s.tax_rule || "") : (s.tax_free_rule || s.tax_rule || "");
    if (!rule) {
      throw new Error("set settings.tax_rule (and tax_free_rule, or the tax_rules lookup table) to DEAR tax rules");
    }
    return rule;
  };
  const customer = order.customer || {};
  const personName = (a) => a ? [a.first_name, a.last_name].filter(Boolean).join(" ") : "";
  const name = personName(customer) || personName(order.billing_address) || personName(order.shipping_address) || order.email || "";
  const address = (a) => a ? {
    Line1: a.address1 || "",
    Line2: a.address2 || "",
    City: a.city || "",
    State: a.province || "",
    Postcode: a.zip || "",
    Country: a.country || a.country_code || "",
  } : null;
  const lines = (order.line_items || []).map((li) => {
    const gross = Number(li.price) * li.quantity;
    const discount = (li.discount_allocations || [])
      .reduce((sum, d) => sum + Number(d.amount || 0), Number(li.total_discount || 0));
    const tax = (li.tax_lines || []).reduce((sum, t) => sum + Number(t.price || 0), 0);
    // DEAR's line discount is a percentage (two places), and it checks the line's total
    // against it: quantity x price less the discount.
    const percent = gross > 0 ? ctx.round(discount / gross * 100, 2) : 0;
    return {
      SKU: ctx.lookup("sku_map", li.sku || "", li.sku || String(li.variant_id)),
      Name: li.name || li.title,
      Quantity: li.quantity,
      Price: ctx.round(li.price, 4),
      Discount: percent,
      Tax: ctx.round(tax, 2),
      TaxRule: taxRule(li.tax_lines),
      Total: ctx.round(gross * (1 - percent / 100), 2),
    };
  });
  if (lines.length === 0) {
    return ctx.skip("order " + order.name + " has no line items");
  }
  const charges = (order.shipping_lines || []).map((sl) => {
    const price = Number(sl.discounted_price !== undefined && sl.discounted_price !== null ? sl.discounted_price : sl.price);
    const tax = (sl.tax_lines || []).reduce((sum, t) => sum + Number(t.price || 0), 0);
    return {
      Description: s.shipping_product || sl.title,
      Quantity: 1,
      Price: ctx.round(price, 4),
      Discount: 0,
      Tax: ctx.round(tax, 2),
      TaxRule: taxRule(sl.tax_lines),
      Total: ctx.round(price, 2),
      Comment: sl.title,
    };
  });
  const shipping = address(order.shipping_address);
  if (shipping) {
    shipping.Company = order.shipping_address.company || "";
    shipping.Contact = personName(order.shipping_address);
    shipping.ShipToOther = false;
  }
  const sale = {
    Customer: s.customer || name,
    Contact: name,
    Email: order.email || customer.email || "",
    Phone: order.phone || customer.phone || (order.billing_address || {}).phone || "",
    BillingAddress: address(order.billing_address),
    ShippingAddress: shipping,
    Location: s.location,
    CustomerReference: order.name,
    ExternalID: String(order.id),
    SaleOrderDate: ctx.formatDate(order.created_at, "%Y-%m-%d", s.timezone || "UTC"),
    TaxInclusive: Boolean(order.taxes_included),
    SkipQuote: true,
    Note: order.note || "",
    Order: {
      Status: s.order_status || "AUTHORISED",
      Memo: "Shopify order " + order.name,
      Lines: lines,
      AdditionalCharges: charges,
    },
  };
  if (s.tax_rule) {
    sale.TaxRule = s.tax_rule;
  }
  if (s.price_tier) {
    sale.PriceTier = s.price_tier;
  }
  const title = (order.shipping_lines || [])[0] ? order.shipping_lines[0].title : "";
  const carrier = title ? ctx.lookup("carriers", title, "") : "";
  if (carrier) {
    sale.Carrier = carrier;
  }
  ctx.log("order", order.name, "as a DEAR sale with", lines.length, "lines");
  return sale;
}
