"""python3 benchmark of scripts/bench.sh: dicts, lists, strings and json, deterministic.

    python3 py_workload.py [ROUNDS]

Builds records as dicts of lists, indexes them in dicts, serializes them to JSON and parses
them back, sorts and groups them: the containers grow and shrink through the allocator
(pymalloc serves small objects; lists, dicts and strings past 512 bytes reach malloc).
Prints a checksum so a broken run is visible.
"""
import json
import sys


def rounds_of(argv):
    return int(argv[1]) if len(argv) > 1 else 30


def make_records(seed, n):
    x = seed
    out = []
    for i in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        out.append({
            "id": i,
            "name": "user%d-%x" % (i, x & 0xFFFF),
            "tags": ["t%d" % ((x >> s) & 63) for s in range(0, 40, 5)],
            "score": (x >> 20) % 1000 / 10.0,
            "attrs": {"k%d" % j: j * i for j in range((x >> 8) % 12)},
        })
    return out


def main():
    total = 0
    for r in range(rounds_of(sys.argv)):
        recs = make_records(r + 1, 6000)
        by_tag = {}
        for rec in recs:
            for t in rec["tags"]:
                by_tag.setdefault(t, []).append(rec["id"])
        text = json.dumps(recs)
        back = json.loads(text)
        back.sort(key=lambda d: (d["score"], d["name"]))
        groups = {}
        for d in back:
            groups.setdefault(int(d["score"]) // 10, []).append(d["name"].upper())
        total += len(text) + sum(len(v) for v in by_tag.values()) + len(groups)
        total += sum(len(",".join(v)) for v in groups.values())
    print("checksum", total)


if __name__ == "__main__":
    main()
