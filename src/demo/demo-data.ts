// The demo database's tables: small enough to load in well under a second inside PGlite, varied
// enough (integers, text, numeric, timestamps, booleans, NULLs, a view) to show CSV and Parquet.
export const DEMO_TABLES = ["customers", "orders", "revenue_by_region (a view)"] as const;

export const DEMO_SQL = `
CREATE TABLE customers (
  id integer PRIMARY KEY,
  name text NOT NULL,
  region text NOT NULL,
  signed_up date NOT NULL,
  vip boolean NOT NULL
);
INSERT INTO customers
SELECT g,
       'customer ' || g,
       (ARRAY['eu', 'us', 'apac'])[1 + g % 3],
       date '2025-01-01' + (g * 3 % 365),
       g % 17 = 0
FROM generate_series(1, 200) g;

CREATE TABLE orders (
  id bigint PRIMARY KEY,
  customer_id integer NOT NULL REFERENCES customers (id),
  amount numeric(10, 2) NOT NULL,
  status text NOT NULL,
  ordered_at timestamptz NOT NULL,
  note text
);
INSERT INTO orders
SELECT g,
       1 + g % 200,
       round(((g * 7919) % 100000) / 100.0, 2),
       (ARRAY['open', 'shipped', 'delivered', 'returned'])[1 + g % 4],
       timestamptz '2026-01-01 00:00:00+00' + g * interval '17 minutes',
       CASE WHEN g % 10 = 0 THEN 'gift, "wrapped"' END
FROM generate_series(1, 10000) g;

CREATE VIEW revenue_by_region AS
SELECT c.region, count(*) AS orders, sum(o.amount) AS revenue
FROM orders o JOIN customers c ON c.id = o.customer_id
GROUP BY c.region;
`;
