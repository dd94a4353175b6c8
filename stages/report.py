"""report: the training curves, confusion matrix and ROC curve as PNG files, readable offline.

Reads train's per-epoch files (metrics/epochs/plots/metrics/, dvclive's), metrics/confusion.csv and
roc.csv (what `dvc plots show` draws as HTML);
writes metrics/plots/training.png, confusion.png and roc.png.
"""
import csv
from pathlib import Path

from matplotlib.figure import Figure  # drawn straight to files: no pyplot, no display

from imdb_lstm.errors import run_stage
from imdb_lstm.files import atomic_path

METRICS = Path("metrics")
OUT = METRICS / "plots"
EPOCHS = METRICS / "epochs" / "plots" / "metrics"  # dvclive's: one .tsv of step and value per figure
LABELS = ["negative", "positive"]


def read_csv(name):
    with open(METRICS / name, newline="") as f:
        return list(csv.DictReader(f))


def read_epochs():
    """Rows of epoch, loss and accuracy, from train's dvclive files."""
    epochs = {}
    for name in ("loss", "accuracy"):
        with open(EPOCHS / f"{name}.tsv", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                epochs.setdefault(row["step"], {"epoch": row["step"]})[name] = row[name]
    return list(epochs.values())


def column(rows, key, kind=float):
    return [kind(row[key]) for row in rows]


def training(ax_loss, rows):
    epochs = column(rows, "epoch", int)
    ax_loss.plot(epochs, column(rows, "loss"), "o-", color="tab:red", label="loss")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training", xticks=epochs)
    ax_accuracy = ax_loss.twinx()
    ax_accuracy.plot(epochs, column(rows, "accuracy"), "s-", color="tab:blue", label="accuracy")
    ax_accuracy.set_ylabel("training accuracy")
    ax_loss.legend(handles=ax_loss.lines + ax_accuracy.lines, loc="center right")


def confusion(ax, rows):
    counts = [[sum(1 for row in rows if row["actual"] == actual and row["predicted"] == predicted)
               for predicted in LABELS] for actual in LABELS]
    ax.imshow(counts, cmap="Blues")
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            ax.text(j, i, f"{count:,}", ha="center", va="center", color="white" if i == j else "black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=LABELS, yticklabels=LABELS,
           xlabel="predicted", ylabel="actual", title=f"Test split ({len(rows):,} reviews)")


def roc(ax, rows):
    ax.plot(column(rows, "fpr"), column(rows, "tpr"), color="tab:green")
    ax.plot([0, 1], [0, 1], ":", color="gray")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve, test split", aspect="equal")


def save(name, draw, rows):
    fig = Figure(figsize=(5, 4), dpi=100, layout="tight")
    draw(fig.subplots(), rows)
    with atomic_path(OUT / name) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})  # same bytes for the same data


def main():
    save("training.png", training, read_epochs())
    save("confusion.png", confusion, read_csv("confusion.csv"))
    save("roc.png", roc, read_csv("roc.csv"))
    print(f"report: {OUT}/training.png, confusion.png, roc.png")


if __name__ == "__main__":
    run_stage(main)
