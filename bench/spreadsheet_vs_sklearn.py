"""From a spreadsheet to a classifier: kerash's five commands against scikit-learn's LogisticRegression.

Issue 24's done-when.  For iris, wine and breast cancer (scikit-learn's
bundled copies), the benchmark writes each as a spreadsheet would — a header
row, the class names as words, an id column, a few empty cells — then runs,
through the installed tools,

    kerash split         (stratified: 60% train, 40% test, 5 seeds)
    model-init --data    (the input size from the table)
    train --normalize --impute mean
    evaluate --report
    kerash plot confusion (with matplotlib)

and fits scikit-learn's Pipeline(SimpleImputer, StandardScaler,
LogisticRegression) on the very same train part (the split's files, read
back with pandas).  kerash trains the same model: one softmax layer, the
cross-entropy, with a small L2 weight decay (LogisticRegression has C=1).  Prints
the test accuracies, mean over the seeds, and their difference (target: within 2 points).

Needs scikit-learn and pandas: pip install 'kerash[bench]'.  Run:
    python bench/spreadsheet_vs_sklearn.py [--seeds 5]
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.path.dirname(sys.executable)


def tool(*args, cwd):
    proc = subprocess.run([os.path.join(BIN, args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, KERASH_WARM="0"))
    if proc.returncode:
        sys.exit(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def export(name, loader, folder, rng):
    data = loader()
    x, names = data.data, [n.replace(" ", "_") for n in data.feature_names]
    labels = [str(data.target_names[t]).replace(" ", "_") for t in data.target]
    path = os.path.join(folder, f"{name}.csv")
    with open(path, "w") as f:
        f.write(",".join(["id", *names, "class"]) + "\n")
        for i, (row, label) in enumerate(zip(x, labels)):
            cells = ["" if rng.random() < 0.02 else repr(float(v)) for v in row]  # a few empty cells
            f.write(",".join([str(i + 1), *cells, label]) + "\n")
    return path, len(data.target_names)


def kerash_accuracy(csv, classes, seed, folder):
    base = os.path.basename(csv)
    table = ["--label-column", "class", "--drop", "id"]
    folder_model = os.path.join(folder, f"m{seed}.model")
    with open(folder_model, "w") as f:
        f.write(f"input\ndense {classes} softmax\n")
    tool("kerash", "split", csv, "-o", f"parts{seed}", "--fractions", "0.6,0.4", "--names", "train,test",
         "--stratify", "--label-column", "class", "--seed", str(seed), "--force", cwd=folder)
    train_csv, test_csv = f"parts{seed}/train/{base}", f"parts{seed}/test/{base}"
    tool("model-init", folder_model, "-o", f"m{seed}", "--data", train_csv, *table, "--seed", "1", "--force",
         "--dtype", "float64", cwd=folder)
    tool("train", f"m{seed}", "-x", train_csv, *table, "--normalize", "--impute", "mean", "--optimizer", "adam",
         "--lr", "0.01", "--epochs", "300", "--batch-size", "16", "--weight-decay", "0.005", "--seed", "1", "--quiet",
         cwd=folder)
    report = tool("evaluate", f"m{seed}", "-x", test_csv, *table, "--report", cwd=folder)
    try:
        import matplotlib  # noqa: F401

        tool("kerash", "plot", "confusion", f"m{seed}", "-x", test_csv, *table, "-o", f"confusion{seed}.png",
             cwd=folder)
    except ImportError:
        pass
    scores = dict(line.split("\t") for line in report.splitlines() if line.count("\t") == 1)
    return float(scores["accuracy"]), os.path.join(folder, train_csv), os.path.join(folder, test_csv)


def sklearn_accuracy(train_csv, test_csv):
    import pandas
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = pandas.read_csv(train_csv), pandas.read_csv(test_csv)
    features = [c for c in train.columns if c not in ("id", "class")]
    model = make_pipeline(SimpleImputer(strategy="mean"), StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(train[features], train["class"])
    return float(model.score(test[features], test["class"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    try:
        from sklearn import datasets
    except ImportError:
        sys.exit("needs scikit-learn and pandas: pip install 'kerash[bench]'")
    rng = np.random.default_rng(0)
    print("data set\tsamples\tkerash accuracy\tscikit-learn accuracy\tdifference (points)")
    with tempfile.TemporaryDirectory() as folder:
        for name, loader in (("iris", datasets.load_iris), ("wine", datasets.load_wine),
                             ("breast_cancer", datasets.load_breast_cancer)):
            csv, classes = export(name, loader, folder, rng)
            ours, theirs = [], []
            for seed in range(1, args.seeds + 1):
                accuracy, train_csv, test_csv = kerash_accuracy(csv, classes, seed, folder)
                ours.append(accuracy)
                theirs.append(sklearn_accuracy(train_csv, test_csv))
            k, s = np.mean(ours), np.mean(theirs)
            print(f"{name}\t{sum(1 for _ in open(csv)) - 1}\t{k:.4f}\t{s:.4f}\t{100 * (k - s):+.1f}", flush=True)


if __name__ == "__main__":
    main()
