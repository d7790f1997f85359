#!/usr/bin/env python3
"""Write the insert-heavy SQL script of the sqlite3 benchmark (scripts/bench.sh).

    gen_sql.py ROWS > inserts.sql

One table with an index, ROWS single-row INSERT statements in one transaction (each statement
is parsed, prepared and run: the shell and the library allocate and free per statement), then a
query that reads everything back. Deterministic.
"""
import sys


def main():
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    w = sys.stdout.write
    w("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, note TEXT);\n")
    w("CREATE INDEX t_name ON t(name);\n")
    w("BEGIN;\n")
    x = 1
    for i in range(rows):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        w("INSERT INTO t(name, score, note) VALUES ('n%d-%d', %.3f, '%s');\n"
          % (x % 50000, i, x % 1000 / 7, "x" * (x % 40)))
    w("COMMIT;\n")
    w("SELECT count(*), sum(length(note)) FROM t;\n")


if __name__ == "__main__":
    main()
