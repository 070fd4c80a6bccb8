"""Makes the benchmark inputs (deterministic, cached by the caller).

big.csv     about 1 GB: the real NYC flights 2013 rows (../shared/data) repeated
files/      10,000 files of 4 KiB each
wide.csv    1,000,000 rows x 25 columns of mixed types (numbers, categories,
            dates, booleans, 2 % missing)
"""
import gzip
import os
import random
import sys

out = sys.argv[1]
shared = sys.argv[2]
os.makedirs(out, exist_ok=True)

big = os.path.join(out, "big.csv")
if not os.path.exists(big):
    with gzip.open(os.path.join(shared, "nyc_flights_2013.csv.gz"), "rt") as f:
        header = f.readline()
        body = f.read()
    with open(big + ".tmp", "w") as f:
        f.write(header)
        written = len(header)
        while written < 1_000_000_000:
            f.write(body)
            written += len(body)
    os.rename(big + ".tmp", big)

files = os.path.join(out, "files")
if not os.path.exists(files):
    rng = random.Random(7)
    os.makedirs(files + ".tmp")
    for i in range(10_000):
        sub = os.path.join(files + ".tmp", f"{i % 100:02d}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"{i:05d}.bin"), "wb") as f:
            f.write(rng.randbytes(4096))
    os.rename(files + ".tmp", files)

wide = os.path.join(out, "wide.csv")
if not os.path.exists(wide):
    rng = random.Random(11)
    cats = [[f"c{j}_{k}" for k in range(n)] for j, n in enumerate([3, 12, 50, 400])]
    cols = [f"f{i}" for i in range(10)] + [f"i{i}" for i in range(8)] + [f"cat{i}" for i in range(4)] + ["d0", "d1", "flag"]
    with open(wide + ".tmp", "w") as f:
        f.write(",".join(cols) + "\n")
        for r in range(1_000_000):
            row = []
            for i in range(10):
                row.append("" if rng.random() < 0.02 else f"{rng.gauss(i, 1 + i):.4f}")
            for i in range(8):
                row.append(str(rng.randrange(0, 10 ** (i + 1))))
            for c in cats:
                row.append(rng.choice(c))
            row.append(f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}")
            row.append(f"2025-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}")
            row.append("true" if rng.random() < 0.3 else "false")
            f.write(",".join(row) + "\n")
    os.rename(wide + ".tmp", wide)
