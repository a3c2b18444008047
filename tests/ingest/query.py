#!/usr/bin/env python3
"""Prints what the reference ingest stored, as one JSON object, for tests:
{"count": rows, "duplicates_absorbed": sum(uploads - 1), "ids": [...]} and with
--rows every row ({id, origin, topic, hlc, created_at, payload_hex, received_at,
uploads}). Reads while the ingest runs (WAL). Standard library only."""
import argparse, json, os, sqlite3, sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", required=True, help="the ingest's SQLite file")
    p.add_argument("--rows", action="store_true", help="also print every row")
    a = p.parse_args(argv)
    if not os.path.exists(a.db):  # sqlite3 would create an empty file
        print(json.dumps({"count": 0, "duplicates_absorbed": 0, "ids": []}))
        return 0
    db = sqlite3.connect(a.db, timeout=5)
    try:
        rows = db.execute("SELECT id, origin, topic, hlc, created_at, payload, received_at, uploads"
                          " FROM commands ORDER BY received_at, id").fetchall()
    except sqlite3.OperationalError:  # the ingest has not created its table yet
        rows = []
    db.close()
    out = {"count": len(rows), "duplicates_absorbed": sum(r[7] - 1 for r in rows), "ids": [r[0] for r in rows]}
    if a.rows:
        keys = ("id", "origin", "topic", "hlc", "created_at", "payload_hex", "received_at", "uploads")
        out["rows"] = [dict(zip(keys, r[:5] + (bytes(r[5]).hex(),) + r[6:])) for r in rows]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
