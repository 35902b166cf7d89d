"""What a query over the live database may be (tg_actors/queries.py `sql_problem`), decided by
DuckDB's parser: every refused kind names why; the reads users expect (Datasette, the DuckDB
CLI) pass."""

from __future__ import annotations

import pytest

from tg_actors.queries import TG_TABLES, sql_problem

TABLES = ["orders", "Customers", "select"]


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        # the kinds issue 14 names
        ("INSERT INTO orders VALUES (1)", "INSERT is not read-only"),
        ("COPY orders TO '/tmp/orders.csv'", "COPY reads or writes files"),
        ("COPY (SELECT 1) TO '/tmp/x.parquet' (FORMAT parquet)", "COPY reads or writes files"),
        ("ATTACH '/tmp/other.duckdb' AS other", "ATTACH opens another database"),
        ("INSTALL httpfs", "INSTALL and LOAD load extensions"),
        ("SET memory_limit = '100GB'", "SET, RESET and USE change settings"),
        ("SELECT * FROM read_csv('/etc/passwd')", "calls read_csv(): no reading files"),
        ("SELECT * FROM read_json('http://127.0.0.1:9/x.json')", "calls read_json()"),
        ("SELECT 1; SELECT 2", "holds 2 statements"),
        ("SELECT * FROM orders; DROP TABLE orders", "holds 2 statements"),
        # writes and DDL
        ("UPDATE orders SET id = 1", "UPDATE is not read-only"),
        ("DELETE FROM orders", "DELETE is not read-only"),
        ("TRUNCATE orders", "DELETE is not read-only"),
        ("CREATE TABLE x AS SELECT 1", "CREATE is not read-only"),
        ("CREATE TEMP VIEW v AS SELECT 1", "CREATE is not read-only"),
        ("CREATE MACRO m(a) AS a", "CREATE is not read-only"),
        ("DROP TABLE orders", "DROP is not read-only"),
        ("ALTER TABLE orders ADD COLUMN x INT", "ALTER is not read-only"),
        ("VACUUM", "VACUUM is not read-only"),
        # the database, settings, extensions, procedures
        ("DETACH other", "DETACH closes a database"),
        ("RESET memory_limit", "SET, RESET and USE"),
        ("USE memory", "SET, RESET and USE"),
        ("SET VARIABLE x = 1", "SET, RESET and USE"),
        ("PRAGMA enable_profiling", "PRAGMA"),
        ("IMPORT DATABASE '/tmp/dump'", "PRAGMA (and IMPORT DATABASE)"),
        ("EXPORT DATABASE '/tmp/dump'", "EXPORT writes files"),
        ("LOAD httpfs", "INSTALL and LOAD load extensions"),
        ("CHECKPOINT", "CALL runs a procedure"),
        ("CALL pragma_version()", "CALL runs a procedure"),
        ("BEGIN TRANSACTION", "read-only transaction of its own"),
        ("EXPLAIN SELECT 1", "EXPLAIN is not served"),
        ("PREPARE p AS SELECT 1", "PREPARE statements are not served"),
        ("UPDATE EXTENSIONS", "is not a query"),
        # files and URLs by name, glob, parquet
        ("SELECT * FROM 'orders.csv'", "reads 'orders.csv': no reading files or URLs"),
        ("FROM '/etc/passwd'", "no reading files or URLs"),
        ("SELECT * FROM 'https://example.com/x.parquet'", "no reading files or URLs"),
        ("DESCRIBE 'data.csv'", "no reading files or URLs"),
        ("SUMMARIZE SELECT * FROM read_parquet('*.parquet')", "calls read_parquet()"),
        ("SELECT * FROM glob('/etc/*')", "calls glob()"),
        ("SELECT * FROM read_text('/etc/hostname')", "calls read_text()"),
        ("SELECT * FROM parquet_scan('x.parquet')", "calls parquet_scan()"),
        ("SELECT * FROM orders WHERE id IN (SELECT a FROM read_csv('x.csv'))", "read_csv()"),
        ("WITH t AS (SELECT * FROM read_csv('x.csv')) SELECT * FROM t", "calls read_csv()"),
        # the catalog and what is not ours to read
        ("SELECT * FROM duckdb_settings()", "calls duckdb_settings()"),
        ("SELECT * FROM duckdb_secrets()", "calls duckdb_secrets()"),
        ("SELECT * FROM query('SELECT 1')", "calls query()"),
        ("SELECT * FROM information_schema.tables", "only the data tables (schema main)"),
        ("SELECT * FROM sqlite_master", "there is no data table of that name"),
        ("SELECT * FROM missing", "there is no data table of that name"),
        ("SELECT * FROM turbo_giggle.tg.jobs", "name tables without a database"),
        ("SELECT * FROM turbo_giggle.main.orders", "name tables without a database"),
        ("SELECT (SELECT max(spec) FROM db.tg.jobs)", "name tables without a database"),
        ("SHOW db.tg.jobs", "name tables without a database"),
        ("SELECT * FROM tg.run_checkpoints", "of schema tg, only tg.jobs"),
        ("SELECT * FROM other.orders", "only the data tables (schema main)"),
        ("SELECT nextval('seq')", "calls nextval(), which changes state"),
        ("SELECT write_log('x')", "calls write_log()"),
        ("PIVOT orders ON id USING count(*)", "PIVOT without an IN list"),
        # nothing to run
        ("", "the query is empty"),
        ("   \n\t", "the query is empty"),
        (";", "holds no statement"),
        ("-- only a comment", "holds no statement"),
        ("SELEC 1", "does not parse"),
    ],
)
def test_refused_naming_why(sql: str, why: str) -> None:
    problem = sql_problem(sql, TABLES)
    assert problem is not None and why in problem, problem


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM orders",
        "select id from ORDERS where id > ? order by 1 limit 10",
        "SELECT $1::INT + 1",
        "FROM orders",
        "FROM orders SELECT id WHERE id > 1",
        "SELECT * FROM main.orders",
        'SELECT * FROM "select"',
        "SELECT * FROM customers",  # names in any case, as DuckDB binds them
        "WITH big AS (SELECT * FROM orders WHERE id > 10) SELECT count(*) FROM big",
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) FROM t",
        "WITH missing AS (SELECT 1 AS a) SELECT * FROM missing",  # a CTE, not a table
        "SELECT o.id, r.state FROM orders o JOIN tg.runs r ON true",
        "SELECT * FROM orders WHERE id IN (SELECT id FROM orders)",
        "SELECT * FROM orders UNION ALL SELECT * FROM orders",
        "VALUES (1, 'a'), (2, 'b')",
        "SELECT 42",
        "SELECT * FROM range(10)",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT * FROM unnest([1, 2, 3])",
        "DESCRIBE orders",
        "DESCRIBE SELECT * FROM orders",
        "DESCRIBE tg.runs",
        "SHOW orders",
        "SUMMARIZE orders",
        "SUMMARIZE SELECT id FROM orders",
        "SHOW TABLES",
        "SHOW ALL TABLES",
        "SHOW DATABASES",
        "PIVOT orders ON id IN (1, 2) USING count(*)",
        "UNPIVOT orders ON id INTO NAME k VALUE v",
        "SELECT random(), now(), current_setting('TimeZone')",
        *(f"SELECT * FROM tg.{table}" for table in sorted(TG_TABLES)),
        "SELECT * FROM TG.JOBS",
        'SELECT * FROM "tg"."run_logs"',
    ],
)
def test_reads_pass(sql: str) -> None:
    assert sql_problem(sql, TABLES) is None


def test_without_the_tables_any_plain_name_may_be_one_but_never_a_file() -> None:
    assert sql_problem("SELECT * FROM anything") is None
    assert sql_problem("SELECT * FROM anything", []) is not None
    assert sql_problem("SELECT * FROM 'x.json'") is not None


def test_odd_input_is_refused_not_raised() -> None:
    for sql in ("\x00", "SELECT '\x00'", "'" * 1001, "(" * 500 + "1" + ")" * 500, "SELECT ?" * 50):
        problem = sql_problem(sql, TABLES)
        assert problem is None or isinstance(problem, str)
