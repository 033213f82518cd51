"""Read the tables of a goalcast warehouse with DuckDB, pyarrow and pandas, as an analyst would.

Run from the warehouse folder with the output of `goalcast tables --format json` on standard
input, and one argument:

- `tables` prints one JSON object: for each table and reader, the row count, the column names
  with the reader's type names, and per column the count of non-null values with the minimum
  and maximum. Values are canonical so that tests/readers.rs can compare them with `goalcast
  sql`: timestamps as integer microseconds since the Unix epoch, dates as YYYY-MM-DD strings,
  other values as JSON numbers, strings and booleans. The readers are called the plain way
  first. pyarrow and pandas are called a second time with the typed partitioning recipe from
  docs/tables.md (`*_typed`), because their plain way reads Hive partition columns as
  dictionaries.
- `queries FILE` runs each query of the JSON array in FILE in DuckDB, over one view per table
  as docs/tables.md creates them. It prints a JSON array of `{"columns": [...], "rows":
  [[...]]}` with every cell as text, empty for null and ISO 8601 for dates and times.
"""

import datetime
import decimal
import json
import sys

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
ONE_MICROSECOND = datetime.timedelta(microseconds=1)

# Arrow types of goalcast's partition columns, as `goalcast tables` prints them.
PARTITION_TYPES = {"Int64": pa.int64(), "Date32": pa.date32(), "Utf8": pa.string()}


def canonical(value):
    """Convert one value from any of the three readers to the canonical JSON form."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            # A naive time fails the type check, but its value is still compared as UTC.
            value = value.replace(tzinfo=datetime.timezone.utc)
        return (value - EPOCH) // ONE_MICROSECOND
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, float) and value != value:
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def stats(count, minimum, maximum):
    return {"count": int(count), "min": canonical(minimum), "max": canonical(maximum)}


def read_duckdb(table):
    relation = duckdb.sql(
        f"SELECT * FROM read_parquet('{table}/**/*.parquet', hive_partitioning = true)"
    )
    columns = [[name, str(kind)] for name, kind in zip(relation.columns, relation.types)]
    rows = relation.aggregate("count(*)").fetchall()[0][0]
    column_stats = {}
    for name in relation.columns:
        quoted = '"' + name.replace('"', '""') + '"'
        count, minimum, maximum = relation.aggregate(
            f"count({quoted}), min({quoted}), max({quoted})"
        ).fetchall()[0]
        column_stats[name] = stats(count, minimum, maximum)
    return {"rows": rows, "columns": columns, "stats": column_stats}


def describe_arrow(table):
    column_stats = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        extremes = pc.min_max(column)
        column_stats[name] = {
            "count": pc.count(column).as_py(),
            "min": arrow_value(extremes["min"]),
            "max": arrow_value(extremes["max"]),
        }
    return {
        "rows": table.num_rows,
        "columns": [[field.name, str(field.type)] for field in table.schema],
        "stats": column_stats,
    }


def arrow_value(scalar):
    if not scalar.is_valid:
        return None
    if pa.types.is_timestamp(scalar.type):
        # The stored integer, so that no time zone conversion can change it.
        return scalar.cast(pa.timestamp("us", scalar.type.tz)).value
    return canonical(scalar.as_py())


def pandas_type(series):
    """Name the pandas type, with the element type where the dtype alone hides it."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return f"category<{series.cat.categories.dtype}>"
    if series.dtype == object:
        kinds = {type(value).__name__ for value in series.dropna()}
        return f"object<{','.join(sorted(kinds))}>"
    return str(series.dtype)


def describe_pandas(frame):
    column_stats = {}
    for name in frame.columns:
        series = frame[name]
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = series.astype(series.cat.categories.dtype)
        values = series.dropna()
        if values.empty:
            column_stats[name] = stats(0, None, None)
        else:
            column_stats[name] = stats(len(values), values.min(), values.max())
    return {
        "rows": len(frame),
        "columns": [[name, pandas_type(frame[name])] for name in frame.columns],
        "stats": column_stats,
    }


def typed_partitioning(listing):
    """Build the partitioning recipe from docs/tables.md for one table."""
    types = {name: kind.removesuffix(" not null") for name, kind in listing["columns"]}
    names = listing["partition_columns"]
    if not names:
        return "hive"
    schema = pa.schema([(name, PARTITION_TYPES[types[name]]) for name in names])
    return ds.partitioning(schema, flavor="hive")


def read_tables(listings):
    result = {}
    for listing in listings:
        table = listing["name"]
        partitioning = typed_partitioning(listing)
        result[table] = {
            "duckdb": read_duckdb(table),
            "pyarrow": describe_arrow(pq.read_table(table)),
            "pandas": describe_pandas(pd.read_parquet(table)),
            "pyarrow_typed": describe_arrow(pq.read_table(table, partitioning=partitioning)),
            "pandas_typed": describe_pandas(pd.read_parquet(table, partitioning=partitioning)),
        }
    return result


def cell_text(value):
    """Format one DuckDB result value as text comparable with `goalcast sql --format csv`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return repr(float(value))
    return str(value)


def run_queries(listings, queries):
    connection = duckdb.connect()
    for listing in listings:
        table = listing["name"]
        connection.sql(
            f"CREATE VIEW {table} AS SELECT * FROM "
            f"read_parquet('{table}/**/*.parquet', hive_partitioning = true)"
        )
    results = []
    for query in queries:
        relation = connection.sql(query)
        rows = [[cell_text(value) for value in row] for row in relation.fetchall()]
        results.append({"columns": relation.columns, "rows": rows})
    return results


def main():
    listings = json.load(sys.stdin)
    if sys.argv[1:] == ["tables"]:
        result = read_tables(listings)
    elif len(sys.argv) == 3 and sys.argv[1] == "queries":
        with open(sys.argv[2], encoding="utf-8") as file:
            result = run_queries(listings, json.load(file))
    else:
        sys.exit("usage: readers.py tables | readers.py queries FILE")
    json.dump(result, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
