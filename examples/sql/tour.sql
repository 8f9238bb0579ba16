-- A tour of SQL on one ScratchBird node. Every query below is compiled to a
-- WebAssembly module and run in the wasmtime sandbox over the node's storage.
--   cargo run --release -p scratchbird-cli -- sql --local /tmp/sb-tour -f examples/sql/tour.sql

DROP TABLE IF EXISTS orders;
DROP TABLE IF EXISTS customers;

CREATE TABLE customers (
    id      INTEGER PRIMARY KEY,
    name    VARCHAR(40) NOT NULL,
    country VARCHAR(2),
    since   DATE
);

CREATE TABLE orders (
    id       BIGINT PRIMARY KEY,
    customer INTEGER NOT NULL,
    amount   DECIMAL(12,2) NOT NULL,
    placed   DATE NOT NULL
);

INSERT INTO customers VALUES
    (1, 'Ada Lovelace', 'GB', DATE '2021-03-14'),
    (2, 'Grace Hopper', 'US', DATE '2020-12-09'),
    (3, 'Edsger Dijkstra', 'NL', NULL),
    (4, 'Barbara Liskov', 'US', DATE '2023-11-07');

INSERT INTO orders VALUES
    (100, 1, 120.50, DATE '2024-01-03'),
    (101, 1,  80.00, DATE '2024-02-11'),
    (102, 2, 999.99, DATE '2024-02-12'),
    (103, 2,  15.25, DATE '2024-03-01'),
    (104, 4, 300.00, DATE '2024-03-15');

-- a join, grouping, ordering
SELECT c.name, count(o.id) AS orders, coalesce(sum(o.amount), 0) AS total
FROM customers c LEFT JOIN orders o ON o.customer = c.id
GROUP BY c.name
ORDER BY total DESC, c.name;

-- expressions: CASE, string and date functions, three-valued logic
SELECT upper(substring(name FROM 1 FOR 5)) AS short,
       CASE WHEN country IN ('US', 'GB') THEN 'english' ELSE 'other' END AS language,
       EXTRACT(YEAR FROM since) AS year,
       since + INTERVAL '1' YEAR AS anniversary
FROM customers
WHERE since IS NULL OR since < DATE '2023-01-01'
ORDER BY name;

-- a transaction: the update and the delete are undone together
BEGIN;
UPDATE orders SET amount = amount * 2 WHERE customer = 2;
DELETE FROM orders WHERE amount < 100;
SELECT count(*) AS orders_inside_the_transaction FROM orders;
ROLLBACK;
SELECT count(*) AS orders_after_rollback FROM orders;

-- errors are SQL errors, raised by the generated code and reported by the host
-- (uncomment to see): SELECT 2147483647 + id FROM customers;

-- the plan, the module's size and its hash
EXPLAIN SELECT country, avg(amount) FROM orders o JOIN customers c ON c.id = o.customer GROUP BY country;
