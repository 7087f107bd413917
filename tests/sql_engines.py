#!/usr/bin/env python3
"""Runs SQL on Spark over a Parquet file, for tests/databases.rs (DataFusion runs in process).

Usage: sql_engines.py spark FILE.parquet < queries.json. The Parquet file is
registered as the table `log`; each query in the JSON list (a script of statements separated
by ";" at a line's end, "--" comments allowed) is run, and the rows of each query's last
statement are printed as one JSON list of lists.
"""
import json
import sys


def statements(script):
    for statement in script.split(";\n"):
        body = "\n".join(
            line for line in statement.splitlines() if not line.lstrip().startswith("--")
        ).strip()
        if body:
            yield body


def spark_runner(path):
    from pyspark.sql import SparkSession

    # Local, two cores, no web UI, loopback only.
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    spark.read.parquet(path).createOrReplaceTempView("log")
    return lambda sql: [list(row) for row in spark.sql(sql).collect()]


def main():
    engine, path = sys.argv[1], sys.argv[2]
    run = {"spark": spark_runner}[engine](path)
    results = []
    for script in json.load(sys.stdin):
        rows = None
        for statement in statements(script):
            rows = run(statement)
        results.append(rows)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
