"""ncf_rs quickstart: MovieLens ratings -> a trained NeuMF -> top-10 lists, from Python.

    python examples/python/quickstart.py [RATINGS_CSV] [WORK_DIR]

RATINGS_CSV: a MovieLens ratings.csv (default: ../shared/data/ml-latest-small/ratings.csv, the
real ml-latest-small); WORK_DIR: where the dataset and checkpoints go (default: ./quickstart).
Needs the package built into the set-up venv (`make python`, which `make test` runs); takes under a
minute on two cores.
"""
import pathlib
import sys

import ncf_rs

here = pathlib.Path(__file__).resolve()
ratings = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else here.parents[3] / "shared/data/ml-latest-small/ratings.csv"
work = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else pathlib.Path("quickstart")

# 1. Prepare: sort, deduplicate, renumber, hold each user's latest item out, draw test negatives.
data = work / "data"
prepared = ncf_rs.prepare(ratings, data, force=True)
print(f"prepared {prepared['users']} users, {prepared['items']} items, {prepared['train_rows']} train rows")

# 2. Train NeuMF three epochs (the reference's architecture, a batch sized for a small dataset).
summary = ncf_rs.train(
    data,
    model="neumf",
    epochs=3,
    batch_size=16384,
    learning_rate=0.002,
    seed=1,
    checkpoint_dir=work / "checkpoints",
    log_path=work / "log.json",
    device="cpu",
)
print(f"best HR@10 {summary['best_hr']:.4f} (epoch {summary['best_epoch'] + 1}), "
      f"{summary['train_throughput']:,.0f} samples/s; checkpoint {summary['checkpoint']}")

# 3. Recommend for three users, in the ratings file's own ids, their rated movies left out.
model = ncf_rs.Model.load(summary["checkpoint"], data=data)
users = ncf_rs.Dataset(data).user_ids[:3].tolist()
top = model.recommend(users, k=10)
movies = ratings.with_name("movies.csv")  # MovieLens' titles, when beside the ratings
if movies.exists():
    import pandas as pd

    titles = pd.read_csv(movies, usecols=["movieId", "title"]).rename(columns={"movieId": "item"})
    top = top.merge(titles, on="item", how="left")
print(top.to_string(index=False))
