"""Do schedules and dropout help?  The digits MLP and CNN over 5 validation splits.

For each model, a constant rate against a cosine and a plateau schedule, with
and without dropout (0.2 after each hidden dense layer), on the held-out
fifth of `kerash dataset digits --val-fraction 0.2 --seed S`, S = 1…5.
Prints the best validation accuracy (mean ± standard deviation over the
splits, and the range) and the first epoch that reaches 97% (mean over the
splits that reach it, and how many do).

  python bench/training_features.py [--quick]
"""

import os
import statistics
import subprocess
import sys
import tempfile

BIN = os.path.dirname(sys.executable)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {
    # model file, epochs, training options (those of bin/demo)
    "digits-mlp": ("digits-mlp.model", 60, ["--batch-size", "32", "--optimizer", "adam", "--lr", "0.001", "--weight-decay", "0.0005"]),
    "digits-cnn": ("digits-cnn.model", 15, ["--batch-size", "32", "--optimizer", "momentum", "--lr", "0.02"]),
}


def schedules(epochs):
    return {"constant": "constant", "cosine": f"cosine:{epochs}", "plateau": "plateau:3:0.5"}


def with_dropout(text, rate=0.2):
    """The description with a dropout layer after each hidden dense layer."""
    lines = text.splitlines()
    dense = [i for i, line in enumerate(lines) if line.split("#")[0].split()[:1] == ["dense"]]
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        if i in dense[:-1]:
            out.append(f"dropout {rate}")
    return "\n".join(out) + "\n"


def tool(*args, cwd):
    return subprocess.run([f"{BIN}/{args[0]}", *args[1:]], cwd=cwd, check=True, capture_output=True, text=True).stdout


def run(folder, model_text, split, epochs, options, schedule, name):
    with open(os.path.join(folder, f"{name}.model"), "w") as f:
        f.write(model_text)
    data = f"digits{split}"
    tool("model-init", f"{name}.model", "-o", name, "--seed", "1",
         "--force", cwd=folder)
    out = tool("train", name, "-x", f"{data}/data.npy", "-y", f"{data}/labels.txt", "--val-data", f"{data}/val-data.npy",
               "--val-labels", f"{data}/val-labels.txt", "--epochs", str(epochs), "--seed", "1", "--lr-schedule", schedule,
               *options, cwd=folder)
    accuracies = [float(line.split("\t")[5]) for line in out.splitlines()[1:]]
    first = next((e for e, a in enumerate(accuracies, 1) if a >= 0.97), None)
    return max(accuracies), first


def main():
    quick = "--quick" in sys.argv
    splits = (1, 2) if quick else (1, 2, 3, 4, 5)
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as folder:
        for s in splits:
            tool("kerash", "dataset", "digits", "-o", f"digits{s}", "--val-fraction", "0.2", "--seed", str(s), cwd=folder)
        print(f"{'model':<11} {'schedule':<9} {'dropout':<8} {'best val accuracy':>26} {'epoch ≥ 97%':>16}")
        for model, (path, epochs, options) in MODELS.items():
            with open(os.path.join(ROOT, "models", path)) as f:
                plain = f.read()
            for dropout in (False, True):
                text = with_dropout(plain) if dropout else plain
                for label, schedule in schedules(epochs).items():
                    best, firsts = [], []
                    for s in splits:
                        acc, first = run(folder, text, s, epochs, options, schedule, f"{model}-{label}-{int(dropout)}-{s}")
                        best.append(acc)
                        if first is not None:
                            firsts.append(first)
                    spread = statistics.stdev(best) if len(best) > 1 else 0.0
                    reach = f"{statistics.mean(firsts):.1f} ({len(firsts)}/{len(splits)})" if firsts else f"— (0/{len(splits)})"
                    print(f"{model:<11} {label:<9} {'0.2' if dropout else '-':<8} "
                          f"{100 * statistics.mean(best):7.2f}% ± {100 * spread:4.2f} ({100 * min(best):.1f}–{100 * max(best):.1f})"
                          f" {reach:>16}", flush=True)


if __name__ == "__main__":
    main()
